"""INI inventories (Ansible's default format), read by the rules of ansible-core's ini plugin.

Lines before the first section are hosts of ``ungrouped``. ``[group]`` lists hosts, one per line:
a name, a range (``web[01:20]``) or ``name:port``, then ``key=value`` words split as a shell
would (quotes group, ``#`` starts a comment). ``[group:vars]`` holds ``key = value`` lines and
``[group:children]`` names child groups, which may be declared further down. Every value, on a
host line or in ``:vars``, is read as a Python literal when it is one (``80`` is a number,
``['a', 'b']`` a list, ``"x y"`` the string ``x y``) and kept as text otherwise. Lines starting
with ``#`` or ``;`` are comments.

>>> from edrfleet.fleet.inventory.data import InventoryData
>>> inv = InventoryData()
>>> inv.source = "hosts"
>>> parse_ini(inv, "[web]\\nweb[1:2]:2222 tier=1 name='a b'\\n[web:vars]\\nx=[1, 2]\\n")
>>> inv.hosts["web2"].vars, inv.groups["web"].vars
({'ansible_port': 2222, 'tier': 1, 'name': 'a b'}, {'x': [1, 2]})
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from edrfleet.fleet.inventory.checks import check_known_vars
from edrfleet.fleet.inventory.data import InventoryData
from edrfleet.fleet.inventory.hostrange import RangeError, expand_range, split_port
from edrfleet.fleet.inventory.yaml_lines import LineDict, Unsafe

__all__ = ["literal", "parse_ini", "split_host_line", "starts_with_section"]

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_COMMENTS = ("#", ";")
_SHLEX_SPACE = re.compile(r"[ \t\r\n]+")


def literal(text: str) -> Any:
    """A value as the ini plugin reads it: a Python literal when it is one, else the text.
    Tuples and sets become lists, bytes ``!unsafe`` text, and literals Ansible has no type for
    (``...``, complex numbers) stay text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {_coerce(k): _coerce(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):  # Ansible trusts only the str it tags: bytes come out unsafe
        return Unsafe(value.decode("utf-8", errors="surrogateescape"))
    return value


def split_host_line(line: str) -> list[str]:
    """A host line split as Ansible splits it (``shlex.split(line, comments=True)``); without
    quotes, escapes or comments that is a split on shlex's whitespace, 20 times faster."""
    if any(c in line for c in "'\"\\#"):
        return shlex.split(line, comments=True)
    return [w for w in _SHLEX_SPACE.split(line) if w]


class _Pending:
    """A group named before its own section: by a ``:vars`` section or as a child."""

    __slots__ = ("line", "state", "parents")

    def __init__(self, line: int, state: str) -> None:
        self.line, self.state = line, state
        self.parents: list[str] = []


class _IniReader:
    def __init__(self, inv: InventoryData) -> None:
        self.inv = inv
        self.pending: dict[str, _Pending] = {}

    def parse(self, text: str) -> None:
        group, state = "ungrouped", "hosts"
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line[0] in _COMMENTS:
                continue
            section = _SECTION.match(line)
            if section:
                group, state = self._section(section, number)
            elif line.startswith("[") and line.endswith("]"):
                raise self.inv.error(f"invalid section {line!r}", number,
                                     "write [group], [group:vars] or [group:children], "
                                     "without spaces")
            elif state == "hosts":
                self._host_line(group, line, number)
            elif state == "vars":
                self._var_line(group, line, number)
            else:
                self._child_line(group, line, number)
        for name, decl in self.pending.items():  # Ansible reports the first one only
            if decl.state == "vars":
                raise self.inv.error(f"section [{name}:vars] is for a group that is never "
                                     "declared", decl.line,
                                     f"add a [{name}] section (it may be empty) or fix the name")
            raise self.inv.error(f"section [{decl.parents[-1]}:children] names group {name!r}, "
                                 "which is never declared", decl.line,
                                 f"add a [{name}] section (it may be empty) or fix the name")

    def _section(self, m: re.Match[str], number: int) -> tuple[str, str]:
        name, state = m.group(1), m.group(2) or "hosts"
        if state not in ("hosts", "children", "vars"):
            raise self.inv.error(f"section [{name}:{state}] has an unknown type {state!r}",
                                 number, f"write [{name}], [{name}:vars] or [{name}:children]")
        if name not in self.inv.groups:
            # [g:vars] alone does not declare g; [g] or [g:children] (here or later) must.
            if state == "vars" and name not in self.pending:
                self.pending[name] = _Pending(number, state)
            self.inv.add_group(name, number)
        decl = self.pending.get(name)
        if decl is not None and state != "vars":
            if decl.state == "children":
                self._add_pending_children(name)
            else:
                del self.pending[name]
        return name, state

    def _add_pending_children(self, group: str) -> None:
        for parent in self.pending[group].parents:
            self.inv.add_child(parent, group, self.pending[group].line)
            parent_decl = self.pending.get(parent)
            if parent_decl is not None and parent_decl.state == "children":
                self._add_pending_children(parent)
        del self.pending[group]

    def _host_line(self, group: str, line: str, number: int) -> None:
        try:
            words = split_host_line(line)
        except ValueError as exc:
            raise self.inv.error(f"host line {line!r}: {exc}", number,
                                 "close the quote or escape it with \\") from None
        pattern = words[0]
        values = LineDict(number)
        for word in words[1:]:
            if "=" not in word:
                raise self.inv.error(f"expected key=value after the host name, got {word!r}",
                                     number, f"write e.g. {pattern} ansible_host=192.0.2.10 "
                                     "(quote a value with spaces: key='a b')")
            key, value = word.split("=", 1)
            values[key], values.key_lines[key] = literal(value), number
        names, port = self._expand(pattern, number)
        check_known_vars(values, self.inv.source, f"host {pattern!r}", text_values=True)
        for name in names:
            host = self.inv.add_host(name, group, port, number)
            self.inv.set_host_vars(host, values, number)

    def _expand(self, pattern: str, number: int) -> tuple[list[str], int | None]:
        name, port = split_port(pattern)
        if pattern.strip().endswith(":") and port is None:
            raise self.inv.error(f"host {pattern!r} ends in ':', which is kept for a port",
                                 number, f"write {pattern.rstrip(':')} or {pattern}22")
        try:
            names = expand_range(name)
        except RangeError as exc:
            raise self.inv.error(f"host range {pattern!r}: {exc}", number,
                                 "write e.g. web[01:20], db-[a:c] or node[0:10:2]") from None
        if any(n.strip() == "---" for n in names):
            raise self.inv.error("a host named '---': this looks like a YAML file", number,
                                 "name a YAML inventory *.yml (or fix its syntax)")
        return names, port

    def _var_line(self, group: str, line: str, number: int) -> None:
        if "=" not in line:
            raise self.inv.error(f"expected key=value in [{group}:vars], got {line!r}", number,
                                 "write one 'name=value' per line")
        key, text = (part.strip() for part in line.split("=", 1))
        value = literal(text)
        check_known_vars({key: value}, self.inv.source, f"group '{group}'", text_values=True,
                         line=number)
        self.inv.set_group_var(self.inv.groups[group], key, value, number)

    def _child_line(self, group: str, line: str, number: int) -> None:
        m = _GROUP_NAME.match(line)
        if not m:
            raise self.inv.error(f"expected a group name in [{group}:children], got {line!r}",
                                 number, "write one group name per line")
        child = m.group(1)
        if child in self.inv.groups:
            self.inv.add_child(group, child, number)
            return
        decl = self.pending.setdefault(child, _Pending(number, "children"))
        decl.parents.append(group)


def starts_with_section(path: str) -> bool:
    """Whether the first line that is not blank or a comment is an INI ``[section]``: YAML
    would read such a file as a list or fail, never as an inventory, so it need not try."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                line = raw.strip()
                if line and line[0] not in _COMMENTS:
                    return bool(_SECTION.match(line))
    except OSError:
        return False
    return False


def parse_ini(inv: InventoryData, text: str) -> None:
    """Add the groups and hosts of one INI inventory to ``inv`` (``inv.source`` names it).

    Raises:
        InventoryError: a line the ini plugin refuses (``FILE:LINE: what (fix: ...)``).
    """
    _IniReader(inv).parse(text)
