"""The policy's shape (DESIGN.md "Policy file"): dataclasses and their validation.

Validation walks YAML nodes (`edrfleet.policy.loader.compose`), so every error names the file,
line and column of the offending piece, the rule id, and a fix.  All errors of a file are
collected and raised together (`PolicyErrors`).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from edrfleet.policy.errors import PolicyError, did_you_mean, raise_collected
from edrfleet.policy.model import ArgMatcher, Policy, Rule
from edrfleet.policy.schema_match import ARG_KINDS, MATCH_KEYS, MatchChecker

__all__ = ["ARG_KINDS", "MATCH_KEYS", "ArgMatcher", "Checker", "Policy", "Rule", "validate"]

MODES = ("enforce", "monitor")
BACKENDS = ("auto", "lsm", "sigkill")
UNSCANNED = ("block", "allow")
SEVERITIES = ("low", "medium", "high", "critical")
ACTIONS = ("block", "log", "allow")
TOP_KEYS = ("version", "mode", "backend", "limits", "scope", "rules")
RULE_KEYS = ("id", "description", "severity", "action", "tags", "match", "source")
ID_RE = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


class Checker:
    """Collects errors while reading nodes; helpers return None after reporting a problem."""

    def __init__(self, source: str, text: str = "") -> None:
        self.source = source
        self.lines = text.splitlines()
        self._unknown: dict[int, list[str]] = {}  # id(mapping node) -> unknown keys seen
        self.errors: list[PolicyError] = []
        self._ctor = SafeConstructor()

    def error(self, node: yaml.Node, message: str, fix: str | None, col_offset: int = 0) -> None:
        mark = node.start_mark
        self.errors.append(PolicyError(
            message, source=self.source, line=mark.line + 1, col=mark.column + 1 + col_offset,
            fix=fix))

    def scalar(self, node: yaml.Node) -> Any:
        return self._ctor.construct_object(node, deep=True)

    def describe(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        value = self.scalar(node)
        if value is None:
            return "empty (null)"
        names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
        return names.get(type(value), type(value).__name__)

    def mapping(
        self, node: yaml.Node, allowed: tuple[str, ...], where: str,
        elsewhere: dict[str, str] | None = None,
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys of a mapping node; reports unknown and duplicate keys."""
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.error(key_node, f"keys must be strings {where}", f"use one of: "
                           f"{', '.join(allowed)}")
                continue
            if key in found:
                first = found[key][0].start_mark.line + 1
                self.error(key_node, f"duplicate key '{key}' {where} (first at line {first})",
                           "keep only one of them")
                continue
            if key not in allowed:
                self._unknown.setdefault(id(node), []).append(key)
                fix = (elsewhere or {}).get(key) or did_you_mean(key, allowed)
                self.error(key_node, f"unknown key '{key}' {where}",
                           fix or f"allowed keys: {', '.join(allowed)}")
                continue
            found[key] = (key_node, value_node)
        return found

    def missing(self, node: yaml.Node, key: str, where: str, fix: str) -> None:
        """Report a missing required key, unless an unknown key already looks like it."""
        for unknown in self._unknown.get(id(node), []):
            if did_you_mean(unknown, [key]):
                return
        self.error(node, f"missing required key '{key}' {where}", fix)

    def string(
        self, node: yaml.Node, what: str, where: str, *, empty_ok: bool = True,
        label: str | None = None,
    ) -> str | None:
        value = self.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str):
            self.error(node, f"{label or repr(what)} {where} must be a string, not "
                             f"{self.describe(node)}",
                       "quote the value" if isinstance(node, yaml.ScalarNode) else
                       f"write {what}: \"...\"")
            return None
        if not empty_ok and not value.strip():
            self.error(node, f"'{what}' {where} is empty", f"write a {what}")
            return None
        return value

    def choice(
        self, node: yaml.Node, choices: tuple[str, ...], what: str, where: str
    ) -> str | None:
        value = self.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or value not in choices:
            shown = repr(value) if isinstance(value, str) else self.describe(node)
            fix = (did_you_mean(value, choices) if isinstance(value, str) else None) or (
                f"use one of: {', '.join(choices)}")
            self.error(node, f"bad value {shown} for '{what}' {where}", fix)
            return None
        return value

    def sequence(
        self, node: yaml.Node, what: str, where: str, example: str
    ) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"'{what}' {where} must be a list, not {self.describe(node)}",
                       f"write {example}")
            return None
        return list(node.value)

    def string_list(self, node: yaml.Node, what: str, where: str, example: str,
                    *, nonempty: bool = True) -> list[tuple[str, yaml.Node]] | None:
        items = self.sequence(node, what, where, example)
        if items is None:
            return None
        if nonempty and not items:
            self.error(node, f"'{what}' {where} is an empty list",
                       f"name at least one entry ({example}) or remove the key")
            return None
        out = []
        ok = True
        for item in items:
            value = self.string(item, what, where, label=f"an entry of '{what}'")
            if value is None:
                ok = False
            else:
                out.append((value, item))
        return out if ok else None


