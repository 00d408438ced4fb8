"""Ansible host patterns (``--limit``), evaluated the way ansible-core 2.19 does.

A pattern is a list of parts separated by ``,`` (or by ``:`` when there is no comma and the text
is not itself an address such as ``web[1:3]`` or ``fe80::1``). Each part is

* a host or group name, ``all`` or ``*``; ``*``/``?``/``[..]`` wildcards (fnmatch, whole name);
  ``~REGEX`` (Python ``re.match``, so anchored at the start only). A part that names groups
  selects their hosts and their children's; a wildcard or regex also matches host names.
* followed by an optional subscript on the result: ``[N]`` (``[-1]`` is the last), ``[A:B]``
  (both ends included), ``[A:]`` (to the end).
* prefixed by ``&`` (intersection) or ``!`` (exclusion).

Parts are applied as Ansible orders them: every plain part (union) first, then every ``&``,
then every ``!``, whatever order they were written in. ``@FILE`` reads more parts from a file,
one per line (a retry file). A name that matches nothing is ignored with a warning (as in
Ansible); a limit that leaves no host at all is a `PatternError`.

>>> split_patterns("web:&db, !web2")
['web:&db', '!web2']
>>> split_patterns("web:&db:!web2")
['web', '&db', '!web2']
>>> order_patterns(["!web2", "&db", "web"])
['web', '&db', '!web2']
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from edrfleet.errors import InputError
from edrfleet.fleet.inventory.data import LOCALHOST
from edrfleet.fleet.inventory.hostrange import parse_address


class HostIndex(Protocol):
    """What patterns need of an inventory (`load.Inventory` is one): a protocol here, so that
    the inventory may use patterns without patterns importing it back."""

    @property
    def groups(self) -> Mapping[str, Any]: ...
    @property
    def hosts(self) -> Mapping[str, Any]: ...
    @property
    def hosts_as_written(self) -> Sequence[str]: ...
    def group_hosts(self, name: str) -> list[str]: ...


log = logging.getLogger(__name__)

_SUBSCRIPT = re.compile(r"(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]")
_COLON_PARTS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_WILDCARDS = (".", "?", "*", "[")


class PatternError(InputError, ValueError):
    """A host pattern that cannot be used: ``pattern 'X': what (fix: ...)``."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message, self.fix = message, fix
        super().__init__(f"{message} (fix: {fix})" if fix else message)


def split_patterns(text: str) -> list[str]:
    """The parts of a pattern string, stripped, empty ones dropped."""
    if "," in text:
        parts = text.split(",")
    elif parse_address(text) is not None:
        parts = [text]
    else:
        parts = _COLON_PARTS.findall(text)
    return [p.strip() for p in parts if p.strip()]


def order_patterns(parts: Iterable[str]) -> list[str]:
    """Plain parts, then ``&`` parts, then ``!`` parts; ``all`` when only ``&``/``!`` given."""
    plain, inter, excl = [], [], []
    for p in parts:
        if not p:
            continue
        (excl if p[0] == "!" else inter if p[0] == "&" else plain).append(p)
    return (plain or ["all"]) + inter + excl


def _compile(expr: str) -> re.Pattern[str]:
    try:
        return re.compile(expr[1:] if expr.startswith("~") else fnmatch.translate(expr))
    except re.error as exc:
        raise PatternError(f"pattern {expr!r} is not a valid regular expression: {exc}",
                           fix="after '~' write a Python regex, e.g. '~web0[1-3]'") from None


def _split_subscript(expr: str) -> tuple[str, tuple[int, int | None] | None]:
    if expr.startswith("~"):
        return expr, None  # a regex keeps its brackets
    m = _SUBSCRIPT.fullmatch(expr)
    if not m:
        return expr, None
    base, idx, start, sep, end = m.groups()
    if idx:
        return base, (int(idx), None)
    if sep == "-":
        log.warning("use [x:y] inclusive subscripts instead of [x-y] in %r", expr)
    return base, (int(start), int(end) if end else -1)


def _apply_subscript(hosts: list[str], sub: tuple[int, int | None] | None,
                     part: str) -> list[str]:
    if not hosts or sub is None:
        return hosts
    start, end = sub
    if end:  # as Ansible: an end of 0 means "just [start]"
        return hosts[start:(len(hosts) - 1 if end == -1 else end) + 1]
    try:
        return [hosts[start]]
    except IndexError:
        raise PatternError(f"pattern {part!r}: index {start} is outside the {len(hosts)} "
                           "matching hosts",
                           fix=f"use an index from 0 to {len(hosts) - 1} or -1 for the last"
                           ) from None


