"""YAML inventories (Ansible's yaml plugin): groups and hosts added to an `InventoryData` in the
order the plugin adds them, which decides the order of groups, of hosts and of children.
"""

from __future__ import annotations

import difflib
from typing import Any

from edrfleet.fleet.inventory.checks import check_known_vars, misplaced_host_keys
from edrfleet.fleet.inventory.data import InventoryData, InventoryError, PGroup
from edrfleet.fleet.inventory.hostrange import RangeError, expand_range, split_port
from edrfleet.fleet.inventory.yaml_lines import plain

SECTIONS = ("hosts", "children", "vars")
YAML_EXTENSIONS = ("", ".yaml", ".yml", ".json")  # what Ansible's yaml plugin takes

__all__ = ["InventoryError", "parse_yaml"]


def parse_yaml(inv: InventoryData, data: Any) -> None:
    """Add the groups and hosts of one YAML inventory document to ``inv`` (whose ``source`` is
    the file it came from)."""
    _YamlReader(inv).parse(data)


class _YamlReader:
    """Adds groups and hosts from the YAML data in the order Ansible's yaml plugin does."""

    def __init__(self, inv: InventoryData) -> None:
        self.inv = inv
        self.source = inv.source
        self.error = inv.error

    def parse(self, data: Any) -> None:
        if data is None or data == {}:
            raise self.error("the inventory is empty", 1, "start with 'all:' and its 'hosts:'")
        if not isinstance(data, dict):
            raise self.error(f"an inventory must be a mapping of group names, not a "
                             f"{type(data).__name__}", 1, "start with 'all:' and its 'hosts:'")
        lines = getattr(data, "key_lines", {})
        if "plugin" in data:
            raise self.error("this is an inventory plugin configuration, not a YAML inventory",
                             lines.get("plugin", 1),
                             "name it *.yml or *.yaml so that it is read as a plugin "
                             "configuration, or write a YAML inventory (all: hosts: ...)")
        for name, value in data.items():
            line = lines.get(name, 1)
            if name in SECTIONS:
                raise self.error(f"'{name}' at the top level would be a group named '{name}'",
                                 line, f"put '{name}:' under a group, e.g. 'all:'")
            self._group(name, value, line)

    def _group(self, name: Any, data: Any, line: int) -> str:
        if not isinstance(name, str) or not name:
            raise self.error(f"group name {name!r} is not a non-empty string", line,
                             "quote the group name")
        group = self.inv.add_group(name, line)
        if data is None:
            return name
        if not isinstance(data, dict):
            raise self.error(f"group '{name}' must be a mapping with hosts/children/vars, not "
                             f"{_kind(data)}", line,
                             f"write '{name}:' then 'hosts:' indented under it")
        data_lines = getattr(data, "key_lines", {})
        for key, value in data.items():
            kline = data_lines.get(key, line)
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
                self._group_vars(group, value, kline)
            elif key == "children":
                for sub, subdata in value.items():
                    sub_line = lines.get(sub, kline)
                    self.inv.add_child(name, self._group(sub, subdata, sub_line), sub_line)
            else:
                for pattern, hostvars in value.items():
                    self._hosts(group, pattern, hostvars, lines.get(pattern, kline))
        return name

    def _group_vars(self, group: PGroup, data: dict[Any, Any], line: int) -> None:
        check_known_vars(data, self.source, f"group '{group.name}'")
        lines = getattr(data, "key_lines", {})
        for key, value in data.items():
            self.inv.set_group_var(group, key, plain(value), lines.get(key, line))

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
        check_known_vars(hostvars, self.source, f"host '{pattern}'")
        self.inv.warnings.extend(misplaced_host_keys(hostvars, self.source, pattern))
        name_pattern, port = split_port(pattern)
        try:
            names = expand_range(name_pattern)
        except RangeError as exc:
            raise self.error(f"host range {pattern!r}: {exc}", line,
                             "write e.g. web[01:20], db-[a:c] or node[0:10:2]") from None
        for key in hostvars:
            self.inv.warn_var_name(key, getattr(hostvars, "key_lines", {}).get(key, line))
        values = plain(dict(hostvars))
        for host_name in names:
            self.inv.add_host(host_name, group.name, port, line).vars.update(values)


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
