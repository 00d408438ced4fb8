"""Policy -> bundle (docs/policy-bundle.md, format 1).

Steps, all deterministic (same policy, same bytes, same sha256):

1. every rule gets its index in policy order; its conditions are keyed so that identical
   conditions share one bit inside a group (``any`` literals are compared as a set);
2. rules are grouped by their *set* of executables (names and paths; none = wildcard), in order
   of first appearance; a group holds at most 64 rules and 64 condition bits, more start a new
   group for the same key set; wildcard rules with literals every match must contain are
   *prefiltered* instead (``regex/prefilter.py``): packed by literal, run only when the
   prefilter automaton (one more DFA, over all their literals) sees one;
3. each group gets one search DFA over all its conditions; a group whose DFA passes the state
   or class cap is split in two (by rules) until it fits or one rule alone is too large;
4. identical DFAs are stored once; kernel capacities are checked (`limits`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from edrfleet.kernel_abi import kernel_nclasses
from edrfleet.policy.bundle import (
    CWD_VERSION,
    FORMAT,
    PREFILTER_VERSION,
    VERSION,
    bundle_sha256,
    dump_bundle,
    is_bundle_text,
    load_bundle,
)
from edrfleet.policy.errors import PolicyError, raise_collected
from edrfleet.policy.limits import (
    COND_BITS,
    DEFAULT_SEARCH_PATH,
    EDR_NSYM,
    EDR_PF_BITS,
    EDR_POLICY_MAX_RULES,
    EDR_RULES_PER_GROUP,
    MAX_CLASSES,
    MAX_DFA_STATES,
    SIMPLIFY,
    check_capacity,
)
from edrfleet.policy.loader import load_policy_text, read_policy_file
from edrfleet.policy.model import ArgMatcher, Policy, Rule
from edrfleet.policy.regex.dfa import Dfa, DfaTooLarge, build_dfa
from edrfleet.policy.regex.nfa import NfaTooLarge, group_nfa
from edrfleet.policy.regex.parse import ARG, CMD, Node, any_ast, glob_ast, regex_ast
from edrfleet.policy.regex.prefilter import (
    PrefilterTooLarge,
    pack_prefiltered,
    prefilter_dfa,
    rule_literals,
)
from edrfleet.policy.spell.cwd import class_words, cwd_classes, joined_words
from edrfleet.policy.spell.options import option_ast
from edrfleet.policy.spell.paths import path_ast
from edrfleet.policy.spell.spec import OptionSpec, PathSpec

__all__ = ["compile_policy", "bundle_sha256", "dump_bundle", "load_bundle", "condition_keys"]

# Group key of the rules that name no executable but require a fileless one: run only for
# fileless execs (executables.fileless), not for every exec like the wildcard groups.
FILELESS_KEY = ("",)  # "" is never an executable name (the schema refuses it)
# Conditions that read the argv stream from BOS (entered where cmdline regexes are): an
# option's meaning depends on the arguments before it ('--').
WHOLE_ARGV = ("cmdline", "option")
# Group key of the prefiltered wildcard rules: run when the prefilter sees their literals.
PREFILTER_KEY = ("*",)
CondKey = tuple[str, Any]  # ("any", (b"lit", ...)) | ("glob"|"regex"|"cmdline", b"...")

def _arg_key(m: ArgMatcher) -> CondKey:
    if m.kind == "any":
        return ("any", tuple(sorted({lit.encode() for lit in m.value})))
    return (m.kind, str(m.value).encode())


def _show(key: CondKey) -> str:
    """A condition as the policy spells it, for messages."""
    kind, value = key
    if kind == "any":
        return "any [" + ", ".join(v.decode(errors="replace") for v in value) + "]"
    text = value.decode(errors="replace")
    if kind in ("option", "path"):
        return f"args {kind} {text}"
    return f"cmdline regex {text!r}" if kind == "cmdline" else f"args {kind} {text!r}"


def condition_keys(rule: Rule) -> list[CondKey]:
    """The rule's conditions, deduplicated, in the order written."""
    keys: list[CondKey] = []
    for m in rule.args:
        key = _arg_key(m)
        if key not in keys:
            keys.append(key)
    for rx in rule.cmdlines or ((rule.cmdline,) if rule.cmdline is not None else ()):
        key = ("cmdline", rx.encode())
        if key not in keys:
            keys.append(key)
    return keys


