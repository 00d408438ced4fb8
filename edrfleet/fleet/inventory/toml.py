"""TOML inventories (``*.toml``), by the rules of ansible-core's toml plugin.

Each top-level table is a group with optional ``vars`` (a table), ``children`` (a list of group
names) and ``hosts`` (a table of host patterns, each a table of variables; ranges and
``name:port`` as in YAML). Another key in a group, or a group that is not a table, is skipped
with a warning, as Ansible does. TOML keeps no line numbers in Python, so errors name the file.

>>> from edrfleet.fleet.inventory.data import InventoryData
>>> inv = InventoryData()
>>> inv.source = "hosts.toml"
>>> parse_toml(inv, '[web]\\nchildren = ["app"]\\n[web.hosts]\\n"w[1:2]:2222" = {x = 1}\\n')
>>> sorted(inv.hosts), inv.hosts["w1"].vars, inv.groups["web"].children
(['w1', 'w2'], {'ansible_port': 2222, 'x': 1}, ['app'])
"""

from __future__ import annotations

import tomllib
from typing import Any

from edrfleet.fleet.inventory.checks import check_known_vars
from edrfleet.fleet.inventory.data import InventoryData
from edrfleet.fleet.inventory.hostrange import RangeError, expand_range, split_port

__all__ = ["parse_toml"]


def parse_toml(inv: InventoryData, text: str) -> None:
    """Add the groups and hosts of one TOML inventory to ``inv`` (``inv.source`` names it).

    Raises:
        InventoryError: bad TOML or a structure the toml plugin refuses.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise inv.error(f"TOML syntax error: {exc}", 0,
                        "check the line it names (strings need quotes, tables [name])") from None
    if not data:
        raise inv.error("the inventory is empty", 1, "start with a [group.hosts] table")
    if data.get("plugin"):
        raise inv.error("this is an inventory plugin configuration, not a TOML inventory", 0,
                        "write plugin configurations as *.yml")
    for name, body in data.items():
        _group(inv, name, body)


def _group(inv: InventoryData, name: str, body: Any) -> None:
    if body is not None and not isinstance(body, dict):
        inv.warnings.append(f"{inv.source}: {name!r} is not a table, so it is not a group "
                            "(skipped, as Ansible does)")
        return
    group = inv.add_group(name, 0)
    for key, value in (body or {}).items():
        if key == "vars":
            if not isinstance(value, dict):
                raise inv.error(f"'vars' of group {name!r} must be a table", 0,
                                f"write [{name}.vars] and 'key = value' lines")
            check_known_vars(value, inv.source, f"group {name!r}")
            for var, v in value.items():
                inv.set_group_var(group, var, v, 0)
        elif key == "children":
            if not isinstance(value, list):
                raise inv.error(f"'children' of group {name!r} must be a list", 0,
                                f'write children = ["child1", ...] under [{name}]')
            for child in value:
                _group(inv, child, {})
                inv.add_child(name, child, 0)
        elif key == "hosts":
            if not isinstance(value, dict):
                raise inv.error(f"'hosts' of group {name!r} must be a table", 0,
                                f'write [{name}.hosts] and \'host1 = {{}}\' lines')
            for pattern, host_vars in value.items():
                _hosts(inv, name, pattern, host_vars)
        else:
            inv.warnings.append(f"{inv.source}: key {key!r} of group {name!r} is skipped, as "
                                "Ansible does (a group has only vars, children and hosts)")


def _hosts(inv: InventoryData, group: str, pattern: str, host_vars: Any) -> None:
    if not isinstance(host_vars, dict):
        raise inv.error(f"host {pattern!r} of group {group!r} must be a table of variables", 0,
                        f'write "{pattern}" = {{}} (or {{ key = value }})')
    check_known_vars(host_vars, inv.source, f"host {pattern!r}")
    name, port = split_port(pattern)
    try:
        names = expand_range(name)
    except RangeError as exc:
        raise inv.error(f"host range {pattern!r}: {exc}", 0,
                        "write e.g. web[01:20], db-[a:c] or node[0:10:2]") from None
    for host_name in names:
        inv.set_host_vars(inv.add_host(host_name, group, port, 0), host_vars, 0)