def _check_version(c: Checker, root: yaml.Node, top: dict[str, Any]) -> None:
    if "version" not in top:
        c.missing(root, "version", "at the top level", "add 'version: 1'")
        return
    node = top["version"][1]
    value = c.scalar(node) if isinstance(node, yaml.ScalarNode) else None
    if type(value) is not int or value != 1:
        c.error(node, f"unsupported policy version {value!r}", "write 'version: 1'")


def _check_scope(c: Checker, node: yaml.Node) -> tuple[str, ...]:
    if not isinstance(node, yaml.MappingNode):
        c.error(node, f"'scope' must be a mapping, not {c.describe(node)}",
                "write 'scope: {cgroups: [/my/cgroup]}'")
        return ()
    keys = c.mapping(node, ("cgroups",), "in 'scope'")
    if "cgroups" not in keys:
        return ()
    entries = c.string_list(keys["cgroups"][1], "cgroups", "in 'scope'", "cgroups: [/my/cgroup]",
                            nonempty=False) or []
    out = []
    for path, item in entries:
        canonical = posixpath.normpath("/" + path.lstrip("/"))
        if not path.startswith("/"):
            c.error(item, f"cgroup '{path}' in 'scope' is not an absolute cgroup v2 path",
                    f"write '{canonical}' (relative to the cgroup v2 root)")
        elif path != canonical or "\0" in path:
            c.error(item, f"cgroup '{path}' in 'scope' is not in canonical form",
                    f"write '{canonical}'")
        elif path not in out:
            out.append(path)
    return tuple(out)


def _check_limits(c: Checker, node: yaml.Node) -> str:
    if not isinstance(node, yaml.MappingNode):
        c.error(node, f"'limits' must be a mapping, not {c.describe(node)}",
                "write 'limits: {unscanned: block}'")
        return "block"
    keys = c.mapping(node, ("unscanned",), "in 'limits'")
    if "unscanned" in keys:
        return c.choice(keys["unscanned"][1], UNSCANNED, "unscanned", "in 'limits'") or "block"
    return "block"


def _peek_id(c: Checker, node: yaml.MappingNode) -> str | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == "id" and isinstance(
                value_node, yaml.ScalarNode):
            value = c.scalar(value_node)
            if isinstance(value, str) and ID_RE.match(value):
                return value
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "my-rule"


def _check_source(c: Checker, node: yaml.Node, where: str
                  ) -> tuple[tuple[str, str | tuple[str, ...]], ...]:
    """``source:``, where a rule comes from (e.g. an imported Sigma rule: id, title, author,
    references): a mapping of strings or string lists, kept for credit, never compiled."""
    if not isinstance(node, yaml.MappingNode):
        c.error(node, f"'source' {where} must be a mapping, not {c.describe(node)}",
                "write 'source: {title: ..., author: ...}'")
        return ()
    out: list[tuple[str, str | tuple[str, ...]]] = []
    for key_node, value_node in node.value:
        key = c.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            c.error(key_node, f"keys of 'source' {where} must be strings", "quote the key")
            continue
        if isinstance(value_node, yaml.SequenceNode):
            items = c.string_list(value_node, key, f"in 'source' {where}", f"{key}: [a, b]",
                                  nonempty=False)
            if items is not None:
                out.append((key, tuple(v for v, _ in items)))
            continue
        value = c.scalar(value_node) if isinstance(value_node, yaml.ScalarNode) else None
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            out.append((key, str(value)))
        else:
            c.error(value_node, f"'{key}' in 'source' {where} must be a string or a list of "
                                f"strings, not {c.describe(value_node)}", "quote the value")
    return tuple(out)