def _condition_ast(key: CondKey, cwd_words: tuple[tuple[int, bytes], ...] = ()) -> Node:
    kind, value = key
    if kind == "any":
        return any_ast(value)
    if kind == "glob":
        return glob_ast(value)
    if kind == "option":
        return option_ast(OptionSpec.from_text(value.decode()))
    if kind == "path":
        spec = PathSpec.from_text(value.decode())
        return path_ast(spec, joined_words(spec, cwd_words))
    if kind == "regex":
        return regex_ast(value, ARG)
    return regex_ast(value, CMD)


@dataclass
class Group:
    keyset: tuple[str, ...]
    rules: list[int]
    bits: dict[CondKey, int] = field(default_factory=dict)
    dfa: Dfa | None = None
    literals: frozenset = frozenset()  # prefiltered: the union of its rules' literals


class Compilation:
    """One policy being compiled: its conditions, their ASTs, the errors found so far."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.errors: list[PolicyError] = []
        self.conds = [condition_keys(rule) for rule in policy.rules]
        self.asts: dict[CondKey, Node] = {}
        # relative path arguments: the cwd classes of every path matcher's anchors
        specs = [PathSpec.from_text(k[1].decode()) for keys in self.conds for k in keys
                 if k[0] == "path"]
        self.cwd_classes = cwd_classes(specs) if specs else []
        self.cwd_words = class_words(self.cwd_classes)

    def error(self, rule: Rule | None, message: str, fix: str, line: int = 0, col: int = 0):
        self.errors.append(PolicyError(
            message, source=self.policy.source, line=line or (rule.line if rule else 0),
            col=col or (rule.col if rule and not line else 0), fix=fix))

    def ast(self, key: CondKey) -> Node:
        got = self.asts.get(key)
        if got is None:
            got = self.asts[key] = _condition_ast(key, self.cwd_words)
        return got

    def pack(self, keyset: tuple[str, ...], rules: list[int]) -> list[Group]:
        """Greedy packing in policy order under the slot and bit limits."""
        groups: list[Group] = []
        cur: Group | None = None
        for r in rules:
            new = [k for k in self.conds[r] if cur is None or k not in cur.bits]
            if cur is None or len(cur.rules) >= EDR_RULES_PER_GROUP or (
                    len(cur.bits) + len(new) > COND_BITS):
                cur = Group(keyset, [])
                groups.append(cur)
                new = list(self.conds[r])
            cur.rules.append(r)
            for k in new:
                cur.bits[k] = len(cur.bits)
        return groups

    def build(self, group: Group) -> list[Group]:
        """Build the group's DFA; split the group while it is too large."""
        if not group.bits:
            return [group]
        arg = [(self.ast(k), b) for k, b in group.bits.items() if k[0] not in WHOLE_ARGV]
        cmd = [(self.ast(k), b) for k, b in group.bits.items() if k[0] in WHOLE_ARGV]
        try:
            dfa = build_dfa(arg, cmd, max_states=MAX_DFA_STATES,
                            cwd_classes=len(self.cwd_classes))
            if kernel_nclasses(dfa.classes, dfa.nclasses, EDR_NSYM) > MAX_CLASSES:
                raise DfaTooLarge(MAX_DFA_STATES)
        except DfaTooLarge:
            if len(group.rules) == 1:
                self.too_large(group.rules[0])
                return []
            half = (len(group.rules) + 1) // 2
            return [g for part in (group.rules[:half], group.rules[half:])
                    for sub in self.pack(group.keyset, part) for g in self.build(sub)]
        group.dfa = dfa
        return [group]

    def too_large(self, r: int) -> None:
        rule = self.policy.rules[r]
        for key in self.conds[r]:
            arg = [(self.ast(key), 0)] if key[0] not in WHOLE_ARGV else []
            cmd = [(self.ast(key), 0)] if key[0] in WHOLE_ARGV else []
            try:
                build_dfa(arg, cmd, max_states=MAX_DFA_STATES,
                          cwd_classes=len(self.cwd_classes))
            except DfaTooLarge:
                line, col = self.where(rule, key)
                self.error(rule, f"{_show(key)} of rule '{rule.id}' needs more than "
                                 f"{MAX_DFA_STATES} automaton states", SIMPLIFY, line, col)
                return
        self.error(rule, f"the conditions of rule '{rule.id}' together need more than "
                         f"{MAX_DFA_STATES} automaton states", SIMPLIFY)

    def where(self, rule: Rule, key: CondKey) -> tuple[int, int]:
        if key[0] == "cmdline":
            return rule.cmdline_line, rule.cmdline_col
        for m in rule.args:
            if m.kind == key[0] and _arg_key(m) == key:
                return m.line, m.col
        return rule.line, rule.col

    def check_nfa_sizes(self) -> None:
        seen: set[CondKey] = set()
        for r, keys in enumerate(self.conds):
            for key in keys:
                if key in seen:
                    continue
                seen.add(key)
                try:
                    ast = self.ast(key)
                    group_nfa([(ast, 0)] if key[0] not in WHOLE_ARGV else [],
                              [(ast, 0)] if key[0] in WHOLE_ARGV else [])
                except NfaTooLarge as exc:
                    rule = self.policy.rules[r]
                    line, col = self.where(rule, key)
                    self.error(rule, f"{_show(key)[:60]} of rule '{rule.id}' is too large "
                                     "for the automaton", exc.hint, line, col)


