"""Parse the data of a YAML inventory into groups and hosts, in the order Ansible's yaml plugin
adds them (which decides the order of groups, of hosts and of children), then apply Ansible's
reconcile rules. `edrfleet.fleet.inventory.load` turns the result into `Inventory`.
"""

from __future__ import annotations

import difflib
from typing import Any

from edrfleet.fleet.inventory.checks import check_known_vars, misplaced_host_keys
from edrfleet.fleet.inventory.hostrange import RangeError, expand_range, split_port
from edrfleet.fleet.inventory.variables import check_var_names
from edrfleet.fleet.inventory.yaml_lines import LineDict, YamlError, plain

SECTIONS = ("hosts", "children", "vars")


class InventoryError(YamlError):
    """An inventory that cannot be read: ``FILE:LINE: what is wrong (fix: ...)``."""


class PGroup:
    """A group while parsing: vars from the inventory file, members and links in written order."""

    __slots__ = ("name", "vars", "var_lines", "priority", "children", "parents", "hosts", "line")

    def __init__(self, name: str, line: int) -> None:
        self.name, self.line, self.priority = name, line, 1
        self.vars: dict[str, Any] = {}
        self.var_lines: dict[str, int] = {}
        self.children: list[str] = []
        self.parents: list[str] = []
        self.hosts: dict[str, None] = {}  # ordered set


class PHost:
    """A host while parsing: its inventory vars (``ansible_port`` from ``name:port`` first)."""

    __slots__ = ("name", "vars", "groups", "line")

    def __init__(self, name: str, line: int, port: int | None) -> None:
        self.name, self.line = name, line
        self.vars: dict[str, Any] = {} if port is None else {"ansible_port": port}
        self.groups: dict[str, None] = {}


