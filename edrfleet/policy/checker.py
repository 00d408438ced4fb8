"""The YAML node reader that policy validation is built on: it reads keys, strings, choices
and lists from the nodes, and collects an error (file, line, column, fix) for each piece that
does not fit instead of stopping at the first.

The top-level and rule checks (`schema`) and the ``match:`` checks (`schema_match`) both use it.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from edrfleet.policy.errors import PolicyError, did_you_mean


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