def compile_policy(policy: Policy) -> dict[str, Any]:
    """Compile a validated `Policy` into the bundle dict (with its ``sha256``).

    Raises:
        PolicyError / PolicyErrors: a rule whose automaton passes the caps, or a policy that
            does not fit the kernel's tables (naming the rule or executable and a fix).

    Example:
        >>> from edrfleet.policy import load_policy_text
        >>> b = compile_policy(load_policy_text("version: 1\\nrules: []\\n"))
        >>> b["format"], b["groups"]
        ('edrfleet-bundle', [])
    """
    c = Compilation(policy)
    if len(policy.rules) > EDR_POLICY_MAX_RULES:
        c.error(None, f"{len(policy.rules)} rules; the kernel holds at most {EDR_POLICY_MAX_RULES}",
                "split the policy or merge rules", line=1, col=1)
    c.check_nfa_sizes()
    raise_collected(c.errors)
    keysets: dict[tuple[str, ...], list[int]] = {}
    for r, rule in enumerate(policy.rules):
        keyset = tuple(sorted(set(rule.executables)))
        keysets.setdefault(keyset or (FILELESS_KEY if rule.fileless else ()), []).append(r)
    groups: list[Group] = []
    prefiltered: list[tuple[int, frozenset]] = []
    for r in keysets.get((), []):
        lits = rule_literals([c.ast(k) for k in c.conds[r]])
        if lits is not None:
            prefiltered.append((r, lits))
    if prefiltered:
        keysets[()] = [r for r in keysets[()] if r not in dict(prefiltered)]
    for keyset, rules in keysets.items():
        for packed in c.pack(keyset, rules):
            groups.extend(c.build(packed))
    groups.extend(_prefiltered_groups(c, prefiltered))
    raise_collected(c.errors)
    bundle = _assemble(policy, groups)
    _add_prefilter(c, bundle, groups)
    if any(len(d["classes"]) > EDR_NSYM for d in bundle["dfas"]):  # only then: old bytes kept
        bundle["cwd_classes"] = [[a, level] for a, level in c.cwd_classes]
        bundle["version"] = CWD_VERSION
    check_capacity(c, policy, bundle, groups)
    raise_collected(c.errors)
    bundle["sha256"] = bundle_sha256(bundle)
    return bundle


def _prefiltered_groups(c: Compilation, rules: list[tuple[int, frozenset]]) -> list[Group]:
    lits = dict(rules)

    def pack(chunk: list[int]) -> list[Group]:
        out = [g for p in c.pack(PREFILTER_KEY, chunk) for g in c.build(p)]
        for g in out:
            g.literals = frozenset().union(*(lits[r] for r in g.rules))
        return out

    return pack_prefiltered(rules, pack) if rules else []


