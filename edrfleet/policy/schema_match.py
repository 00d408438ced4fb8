"""Validation of a rule's ``match:`` block (executables, args, cmdline, user/uid, parent,
ancestor, cwd, fileless, inet_stdio).

Regexes are checked here by translating them for the automaton (`regex_parse`), so syntax
errors and unsupported features are reported at load time, with the column inside the YAML
scalar when the scalar is written without escapes.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

import yaml

from edrfleet.policy.checker import Checker
from edrfleet.policy.limits import COND_BITS, EDR_UIDS_PER_RULE, NAME_BYTES_MAX, name_fits
from edrfleet.policy.model import EXACT_CWD, ArgMatcher
from edrfleet.policy.regex.parse import ARG, CMD, Context, RegexUnsupported, regex_ast
from edrfleet.policy.spell.check import check_option, check_path

MATCH_KEYS = ("executable", "args", "cmdline", "user", "uid", "parent", "cwd", "cwd_is",
              "fileless", "ancestor", "inet_stdio")
STDIO_WHOSE = ("self", "parent")  # match.inet_stdio: whose standard streams count
ARG_KINDS = ("any", "glob", "regex", "option", "path")
PARENT_KEYS = ("executable",)
UID_MAX = 2**32 - 2  # (uid_t)-1 means "no uid"
# POSIX portable user names (useradd's default NAME_REGEX, plus '.' and a final '$' for Samba)
USER_RE = re.compile(r"[a-z_][a-z0-9_.-]*\$?\Z", re.IGNORECASE)
CWD_MAX = 4095  # PATH_MAX - 1

_REGEX_FIXES = (
    ("nothing to repeat", "escape the character with a backslash (e.g. '\\*', '\\+') to mean "
                          "it literally"),
    ("multiple repeat", "remove one of the repeat operators, or escape it"),
    ("missing ), unterminated subpattern", "close the group with ')'"),
    ("unbalanced parenthesis", "remove the ')' or escape it as '\\)'"),
    ("unterminated character set", "close the class with ']' or escape '[' as '\\['"),
    ("bad escape", "double the backslash to match a literal one"),
    ("bad character range", "write ranges low-high, e.g. 'a-z'"),
    ("bad inline flags", "use only the flags i, s, x, m, a"),
    ("global flags not at the start", "move the flags to the very start, or scope them: "
                                      "'(?i:...)'"),
)


def regex_fix(msg: str) -> str:
    for needle, fix in _REGEX_FIXES:
        if needle in msg:
            return fix
    return "see the syntax of Python's re module"


def scalar_offset(lines: list[str], node: yaml.Node, text: str, pos: int) -> int:
    """Columns from the node's start to character ``pos`` of its value, when exact (else 0).

    Exact only for a one-line scalar written without escapes (plain or quoted).
    """
    start, end = node.start_mark, node.end_mark
    if start.line != end.line or start.line >= len(lines):
        return 0
    raw = lines[start.line][start.column:end.column]
    if node.style is None and raw == text:
        return pos
    if node.style in ("'", '"') and raw == f"{node.style}{text}{node.style}":
        return pos + 1
    return 0


@dataclass
class MatchResult:
    executables: tuple[str, ...]
    args: tuple[ArgMatcher, ...]
    cmdline: str | None
    uids: tuple[int, ...]
    cmdline_line: int = 0
    cmdline_col: int = 0
    users: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    cwds: tuple[str, ...] = ()
    cmdlines: tuple[str, ...] = ()
    fileless: bool = False
    ancestors: tuple[str, ...] = ()
    inet_stdio: tuple[str, ...] = ()


class MatchChecker:
    def __init__(self, c: Checker) -> None:
        self.c = c

    def check(self, node: yaml.Node, where: str) -> MatchResult | None:
        c = self.c
        before = len(c.errors)
        if not isinstance(node, yaml.MappingNode):
            c.error(node, f"'match' {where} must be a mapping, not {c.describe(node)}",
                    "write 'match: {executable: [name], args: [...]}'")
            return None
        keys = c.mapping(node, MATCH_KEYS, where, {
            k: f"move '{k}' up to the rule, next to 'match:'" for k in
            ("id", "description", "severity", "action", "tags")} | {
            k: "put it in a list under 'args:' (e.g. 'args: [{any: [...]}]')" for k in ARG_KINDS})
        if not keys and len(c.errors) == before:
            c.error(node, f"'match' {where} has no matcher",
                    f"add at least one of: {', '.join(MATCH_KEYS)}")
            return None
        exes = self.executables(keys["executable"][1], where) if "executable" in keys else ()
        args = self.args(keys["args"][1], where) if "args" in keys else ()
        cmdlines: tuple[str, ...] = ()
        cline = ccol = 0
        if "cmdline" in keys:
            cnode = keys["cmdline"][1]
            cmdlines = self.cmdlines(cnode, where)
            cline, ccol = cnode.start_mark.line + 1, cnode.start_mark.column + 1
        cmdline = cmdlines[0] if cmdlines else None
        uids, users = self.users(keys, where)
        parents = self.parent(keys["parent"][1], where) if "parent" in keys else ()
        cwds = self.cwds(keys["cwd"][1], where) if "cwd" in keys else ()
        if "cwd_is" in keys:  # exact directories travel with the prefixes, marked EXACT_CWD
            cwds += tuple(EXACT_CWD + d for d in self.cwds(keys["cwd_is"][1], where, "cwd_is"))
        fileless = self.fileless(keys["fileless"][1], where) if "fileless" in keys else False
        ancestors = (self.parent(keys["ancestor"][1], where, "ancestor")
                     if "ancestor" in keys else ())
        inet_stdio = self.inet_stdio(keys["inet_stdio"][1], where) if "inet_stdio" in keys else ()
        nconds = len(args) + len(cmdlines)
        if nconds > COND_BITS:
            c.error(node, f"{where.removeprefix('in ')} has {nconds} conditions, at most "
                          f"{COND_BITS} fit in one rule", "split the rule in two")
        if len(c.errors) != before:
            return None
        return MatchResult(tuple(exes or ()), tuple(args or ()), cmdline, tuple(uids or ()),
                           cline, ccol, users, parents, cwds, cmdlines, fileless, ancestors,
                           inet_stdio)

    def cmdlines(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        """``cmdline: R`` or ``cmdline: [R1, R2]`` (every regex must hold)."""
        c = self.c
        if isinstance(node, yaml.SequenceNode):
            entries = c.string_list(node, "cmdline", where, "cmdline: ['regex', 'another']")
        else:
            text = c.string(node, "cmdline", where)
            entries = None if text is None else [(text, node)]
        out: list[str] = []
        for text, item in entries or []:
            if self.pattern(item, text, CMD, "'cmdline'", where) and text not in out:
                out.append(text)
        return tuple(out)

    def fileless(self, node: yaml.Node, where: str) -> bool:
        """``fileless: true``: the executable has no link on any filesystem when it runs
        (memfd_create, O_TMPFILE, a deleted file run through its descriptor)."""
        value = self.c.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if type(value) is not bool:
            self.c.error(node, f"'fileless' {where} must be true or false, not "
                               f"{self.c.describe(node)}", "write 'fileless: true'")
            return False
        return value

    def executables(self, node: yaml.Node, where: str, what: str = "executable"
                    ) -> tuple[str, ...]:
        c = self.c
        entries = c.string_list(node, what, where, f"{what}: [rm, /usr/bin/dd]")
        out: list[str] = []
        for name, item in entries or []:
            if "\0" in name or not name:
                c.error(item, f"bad executable {name!r} {where}", "write a file name or path")
            elif "/" in name and not name.startswith("/"):
                c.error(item, f"executable '{name}' {where} is neither a basename nor an "
                              "absolute path", f"write '{name.rsplit('/', 1)[-1]}' (any "
                                               f"directory) or '/{name.lstrip('./')}'")
            elif "/" not in name and name in (".", ".."):
                c.error(item, f"bad executable '{name}' {where}", "write a file name")
            elif "/" not in name and not name_fits(name):
                c.error(item, f"executable name '{name[:20]}...' {where} is "
                              f"{len(name.encode())} bytes; the kernel compares at most "
                              f"{NAME_BYTES_MAX}", "name the file by its absolute path")
            elif name.endswith("/") and len(name) > 1:
                c.error(item, f"executable '{name}' {where} ends with '/'",
                        f"write '{name.rstrip('/')}'")
            elif name not in out:
                out.append(name)
        return tuple(out)

    def args(self, node: yaml.Node, where: str) -> tuple[ArgMatcher, ...]:
        c = self.c
        items = c.sequence(node, "args", where, "args: [{any: [-rf]}, {glob: '/*'}]")
        if items is not None and not items:
            c.error(node, f"'args' {where} is an empty list",
                    "add entries like '- any: [-rf]' or remove the key")
        out = []
        for item in items or []:
            got = self.arg_entry(item, where)
            if got is not None:
                out.append(got)
        return tuple(out)

    def arg_entry(self, node: yaml.Node, where: str) -> ArgMatcher | None:
        c = self.c
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if not isinstance(node, yaml.MappingNode):
            shown = c.scalar(node) if isinstance(node, yaml.ScalarNode) else "..."
            c.error(node, f"an 'args' entry {where} must be a mapping with one of "
                          f"{', '.join(ARG_KINDS)}, not {c.describe(node)}",
                    f"write '- any: [\"{shown}\"]'")
            return None
        keys = c.mapping(node, ARG_KINDS, f"in an 'args' entry {where.removeprefix('in ')}")
        if len(keys) != 1:
            if len(keys) > 1:
                c.error(node, f"an 'args' entry {where} has {' and '.join(keys)}; each entry "
                              "takes exactly one", "split it into several entries (each must "
                                                   "hold)")
            elif not node.value:
                c.error(node, f"an 'args' entry {where} is empty",
                        f"use one of: {', '.join(ARG_KINDS)}")
            return None
        kind, (_, value) = next(iter(keys.items()))
        if kind == "any":
            entries = c.string_list(value, "any", where, 'any: ["-rf", "-fr"]')
            if entries is None:
                return None
            literals: list[str] = []
            for text, item in entries:
                if "\0" in text:
                    c.error(item, f"literal {text!r} in 'any' {where} contains NUL and can "
                                  "never match an argument", "remove the NUL")
                elif text not in literals:
                    literals.append(text)
            return ArgMatcher("any", tuple(literals), line, col)
        if kind in ("option", "path"):
            spec = (check_option if kind == "option" else check_path)(c, value, where)
            return None if spec is None else ArgMatcher(kind, spec.text(), line, col)
        text = c.string(value, kind, where)
        if text is None:
            return None
        if kind == "glob":
            if "\0" in text:
                c.error(value, f"glob {text!r} {where} contains NUL and can never match",
                        "remove the NUL")
                return None
        elif not self.pattern(value, text, ARG, "'args' regex", where):
            return None
        return ArgMatcher(kind, text, line, col)

    def pattern(self, node: yaml.Node, text: str, ctx: Context, what: str, where: str) -> bool:
        data = text.encode()
        try:
            regex_ast(data, ctx)
        except re.error as exc:
            pos = len(data[: exc.pos or 0].decode(errors="ignore"))
            self.c.error(node, f"invalid regex in {what} {where}: {exc.msg} at position {pos}",
                         regex_fix(exc.msg), scalar_offset(self.c.lines, node, text, pos))
            return False
        except RegexUnsupported as exc:
            pos = len(data[: exc.pos or 0].decode(errors="ignore"))
            offset = scalar_offset(self.c.lines, node, text, pos) if exc.pos is not None else 0
            self.c.error(node, f"unsupported regex feature in {what} {where}: {exc.piece}",
                         exc.hint, offset)
            return False
        return True

    def users(self, keys: dict[str, tuple[yaml.Node, yaml.Node]], where: str
              ) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """``user:`` (names or uids) or its alias ``uid:``; names are resolved on the host."""
        c = self.c
        if "user" in keys and "uid" in keys:
            c.error(keys["uid"][0], f"'uid' {where} is an alias of 'user', which is also given",
                    "keep one list ('user: [root, 1000]')")
            return (), ()
        what = "user" if "user" in keys else "uid"
        if what not in keys:
            return (), ()
        node = keys[what][1]
        items = c.sequence(node, what, where, f"{what}: [root, 1000]")
        if items is None:
            return (), ()
        if not items:
            c.error(node, f"'{what}' {where} is an empty list", "name a user or remove the key")
        uids: list[int] = []
        names: list[str] = []
        for item in items:
            value = c.scalar(item) if isinstance(item, yaml.ScalarNode) else None
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, str) and USER_RE.match(value) and len(value) <= 32:
                if value not in names:
                    names.append(value)
            elif type(value) is int and 0 <= value <= UID_MAX:
                if value not in uids:
                    uids.append(value)
            elif isinstance(value, str):
                c.error(item, f"bad user name {value!r} {where}",
                        "write a login name (letters, digits, '_', '-', '.') or a uid")
            else:
                shown = value if isinstance(value, int) else c.describe(item)
                c.error(item, f"bad uid {shown!r} {where}",
                        f"write a number from 0 to {UID_MAX} or a user name")
        total = len(uids) + len(names)
        if total > EDR_UIDS_PER_RULE:
            noun = "uids" if what == "uid" else "users"
            c.error(node, f"'{what}' {where} lists {total} {noun}; the kernel takes at most "
                          f"{EDR_UIDS_PER_RULE} per rule", "split the rule in two")
        return tuple(uids), tuple(names)

    def parent(self, node: yaml.Node, where: str, what: str = "parent") -> tuple[str, ...]:
        """``parent:`` / ``ancestor:`` ``{executable: [...]}``."""
        c = self.c
        if not isinstance(node, yaml.MappingNode):
            c.error(node, f"'{what}' {where} must be a mapping, not {c.describe(node)}",
                    f"write '{what}: {{executable: [bash, /usr/sbin/sshd]}}'")
            return ()
        keys = c.mapping(node, PARENT_KEYS, f"in '{what}' {where}")
        if "executable" not in keys:
            if node.value:
                return ()
            c.error(node, f"'{what}' {where} is empty", f"write '{what}: {{executable: [bash]}}'")
            return ()
        return self.executables(keys["executable"][1], where, f"{what}.executable")

    def inet_stdio(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        """``inet_stdio: [self, parent]``: fd 0, 1 or 2 of the new process (self) or of its
        parent is an AF_INET/AF_INET6 socket; one of those listed must hold."""
        c = self.c
        entries = c.string_list(node, "inet_stdio", where, "inet_stdio: [self, parent]")
        out: list[str] = []
        for text, item in entries or []:
            if text not in STDIO_WHOSE:
                c.error(item, f"bad inet_stdio entry {text!r} {where}",
                        f"write one or both of: {', '.join(STDIO_WHOSE)}")
            elif text not in out:
                out.append(text)
        return tuple(out)

    def cwds(self, node: yaml.Node, where: str, key: str = "cwd") -> tuple[str, ...]:
        """Directory prefixes, normalized: '/tmp/' and '/tmp' both mean /tmp and below
        (``cwd_is``: the same directories, exactly)."""
        c = self.c
        entries = c.string_list(node, key, where, f"{key}: [/tmp/, /dev/shm]")
        label = "cwd prefix" if key == "cwd" else f"{key} directory"
        out: list[str] = []
        for text, item in entries or []:
            canonical = posixpath.normpath(text) if text.startswith("/") else ""
            if canonical.startswith("//"):
                canonical = "/" + canonical.lstrip("/")
            if not text.startswith("/") or "\0" in text:
                c.error(item, f"{label} {text!r} {where} is not an absolute directory",
                        f"write '/{text.lstrip('./')}'")
            elif len(text.encode()) > CWD_MAX:
                c.error(item, f"{label} '{text[:20]}...' {where} is longer than PATH_MAX",
                        "shorten the path")
            elif text.rstrip("/") != canonical.rstrip("/"):
                c.error(item, f"{label} '{text}' {where} is not in canonical form",
                        f"write '{canonical}'")
            elif canonical not in out:
                out.append(canonical)
        return tuple(out)
