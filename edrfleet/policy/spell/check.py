"""Validation of ``option`` and ``path`` entries of ``args`` (docs/policy.md, "Options and
paths"), on YAML nodes so every error names its line and column and a fix."""

from __future__ import annotations

import dataclasses
import posixpath
import re

import yaml

from edrfleet.policy.checker import Checker
from edrfleet.policy.model import ArgMatcher
from edrfleet.policy.spell.spec import OptionSpec, PathSpec

OPTION_KEYS = ("short", "long", "abbrev", "takes")
PATH_KEYS = ("is", "below")
LONG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
SHORT_RE = re.compile(r"[A-Za-z0-9]\Z")


def _one_or_list(c: Checker, node: yaml.Node, what: str, where: str,
                 example: str) -> list[tuple[str, yaml.Node]] | None:
    if isinstance(node, yaml.ScalarNode):
        value = c.string(node, what, where)
        return None if value is None else [(value, node)]
    return c.string_list(node, what, where, example)


def _names(c: Checker, node: yaml.Node, what: str, where: str, pattern: re.Pattern[str],
           fix: str) -> tuple[str, ...] | None:
    items = _one_or_list(c, node, what, where, f"{what}: [a, b]")
    if items is None:
        return None
    out: list[str] = []
    for value, item in items:
        value = value.removeprefix("--") if what == "long" else value.removeprefix("-")
        if not pattern.match(value):
            c.error(item, f"bad {what} option {value!r} {where}", fix)
            return None
        if value not in out:
            out.append(value)
    return tuple(out)


def check_option(c: Checker, node: yaml.Node, where: str) -> OptionSpec | None:
    example = "option: {short: r, long: recursive}"
    if not isinstance(node, yaml.MappingNode):
        c.error(node, f"'option' {where} must be a mapping, not {c.describe(node)}",
                f"write '{example}'")
        return None
    before = len(c.errors)
    keys = c.mapping(node, OPTION_KEYS, f"in 'option' of {where.removeprefix('in ')}")
    short = long = takes = ()
    if "short" in keys:
        short = _names(c, keys["short"][1], "short", where, SHORT_RE,
                       "one letter or digit per entry: short: [r, R]") or ()
    if "long" in keys:
        long = _names(c, keys["long"][1], "long", where, LONG_RE,
                      "a name of letters, digits, '-' and '_': long: recursive") or ()
    if "takes" in keys:
        takes = _names(c, keys["takes"][1], "takes", where,
                       re.compile(r"[A-Za-z0-9]\Z|[A-Za-z0-9][A-Za-z0-9_-]+\Z"),
                       "letters and long names of the options that take a value") or ()
    abbrev = 1
    if "abbrev" in keys:
        value = c.scalar(keys["abbrev"][1]) if isinstance(keys["abbrev"][1],
                                                          yaml.ScalarNode) else None
        if type(value) is not int or value < 1:
            c.error(keys["abbrev"][1], f"'abbrev' {where} must be a whole number >= 1",
                    "write the length of the shortest prefix getopt may take, e.g. abbrev: 3")
        else:
            abbrev = value
    if len(c.errors) != before:
        return None
    if not short and not long:
        c.error(node, f"'option' {where} names no option", f"write '{example}'")
        return None
    return OptionSpec(short, long, abbrev, takes)


def check_path(c: Checker, node: yaml.Node, where: str) -> PathSpec | None:
    below = False
    target = node
    if isinstance(node, yaml.MappingNode):
        keys = c.mapping(node, PATH_KEYS, f"in 'path' of {where.removeprefix('in ')}")
        if "is" not in keys:
            c.missing(node, "is", f"in 'path' {where}", "write 'path: {is: [/etc], below: true}'")
            return None
        target = keys["is"][1]
        if "below" in keys:
            value = c.scalar(keys["below"][1]) if isinstance(keys["below"][1],
                                                             yaml.ScalarNode) else None
            if not isinstance(value, bool):
                c.error(keys["below"][1], f"'below' {where} must be true or false",
                        "write 'below: true'")
                return None
            below = value
    items = _one_or_list(c, target, "path", where, "path: [/etc, /usr]")
    if items is None:
        return None
    out: list[str] = []
    for value, item in items:
        canonical = posixpath.normpath("/" + value.lstrip("/")) if value else "/"
        if not value.startswith("/") or value != canonical or "\0" in value:
            c.error(item, f"path {value!r} {where} is not absolute and canonical",
                    f"write '{canonical}' (the matcher accepts its other spellings itself)")
            return None
        if value not in out:
            out.append(value)
    return PathSpec(tuple(out), below)


def for_action(matchers: tuple[ArgMatcher, ...], action: str) -> tuple[ArgMatcher, ...]:
    """The ``path`` matchers as a rule of this action uses them: an ``allow`` rule does not
    fail closed on arguments whose target the automaton cannot place (`PathSpec.deep`)."""
    return tuple(
        dataclasses.replace(m, value=PathSpec.from_text(str(m.value)).for_action(action).text())
        if m.kind == "path" else m for m in matchers)
