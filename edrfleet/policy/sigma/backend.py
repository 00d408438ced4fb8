"""The pySigma backend: a rule's condition to the ``match`` blocks of edrfleet rules.

Each ``convert_condition_*`` returns an `expr.Expr`; `finalize_query_default` expands it to
DNF and builds one ``match`` per AND (`emit.build_match`).  What the kernel cannot check raises
`SigmaFeatureNotSupportedByBackendError` with the reason, which the importer reports.

Field semantics (after `pipeline.edrfleet_pipeline`):

- ``executable`` / ``parent``: ``|endswith: /name`` is the basename ``name``; an exact absolute
  path is that file (the kernel matches by inode, so any name of it); ``|endswith: /dir/name``
  is the basename too (noted on the rule: it also matches ``name`` in other directories).
  Executable names are compared exactly: Linux file names are case-sensitive, while Sigma
  compares case-insensitively (noted in docs/sigma.md).
- ``cmdline``: a regex over argv joined by single spaces, as Sigma's ``CommandLine`` is;
  strings are case-insensitive unless ``|cased``; ``|re`` keeps the rule's own regex.
- ``argv.N`` (auditd ``aN``): argv[N] as a positional regex (`text.argv_regex`).
- ``user``: names or uids; ``cwd``: ``|startswith`` prefixes.
- keywords (values without a field) search the command line.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.conversion.base import Backend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaCasedString,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
)

from edrfleet.errors import InputError
from edrfleet.policy.limits import name_fits
from edrfleet.policy.regex.parse import CMD, RegexUnsupported, regex_ast
from edrfleet.policy.sigma.emit import Unsatisfiable, build_match
from edrfleet.policy.sigma.expr import (
    And,
    Arg,
    Cmd,
    ConditionUnsupported,
    Exe,
    Expr,
    Not,
    OneOf,
    Or,
    Unknown,
    dnf,
)
from edrfleet.policy.sigma.pipeline import UNSUPPORTED_FIELDS, edrfleet_pipeline
from edrfleet.policy.sigma.text import (
    PatternUnsupported,
    TextPattern,
    arg_regex,
    argv_regex,
    cmdline_regex,
    from_sigma,
)

TRUE: Expr = And(())
_FLAGS = {SigmaRegularExpressionFlag.IGNORECASE: "i", SigmaRegularExpressionFlag.MULTILINE: "m",
          SigmaRegularExpressionFlag.DOTALL: "s"}
_LEADING_FLAGS = re.compile(r"\A\(\?([aimsx]+)\)")


class Unsupported(InputError, SigmaFeatureNotSupportedByBackendError):
    pass


def _modifier(p: TextPattern) -> str:
    if p.start and p.end:
        return ""
    return "|startswith" if p.start else "|endswith" if p.end else "|contains"


class EdrfleetBackend(Backend):
    """Converts Sigma process-creation rules to edrfleet ``match`` blocks (one list per rule).

    ``notes`` holds the approximations made for the last converted rule (kept in the rule's
    ``source`` block); ``dropped`` the alternatives of its condition that were left out (each
    needs a fact the kernel cannot check; the rest is imported, so the rule fires on a subset
    of what the Sigma rule fires on).
    """

    name: ClassVar[str] = "edrfleet"
    formats: ClassVar[dict[str, str]] = {"default": "list of edrfleet match mappings"}
    backend_processing_pipeline = edrfleet_pipeline()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[str] = []
        self.dropped: list[str] = []  # alternatives left out of the last rule, with the reason

    def convert_rule(self, rule: SigmaRule, output_format: str | None = None,
                     callback: Any = None) -> list[Any]:
        self.notes = []
        self.dropped = []
        return super().convert_rule(rule, output_format, callback)

    # --- boolean structure -----------------------------------------------------------------
    def convert_condition_and(self, cond: ConditionAND, state: ConversionState) -> Expr:
        return And(tuple(self.convert_condition(a, state) for a in cond.args))

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState) -> Expr:
        return Or(tuple(self.convert_condition(a, state) for a in cond.args))

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState) -> Expr:
        return Not(self.convert_condition(cond.args[0], state))

    # --- field = value -----------------------------------------------------------------------
    def convert_condition_field_eq_val(self, cond: ConditionFieldEqualsValueExpression,
                                       state: ConversionState) -> Expr:
        try:
            return super().convert_condition_field_eq_val(cond, state)
        except Unsupported as exc:  # decided in finalize_query_default, see expr.Unknown
            return Unknown(str(exc))

    def convert_condition_val(self, cond: ConditionValueExpression,
                              state: ConversionState) -> Expr:
        try:
            return super().convert_condition_val(cond, state)
        except Unsupported as exc:
            return Unknown(str(exc))

    def convert_condition_field_eq_val_str(
            self, cond: ConditionFieldEqualsValueExpression, state: ConversionState) -> Expr:
        return self._string(cond.field, cond.value, icase=True)

    def convert_condition_field_eq_val_str_case_sensitive(
            self, cond: ConditionFieldEqualsValueExpression, state: ConversionState) -> Expr:
        return self._string(cond.field, cond.value, icase=False)

    def convert_condition_field_eq_val_num(
            self, cond: ConditionFieldEqualsValueExpression, state: ConversionState) -> Expr:
        return self._string(cond.field, SigmaString(str(cond.value.number)), icase=True)

    def convert_condition_field_eq_val_re(
            self, cond: ConditionFieldEqualsValueExpression, state: ConversionState) -> Expr:
        field = self._known(cond.field)
        if field.startswith("argv.") and field != "argv.0":
            self._note("auditd aN fields (N >= 1) are matched as 'some argument' (args), "
                       "whatever its position")
            return Arg(self._regex(cond.value), f"a{field[5:]}")
        if field != "cmdline":
            raise Unsupported(f"{self._sigma_name(cond)}|re: a regex on "
                              f"{'one positional argument' if field.startswith('argv.') else field}"
                              " (only CommandLine takes a regex)")
        return Cmd(self._regex(cond.value))

    # --- keywords (no field) -----------------------------------------------------------------
    def convert_condition_val_str(self, cond: ConditionValueExpression,
                                  state: ConversionState) -> Expr:
        p = from_sigma(cond.value, icase=not isinstance(cond.value, SigmaCasedString))
        p = TextPattern(p.items, False, False, p.icase)
        self._note("keywords are searched in the command line")
        return Cmd(cmdline_regex(p), p, "keywords")

    def convert_condition_val_num(self, cond: ConditionValueExpression,
                                  state: ConversionState) -> Expr:
        value = ConditionValueExpression(SigmaString(str(cond.value.number)))
        return self.convert_condition_val_str(value, state)

    def convert_condition_val_re(self, cond: ConditionValueExpression,
                                 state: ConversionState) -> Expr:
        self._note("keywords are searched in the command line")
        return Cmd(self._regex(cond.value), None, "keywords")

    # --- everything else the kernel does not see ---------------------------------------------
    def _refuse(self, what: str) -> Any:
        raise Unsupported(f"{what}: the kernel does not evaluate it at exec")

    def convert_condition_field_eq_val_timestamp_part(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"timestamp part on {cond.field}")

    def convert_condition_field_eq_val_bool(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"boolean value of {cond.field}")

    def convert_condition_field_eq_val_cidr(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"CIDR value of {cond.field}")

    def convert_condition_field_compare_op_val(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"numeric comparison on {cond.field}")

    def convert_condition_field_eq_field(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"field reference on {cond.field}")

    def convert_condition_field_eq_val_null(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"null value of {cond.field}")

    def convert_condition_field_exists(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"'exists' on {cond.field}")

    def convert_condition_field_not_exists(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"'exists' on {cond.field}")

    def convert_condition_field_eq_query_expr(self, cond: Any, state: Any) -> Any:
        return self._refuse(f"query expression on {cond.field}")

    def convert_condition_query_expr(self, cond: Any, state: Any) -> Any:
        return self._refuse("query expression")

    def convert_condition_as_in_expression(self, cond: Any, state: Any) -> Any:
        raise NotImplementedError("in-expressions are off (convert_or_as_in is False)")

    # correlation rules (several events over time) are refused before conversion
    def _no_correlation(self, rule: Any, *args: Any) -> Any:
        raise Unsupported("a correlation rule (several events over time)")

    convert_correlation_event_count_rule = _no_correlation
    convert_correlation_value_count_rule = _no_correlation
    convert_correlation_temporal_rule = _no_correlation
    convert_correlation_temporal_ordered_rule = _no_correlation
    convert_correlation_extended_temporal_rule = _no_correlation
    convert_correlation_extended_temporal_ordered_rule = _no_correlation
    convert_correlation_value_sum_rule = _no_correlation
    convert_correlation_value_avg_rule = _no_correlation
    convert_correlation_value_percentile_rule = _no_correlation
    convert_correlation_value_median_rule = _no_correlation

    # --- the result of one rule --------------------------------------------------------------
    def finalize_query_default(self, rule: SigmaRule, query: Expr, index: int,
                               state: ConversionState) -> list[dict[str, Any]]:
        try:
            branches = dnf(query)
        except ConditionUnsupported as exc:
            raise Unsupported(str(exc)) from None
        out = []
        refusals: list[str] = []
        for conj in branches:
            unknown = [a for a, _ in conj if isinstance(a, Unknown)]
            refused = [a for a, positive in conj if isinstance(a, Unknown) and positive]
            if refused:  # this alternative needs a fact the kernel cannot check
                refusals.append(refused[0].reason)
                continue
            if unknown:
                self._note(f"a filter condition the kernel cannot check is assumed to hold "
                           f"(the filter excludes more): {unknown[0].reason}")
                continue
            try:
                match = build_match(conj)
            except Unsatisfiable:
                continue
            except ConditionUnsupported as exc:
                refusals.append(str(exc))
                continue
            if match not in out:
                out.append(match)
        if refusals and not out:
            raise Unsupported(refusals[0])
        if not out:
            raise Unsupported("the condition can never hold")
        for reason in refusals:  # a subset of the rule's alternatives: it fires on fewer events
            if reason not in self.dropped:
                self.dropped.append(reason)
                self._note(f"alternatives of the condition are left out: {reason}")
        return out

    # --- helpers ------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @staticmethod
    def _sigma_name(cond: ConditionFieldEqualsValueExpression) -> str:
        mapped = {v: k for k, v in edrfleet_pipeline().items[0].transformation.mapping.items()}
        return mapped.get(cond.field, cond.field)

    def _known(self, field: str | None) -> str:
        if field is None:
            raise Unsupported("a value without a field")
        if field in ("executable", "cmdline", "parent", "user", "cwd", "auditd.type",
                     "auditd.syscall", "euid") or field.startswith("argv."):
            return field
        reason = UNSUPPORTED_FIELDS.get(field, "not known to the kernel at exec")
        raise Unsupported(f"field '{field}': {reason}")

    def _string(self, field: str | None, value: Any, icase: bool) -> Expr:
        field = self._known(field)
        if isinstance(value, SigmaNumber):
            value = SigmaString(str(value.number))
        try:
            p = from_sigma(value, icase)
        except PatternUnsupported as exc:
            raise Unsupported(str(exc)) from None
        if field == "cmdline":
            return Cmd(cmdline_regex(p), p)
        if field == "argv.0" and p.start and p.end and p.literal and (
                b"/" not in p.literal or p.literal.startswith(b"/")):
            # argv[0] of an exec through $PATH is the program's name: match the executable (by
            # name, or by file for a path), which also catches execs that spell argv[0] otherwise
            self._note("auditd a0 (argv[0]) is matched as the executable it names")
            return self._exe("executable", TextPattern(
                (p.literal if p.literal.startswith(b"/") else b"/" + p.literal,),
                p.literal.startswith(b"/"), True, p.icase), value)
        if field == "argv.0":
            return Cmd(argv_regex(0, p), None, "a0")
        if field.startswith("argv."):
            self._note("auditd aN fields (N >= 1) are matched as 'some argument' (args), "
                       "whatever its position")
            return Arg(arg_regex(p), f"a{field[5:]}")
        if field == "auditd.type":
            if p.literal is not None and p.literal.lower() == b"execve":
                return TRUE
            if p.literal is not None and p.literal.lower() == b"syscall":
                return OneOf("auditd.record", frozenset({"syscall"}))  # needs SYSCALL: execve
            raise Unsupported(f"auditd record type '{value}': the kernel sees execs (EXECVE "
                              "records) only")
        if field == "auditd.syscall":
            if p.literal is not None and p.literal.lower() in (b"execve", b"execveat"):
                return OneOf("auditd.syscall", frozenset({"execve"}))
            raise Unsupported(f"auditd SYSCALL '{value}': the kernel sees execs only")
        if field == "euid":
            if p.literal is not None and p.literal.isdigit():
                self._note("auditd euid is matched as the exec's uid (the same unless the "
                           "program is setuid)")
                return OneOf("user", frozenset({p.literal.decode()}))
            raise Unsupported(f"euid '{value}': the kernel matches a whole uid")
        if field in ("executable", "parent"):
            return self._exe(field, p, value)
        return self._oneof(field, p, value)

    def _exe(self, field: str, p: TextPattern, value: Any) -> Exe:
        sigma = "Image" if field == "executable" else "ParentImage"
        text = p.items[0].decode(errors="replace") if len(p.items) == 1 and isinstance(
            p.items[0], bytes) else None
        if text is not None and p.start and p.end and text.startswith("/"):
            return Exe(field, paths=frozenset({text}))
        if text is not None and p.end and not p.start and text.startswith("/") and len(text) > 1:
            name = text.rsplit("/", 1)[1]
            if not name:
                raise Unsupported(f"{sigma}|endswith '{value}' names a directory")
            if not name_fits(name):
                raise Unsupported(f"{sigma} name '{name}' is longer than the kernel compares")
            if text.count("/") > 1:
                self._note(f"{sigma}|endswith '{text}' is matched by the name '{name}' in any "
                           "directory")
            return Exe(field, names=frozenset({name}))
        if text is not None and p.end and not p.start and "/" not in text and "\\" not in text:
            self._note(f"{sigma}|endswith '{text}' is matched as the executable named exactly "
                       f"'{text}' (names that only end with it are not matched)")
            return Exe(field, names=frozenset({text}))
        raise Unsupported(f"{sigma}{_modifier(p)} '{value}': the kernel matches an executable "
                          "by its whole name or its file, not by a part of its path")

    def _oneof(self, field: str, p: TextPattern, value: Any) -> OneOf:
        text = p.items[0].decode(errors="replace") if len(p.items) == 1 and isinstance(
            p.items[0], bytes) else None
        if field == "user" and text is not None and p.start and p.end:
            return OneOf("user", frozenset({text}))
        if field == "cwd" and text is not None and p.start and not p.end and (
                text.startswith("/")):
            return OneOf("cwd", frozenset({text}))
        sigma = "User" if field == "user" else "CurrentDirectory"
        need = "a whole user name or uid" if field == "user" else "|startswith an absolute path"
        raise Unsupported(f"{sigma}{_modifier(p)} '{value}': the kernel matches {need}")

    def _regex(self, value: SigmaRegularExpression) -> str:
        text = value.regexp.to_plain()
        flags = "".join(sorted(_FLAGS[f] for f in value.flags))
        lead = _LEADING_FLAGS.match(text)
        if lead:  # global inline flags become scoped ones, so the regex can be ORed with others
            flags = "".join(sorted(set(flags + lead.group(1))))
            text = text[lead.end():]
        regex = f"(?{flags}:{text})" if flags else f"(?:{text})"
        try:
            regex_ast(regex.encode(), CMD)
        except RegexUnsupported as exc:
            raise Unsupported(f"regex '{text}': {exc.piece} ({exc.hint})") from None
        except re.error as exc:
            raise Unsupported(f"regex '{text}' is not valid for Python's re: {exc}") from None
        return regex