def _add_prefilter(c: Compilation, bundle: dict[str, Any], groups: list[Group]) -> None:
    """The prefilter automaton over the literals of the prefiltered groups (bit i = group
    ``executables.prefilter.groups[i]``)."""
    pf = [g for g, group in enumerate(groups) if group.keyset == PREFILTER_KEY]
    if not pf:
        return
    if len(pf) > EDR_PF_BITS:
        c.error(None, f"rules without 'executable' need {len(pf)} prefiltered groups; the "
                f"kernel takes {EDR_PF_BITS}", "name the executables of some of these rules, "
                "or merge rules", line=1, col=1)
        return
    try:
        dfa = prefilter_dfa([groups[g].literals for g in pf])
    except PrefilterTooLarge as exc:
        c.error(None, f"the literals of the rules without 'executable' need an automaton of "
                f"{exc}", "name the executables of some of these rules, or shorten their "
                "regexes' literal parts", line=1, col=1)
        return
    bundle["dfas"].append(dfa.to_json())
    bundle["executables"]["prefilter"] = {"dfa": len(bundle["dfas"]) - 1, "groups": pf}
    bundle["version"] = PREFILTER_VERSION


def compile_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle of a policy file of either kind, told apart by content (`is_bundle_text`):
    a policy YAML is validated and compiled, a bundle JSON is checked and returned as is.

    Raises:
        PolicyError / PolicyErrors: an unreadable file or an invalid policy; ValueError: a
            damaged bundle.
    """
    text = read_policy_file(path)
    if is_bundle_text(text):
        return load_bundle(text)
    return compile_policy(load_policy_text(text, os.fspath(path)))


def _assemble(policy: Policy, groups: list[Group]) -> dict[str, Any]:
    dfa_index: dict[Any, int] = {}
    dfas: list[dict[str, Any]] = []
    names: dict[str, list[int]] = {}
    paths: dict[str, list[int]] = {}
    wildcard: list[int] = []
    fileless: list[int] = []
    out_groups = []
    for g, group in enumerate(groups):
        index = None
        if group.dfa is not None:
            d = group.dfa
            key = (d.nclasses, tuple(d.classes), d.start, tuple(d.trans), tuple(d.accept))
            index = dfa_index.get(key)
            if index is None:
                index = dfa_index[key] = len(dfas)
                dfas.append(d.to_json())
        slots = []
        for r in group.rules:
            need = 0
            for k in condition_keys(policy.rules[r]):
                need |= 1 << group.bits[k]
            slots.append([r, need])
        out_groups.append({
            "dfa": index, "rules": slots,
            "has_block": any(policy.rules[r].action == "block" for r in group.rules)})
        if not group.keyset:
            wildcard.append(g)
        elif group.keyset == FILELESS_KEY:
            fileless.append(g)
            continue
        elif group.keyset == PREFILTER_KEY:
            continue  # listed by _add_prefilter
        for exe in group.keyset:
            (paths if exe.startswith("/") else names).setdefault(exe, []).append(g)
    rules = []
    for r in policy.rules:
        rules.append({"id": r.id, "description": r.description, "severity": r.severity,
                      "action": r.action, "uids": list(r.uids), "tags": list(r.tags),
                      **_context_fields(r)})
        if r.fileless:  # written only when set: bundles of policies without it are unchanged
            rules[-1]["fileless"] = True
    executables: dict[str, Any] = {"names": names, "paths": paths, "wildcard": wildcard}
    if fileless:  # only when used: bundles of policies without it are unchanged
        executables["fileless"] = fileless
    if policy.multicall:  # likewise
        executables["multicall"] = {
            "names": [m for m in policy.multicall if not m.startswith("/")],
            "paths": [m for m in policy.multicall if m.startswith("/")]}
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": os.path.basename(policy.source),
        "mode": policy.mode,
        "backend": policy.backend,
        "unscanned": policy.unscanned,
        "scope": {"cgroups": list(policy.scope_cgroups)},
        "search_path": list(DEFAULT_SEARCH_PATH),
        "rules": rules,
        "executables": executables,
        "groups": out_groups,
        "dfas": dfas,
    }


def _context_fields(rule: Rule) -> dict[str, list[str]]:
    """The rule's user names, parent and ancestor executables, cwd prefixes and inet_stdio
    (only those it has, so bundles of policies without them keep their bytes)."""
    fields = {"users": list(rule.users), "parents": list(rule.parents), "cwds": list(rule.cwds),
              "ancestors": list(rule.ancestors), "inet_stdio": list(rule.inet_stdio)}
    return {k: v for k, v in fields.items() if v}