class Parser:
    """Builds groups and hosts from the YAML data in the order Ansible's yaml plugin does."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.groups: dict[str, PGroup] = {n: PGroup(n, 0) for n in ("all", "ungrouped")}
        self.hosts: dict[str, PHost] = {}
        self.warnings: list[str] = []
        self._add_child("all", "ungrouped", 0)

    def error(self, message: str, line: int, fix: str | None = None) -> InventoryError:
        return InventoryError(message, source=self.source, line=line, fix=fix)

    def parse(self, data: Any) -> None:
        if data is None or data == {}:
            raise self.error("the inventory is empty", 1, "start with 'all:' and its 'hosts:'")
        if not isinstance(data, dict):
            raise self.error(f"an inventory must be a mapping of group names, not a "
                             f"{type(data).__name__}", 1, "start with 'all:' and its 'hosts:'")
        if "plugin" in data:
            raise self.error("this is an inventory plugin configuration, not a YAML inventory",
                             data.key_lines["plugin"], "pass a YAML inventory (all: hosts: ...)")
        for name, value in data.items():
            line = data.key_lines[name]
            if name in SECTIONS:
                raise self.error(f"'{name}' at the top level would be a group named '{name}'",
                                 line, f"put '{name}:' under a group, e.g. 'all:'")
            self._group(name, value, line)

    def _group(self, name: Any, data: Any, line: int) -> str:
        if not isinstance(name, str) or not name:
            raise self.error(f"group name {name!r} is not a non-empty string", line,
                             "quote the group name")
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = PGroup(name, line)
        if data is None:
            return name
        if not isinstance(data, dict):
            raise self.error(f"group '{name}' must be a mapping with hosts/children/vars, not "
                             f"{_kind(data)}", line,
                             f"write '{name}:' then 'hosts:' indented under it")
        for key, value in data.items():
            kline = data.key_lines[key]
            if key not in SECTIONS:
                raise self.error(f"unknown key {key!r} in group '{name}' (a group has only "
                                 "hosts, children and vars)", kline, _section_fix(key))
            if isinstance(value, str):  # Ansible allows 'hosts: web1' for one entry
                value = {value: None}
            if value is None:
                continue
            if not isinstance(value, dict):
                raise self.error(f"'{key}' of group '{name}' must be a mapping, not "
                                 f"{_kind(value)}", kline, _mapping_fix(key))
            lines = getattr(value, "key_lines", {})
            if key == "vars":
                self._group_vars(group, value)
            elif key == "children":
                for sub, subdata in value.items():
                    sub_line = lines.get(sub, kline)
                    self._add_child(name, self._group(sub, subdata, sub_line), sub_line)
            else:
                for pattern, hostvars in value.items():
                    self._hosts(group, pattern, hostvars, lines.get(pattern, kline))
        return name

    def _group_vars(self, group: PGroup, data: LineDict) -> None:
        check_var_names(data, self.source)
        check_known_vars(data, self.source, f"group '{group.name}'")
        for key, value in data.items():
            if key == "ansible_group_priority":
                try:
                    group.priority = int(value)
                except (TypeError, ValueError):
                    raise self.error(f"ansible_group_priority of group '{group.name}' must be "
                                     f"a whole number, not {value!r}", data.key_lines[key],
                                     "write e.g. 'ansible_group_priority: 10'") from None
            else:
                group.vars[key] = plain(value)
                group.var_lines[key] = data.key_lines.get(key, data.line)

    def _hosts(self, group: PGroup, pattern: Any, hostvars: Any, line: int) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise self.error(f"host {pattern!r} in group '{group.name}' is not a string", line,
                             f"quote it: '{pattern}':")
        if not hostvars:
            hostvars = {}
        if not isinstance(hostvars, dict):
            raise self.error(f"the variables of host '{pattern}' must be a mapping, not "
                             f"{_kind(hostvars)}", line,
                             f"write '{pattern}:' then 'name: value' lines indented under it")
        check_var_names(hostvars, self.source)
        check_known_vars(hostvars, self.source, f"host '{pattern}'")
        self.warnings.extend(misplaced_host_keys(hostvars, self.source, pattern))
        name_pattern, port = split_port(pattern)
        try:
            names = expand_range(name_pattern)
        except RangeError as exc:
            raise self.error(f"host range {pattern!r}: {exc}", line,
                             "write e.g. web[01:20], db-[a:c] or node[0:10:2]") from None
        values = plain(dict(hostvars))
        for host_name in names:
            host = self.hosts.get(host_name)
            if host is None:  # a port given on a later mention is ignored, as in Ansible
                host = self.hosts[host_name] = PHost(host_name, line, port)
            host.groups[group.name] = None
            group.hosts[host_name] = None
            host.vars.update(values)

    def _add_child(self, parent: str, child: str, line: int) -> None:
        if child == "all":
            raise self.error(f"group 'all' cannot be a child of '{parent}'", line,
                             "'all' already contains every group; remove it from 'children'")
        if child == parent or child in self.ancestors(parent):
            raise self.error(f"group '{child}' under '{parent}' makes a loop of children", line,
                             f"remove '{child}' from the children of '{parent}'")
        p, c = self.groups[parent], self.groups[child]
        if child not in p.children:
            p.children.append(child)
        if parent not in c.parents:
            c.parents.append(parent)

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].parents)
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo.extend(self.groups[g].parents)
        return seen

    def reconcile(self) -> None:
        """Ansible's rules after parsing: parentless groups go under ``all``; hosts in no
        group but ``all`` are ``ungrouped``; ``ungrouped`` keeps only such hosts."""
        for conflict in self.groups.keys() & self.hosts.keys():
            raise self.error(f"'{conflict}' is both a host and a group",
                             self.hosts[conflict].line,
                             "rename the host or the group; Ansible cannot tell them apart")
        for name, group in self.groups.items():
            if name != "all" and not group.parents:
                self._add_child("all", name, group.line)
        ungrouped = self.groups["ungrouped"]
        for name, host in self.hosts.items():
            member_of = set(host.groups)
            for g in list(member_of):
                member_of |= self.ancestors(g)
            if "ungrouped" in member_of:
                if member_of - {"all", "ungrouped"}:
                    ungrouped.hosts.pop(name, None)
                    host.groups.pop("ungrouped", None)
            elif member_of <= {"all"}:
                ungrouped.hosts[name] = None
                host.groups["ungrouped"] = None


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "true/false"}.get(type(value),
                                                                        f"{value!r}")


def _section_fix(key: Any) -> str:
    close = difflib.get_close_matches(str(key), SECTIONS, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return ("put host variables under the host, group variables under 'vars:', and hosts "
            "under 'hosts:'")


def _mapping_fix(key: str) -> str:
    if key == "hosts":
        return "list hosts as keys, one per line: 'web1:' (not '- web1')"
    if key == "children":
        return "list child groups as keys, one per line: 'web:' (not '- web')"
    return "write 'name: value' lines indented under 'vars:'"