def _enumerate(inv: HostIndex, expr: str, unmatched: list[str]) -> list[str]:
    regex = _compile(expr)
    groups = [g for g in inv.groups if regex.match(g)]
    found = [h for g in groups for h in inv.group_hosts(g)]
    if not groups or expr.startswith("~") or any(c in expr for c in _WILDCARDS):
        found.extend(h for h in inv.hosts_as_written if regex.match(h))
    if not found and not groups and expr in LOCALHOST:
        return [inv.implicit_localhost(expr)]  # as Ansible: only when nothing else matched
    if not found and not groups and expr != "all":
        unmatched.append(expr)
    return found


def _match_one(inv: HostIndex, part: str, unmatched: list[str]) -> list[str]:
    expr = part[1:] if part[0] in "&!" else part
    if not expr:
        raise PatternError(f"pattern part {part!r} has nothing after '{part[0]}'",
                           fix=f"write a group or host after it, e.g. '{part[0]}web'")
    base, sub = _split_subscript(expr)
    return _apply_subscript(_enumerate(inv, base, unmatched), sub, part)


def evaluate(inv: HostIndex, parts: Sequence[str],
             unmatched: list[str] | None = None) -> list[str]:
    """Host names the parts select, in Ansible's order, without duplicates."""
    unmatched = [] if unmatched is None else unmatched
    hosts: list[str] = []
    for part in order_patterns(parts):
        if part in inv.hosts or part in inv.implicit:
            hosts.append(part)
            continue
        that = _match_one(inv, part, unmatched)
        if part[0] == "!":
            drop = set(that)
            hosts = [h for h in hosts if h not in drop]
        elif part[0] == "&":
            keep = set(that)
            hosts = [h for h in hosts if h in keep]
        else:
            have = set(hosts)
            hosts.extend(h for h in that if h not in have)
    return list(dict.fromkeys(hosts))


def _read_limit_file(path: str) -> list[str]:
    if not os.path.exists(path):
        raise PatternError(f"limit file {path!r} does not exist",
                           fix="give the retry file edrfleet printed, e.g. --limit @deploy.retry")
    if not os.path.isfile(path):
        raise PatternError(f"limit file {path!r} is not a file",
                           fix="'@' must be followed by a file with one host per line")
    with open(path, encoding="utf-8") as fh:
        return [line.strip() for line in fh.read().split("\n")]


def limit_parts(limit: str) -> list[str]:
    """The parts of a ``--limit``, with ``@FILE`` replaced by the file's lines."""
    parts: list[str] = []
    for part in split_patterns(limit):
        parts.extend(_read_limit_file(part[1:]) if part[0] == "@" else [part])
    return parts


def _no_host(what: str, text: str, unmatched: list[str]) -> PatternError:
    unknown = f"; {', '.join(map(repr, unmatched))} matches no group or host name" \
        if unmatched else ""
    return PatternError(f"{what} {text!r} matches no host{unknown}",
                        fix="see the groups and hosts with 'edrfleet inventory INVENTORY'")


def _warn(unmatched: list[str]) -> None:
    for expr in dict.fromkeys(unmatched):
        log.warning("could not match supplied host pattern, ignoring: %s", expr)


def select(inv: HostIndex, limit: str | None) -> list[str]:
    """``--limit``: the inventory's hosts (in inventory order) that ``limit`` matches.

    Raises:
        PatternError: no host matches, or a bad regex, subscript or limit file.
    """
    everyone = list(inv.hosts)
    if limit is None:
        return everyone
    unmatched: list[str] = []
    chosen = set(evaluate(inv, limit_parts(limit), unmatched))
    result = [h for h in everyone if h in chosen]
    if not result:
        raise _no_host("--limit", limit, unmatched)
    _warn(unmatched)
    return result


def match(inv: HostIndex, pattern: str) -> list[str]:
    """A host pattern (as ``ansible PATTERN``): host names in pattern order.

    Raises:
        PatternError: no host matches, or a bad regex or subscript.
    """
    unmatched: list[str] = []
    result = evaluate(inv, split_patterns(pattern), unmatched)
    if not result:
        raise _no_host("pattern", pattern, unmatched)
    _warn(unmatched)
    return result


def write_retry(path: str | os.PathLike[str], hostnames: Iterable[str]) -> None:
    """Write a retry file (one host per line) that ``--limit @PATH`` reads back, as Ansible's.

    The file is written beside itself and renamed, so a reader never sees half of it.
    """
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(f"{name}\n" for name in hostnames)
    os.replace(tmp, path)
