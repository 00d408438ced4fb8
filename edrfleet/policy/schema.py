"""The policy's shape (docs/policy.md): dataclasses and their validation.

Validation walks YAML nodes (`edrfleet.policy.loader.compose`), so every error names the file,
line and column of the offending piece, the rule id, and a fix.  All errors of a file are
collected and raised together (`PolicyErrors`).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

import yaml

from edrfleet.policy.checker import Checker
from edrfleet.policy.errors import raise_collected
from edrfleet.policy.model import ArgMatcher, Policy, Rule
from edrfleet.policy.schema_match import ARG_KINDS, MATCH_KEYS, MatchChecker
from edrfleet.policy.spell.check import for_action

__all__ = ["ARG_KINDS", "MATCH_KEYS", "ArgMatcher", "Checker", "Policy", "Rule", "validate"]

MODES = ("enforce", "monitor")
BACKENDS = ("auto", "lsm", "sigkill")
UNSCANNED = ("block", "allow")
SEVERITIES = ("low", "medium", "high", "critical")
ACTIONS = ("block", "log", "allow")
TOP_KEYS = ("version", "mode", "backend", "limits", "scope", "multicall", "rules")
RULE_KEYS = ("id", "description", "severity", "action", "tags", "match", "source")
ID_RE = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


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
        executables=match.executables, args=for_action(match.args, action), cmdline=match.cmdline,
        uids=match.uids, tags=tuple(tags), line=node.start_mark.line + 1,
        col=node.start_mark.column + 1, cmdline_line=match.cmdline_line,
        cmdline_col=match.cmdline_col, parents=match.parents, users=match.users,
        cwds=match.cwds, cmdlines=match.cmdlines, source=source, fileless=match.fileless,
        ancestors=match.ancestors, inet_stdio=match.inet_stdio,
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
    multicall = (MatchChecker(c).executables(top["multicall"][1], "at the top level",
                                             "multicall") if "multicall" in top else ())
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
                  unscanned=unscanned, scope_cgroups=cgroups, rules=tuple(rules), source=source,
                  multicall=multicall)