def _check_rule(c: Checker, node: yaml.Node, index: int, seen: dict[str, int]) -> Rule | None:
    if not isinstance(node, yaml.MappingNode):
        c.error(node, f"rule #{index + 1} must be a mapping, not {c.describe(node)}",
                "write '- id: my-rule' followed by description, severity, action, match")
        return None
    errors_before = len(c.errors)
    rid = _peek_id(c, node)
    where = f"in rule '{rid}'" if rid else f"in rule #{index + 1}"
    moved = {k: f"move '{k}' under 'match:'" for k in MATCH_KEYS}
    keys = c.mapping(node, RULE_KEYS, where, moved)
    for required in ("id", "description", "severity", "action", "match"):
        if required not in keys:
            c.missing(node, required, where, f"add '{required}:' to the rule")
    if "id" in keys:
        id_node = keys["id"][1]
        value = c.string(id_node, "id", where)
        if value is not None and not ID_RE.match(value):
            c.error(id_node, f"bad rule id '{value}' (lowercase letters, digits and '-', "
                             "starting with a letter or digit)", f"write '{_slug(value)}'")
        elif value is not None and value in seen:
            c.error(id_node, f"duplicate rule id '{value}' (first defined at line "
                             f"{seen[value]})", "give each rule a unique id")
        elif value is not None:
            seen[value] = id_node.start_mark.line + 1
    description = severity = action = None
    if "description" in keys:
        description = c.string(keys["description"][1], "description", where)
    if "severity" in keys:
        severity = c.choice(keys["severity"][1], SEVERITIES, "severity", where)
    if "action" in keys:
        action = c.choice(keys["action"][1], ACTIONS, "action", where)
    tags: list[str] = []
    if "tags" in keys:
        tags = [t for t, _ in c.string_list(keys["tags"][1], "tags", where, "tags: [t1, t2]",
                                            nonempty=False) or []]
    source = _check_source(c, keys["source"][1], where) if "source" in keys else ()
    match = None
    if "match" in keys:
        match = MatchChecker(c).check(keys["match"][1], where)
    if len(c.errors) != errors_before or match is None:
        return None
    assert rid is not None and description is not None and severity and action
    return Rule(
        id=rid, description=description, severity=severity, action=action,
        executables=match.executables, args=match.args, cmdline=match.cmdline,
        uids=match.uids, tags=tuple(tags), line=node.start_mark.line + 1,
        col=node.start_mark.column + 1, cmdline_line=match.cmdline_line,
        cmdline_col=match.cmdline_col, parents=match.parents, users=match.users,
        cwds=match.cwds, cmdlines=match.cmdlines, source=source, fileless=match.fileless,
    )


def validate(root: yaml.Node, source: str, text: str = "") -> Policy:
    """Check a composed YAML document and build the `Policy` (or raise every error found).

    ``text`` (the YAML source) lets errors inside a regex point at the exact column.
    """
    c = Checker(source, text)
    if not isinstance(root, yaml.MappingNode):
        c.error(root, f"the policy must be a mapping (version, rules, ...), not "
                      f"{c.describe(root)}", "start the file with 'version: 1'")
        raise_collected(c.errors)
    top = c.mapping(root, TOP_KEYS, "at the top level")
    _check_version(c, root, top)
    mode = c.choice(top["mode"][1], MODES, "mode", "at the top level") if "mode" in top else None
    backend = (c.choice(top["backend"][1], BACKENDS, "backend", "at the top level")
               if "backend" in top else None)
    unscanned = _check_limits(c, top["limits"][1]) if "limits" in top else "block"
    cgroups = _check_scope(c, top["scope"][1]) if "scope" in top else ()
    rules: list[Rule] = []
    if "rules" not in top:
        c.missing(root, "rules", "at the top level", "add 'rules: []'")
    else:
        items = c.sequence(top["rules"][1], "rules", "at the top level", "rules: [...] or a "
                           "block list of '- id: ...' entries") or []
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            rule = _check_rule(c, item, index, seen)
            if rule is not None:
                rules.append(rule)
    raise_collected(c.errors)
    return Policy(version=1, mode=mode or "enforce", backend=backend or "auto",
                  unscanned=unscanned, scope_cgroups=cgroups, rules=tuple(rules), source=source)



