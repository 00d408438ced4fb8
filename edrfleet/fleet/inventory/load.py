"""Ansible YAML inventories: groups, hosts and merged variables, as ``ansible-inventory`` sees them.

The file is ``all``/``children``/``hosts``/``vars`` (any top-level key is a group), host keys may
be ranges (``web[01:20]``, ``db-[a:c]``, ``n[0:10:2]``) and ``name:port``; ``group_vars/`` and
``host_vars/`` beside the file add variables (`edrfleet.fleet.inventory.variables`). A host's
variables merge in Ansible's order: the inventory file's ``all`` vars, then the other groups'
inventory vars, then ``group_vars/all``, then ``group_vars/<group>``, then the host's inventory
vars, then ``host_vars/<host>``. Groups go parent before child (depth from ``all``), then by
``ansible_group_priority`` (default 1), then by name (ASCII). Later layers replace top-level keys.

>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "inv.yml").write_text("web:\\n  hosts:\\n    web[1:2]:2222:\\n")
>>> inv = load_inventory(d / "inv.yml")
>>> [(h.name, h.vars["ansible_port"], h.groups) for h in inv.select("web[0]")]
[('web1', 2222, ('all', 'web'))]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edrfleet.fleet.inventory import patterns
from edrfleet.fleet.inventory.parse import InventoryError, Parser, PGroup
from edrfleet.fleet.inventory.variables import VarsDir, merge
from edrfleet.fleet.inventory.yaml_lines import Unsafe, YamlError, load_yaml_file

__all__ = ["Group", "Host", "Inventory", "InventoryError", "load_inventory"]

# Names ansible-inventory leaves out of hostvars (Ansible's INTERNAL_STATIC_VARS).
INTERNAL_VARS = frozenset({
    "ansible_async_path", "ansible_collection_name", "ansible_config_file",
    "ansible_dependent_role_names", "ansible_diff_mode", "ansible_facts", "ansible_forks",
    "ansible_inventory_sources", "ansible_limit", "ansible_play_batch", "ansible_play_hosts",
    "ansible_play_hosts_all", "ansible_play_role_names", "ansible_playbook_python",
    "ansible_role_name", "ansible_role_names", "ansible_run_tags", "ansible_skip_tags",
    "ansible_verbosity", "ansible_version", "inventory_dir", "inventory_file",
    "inventory_hostname", "inventory_hostname_short", "groups", "group_names", "hostvars",
    "playbook_dir", "play_hosts", "role_name", "role_names", "role_path", "role_uuid",
})


@dataclass(frozen=True)
class Host:
    """One inventory host. ``vars`` are merged in Ansible's order (see the module doc); nested
    values are shared with other hosts of the same groups, so treat them as read-only."""

    name: str  # inventory_hostname
    vars: dict[str, Any] = field(hash=False)
    groups: tuple[str, ...] = ()  # every group it belongs to, "all" first, in merge order
    where: str = field(default="", compare=False)  # "FILE:LINE" where it was first written

    def template_vars(self) -> dict[str, Any]:
        """``vars`` plus the magic variables Ansible adds (inventory_hostname, group_names)."""
        short = self.name if ":" in self.name or self.name.replace(".", "").isdigit() \
            else self.name.split(".")[0]
        return {**self.vars, "inventory_hostname": self.name, "inventory_hostname_short": short,
                "group_names": sorted(g for g in self.groups if g != "all")}


@dataclass(frozen=True)
class Group:
    """One group: its direct hosts and children in the order written, and its own variables
    (inventory file, then group_vars; ``ansible_group_priority`` is ``priority``, not a var)."""

    name: str
    hosts: tuple[str, ...]
    children: tuple[str, ...]
    parents: tuple[str, ...]
    vars: dict[str, Any] = field(hash=False)
    depth: int = 0
    priority: int = 1
    where: str = field(default="", compare=False)




class Inventory:
    """A loaded inventory. ``hosts`` is in Ansible's order (``ansible all --list-hosts``)."""

    def __init__(self, path: Path, groups: dict[str, Group], hosts: dict[str, Host],
                 hosts_as_written: tuple[str, ...], warnings: list[str]) -> None:
        self.path = path
        self.groups = groups  # in the order Ansible creates them
        self.hosts = hosts
        self.hosts_as_written = hosts_as_written  # creation order (host patterns use it)
        self.warnings = warnings
        self._group_hosts: dict[str, list[str]] = {}

    def group_hosts(self, name: str) -> list[str]:
        """Hosts of a group and its descendants, in Ansible's order (breadth first)."""
        cached = self._group_hosts.get(name)
        if cached is None:
            ordered = [name, *self.groups[name].children]
            seen, frontier = set(ordered), ordered
            while frontier:
                nxt = [c for g in frontier for c in self.groups[g].children if c not in seen]
                nxt = list(dict.fromkeys(nxt))
                seen.update(nxt)
                ordered.extend(nxt)
                frontier = nxt
            cached = list(dict.fromkeys(h for g in ordered for h in self.groups[g].hosts))
            self._group_hosts[name] = cached
        return cached

    def select(self, limit: str | None) -> list[Host]:
        """The hosts ``--limit LIMIT`` selects, in inventory order (all hosts for None).

        Raises:
            PatternError: the limit matches no host, or has a bad regex / subscript / file.
        """
        names = patterns.select(self, limit)
        return [self.hosts[n] for n in names]

    def match(self, pattern: str) -> list[Host]:
        """The hosts of a host pattern in pattern order (``ansible PATTERN --list-hosts``)."""
        return [self.hosts[n] for n in patterns.match(self, pattern)]

    def to_ansible_list(self, limit: str | None = None) -> dict[str, Any]:
        """The document ``ansible-inventory --list [--limit LIMIT]`` prints."""
        available = set(patterns.select(self, limit)) if limit else set(self.hosts)
        out: dict[str, Any] = {}
        seen: set[str] = set()

        def visit(name: str) -> None:
            group = self.groups[name]
            entry: dict[str, Any] = {}
            if name != "all":
                entry["hosts"] = [h for h in group.hosts if h in available]
            entry["children"] = list(group.children)
            out[name] = {k: v for k, v in entry.items() if v}
            for child in group.children:
                if child not in seen:
                    seen.add(child)
                    visit(child)
            if not out[name]:
                del out[name]

        visit("all")
        hostvars = {}
        for name, host in self.hosts.items():
            if name in available:
                shown = {k: _ansible_json(v) for k, v in host.vars.items()
                         if k not in INTERNAL_VARS}
                if shown:
                    hostvars[name] = shown
        out["_meta"] = {"hostvars": hostvars, "profile": "inventory_legacy"}
        return out

    def to_ansible_graph(self, group: str = "all") -> str:
        """The tree ``ansible-inventory --graph GROUP`` prints (every host, no limit)."""
        if group not in self.groups:
            raise patterns.PatternError(f"--graph {group!r} is not a group",
                                        fix="give a group name, e.g. --graph all")
        lines: list[str] = []

        def walk(name: str, depth: int) -> None:
            lines.append(_graph_line(f"@{name}:", depth))
            for child in self.groups[name].children:
                walk(child, depth + 1)
            if name != "all":
                lines.extend(_graph_line(h, depth + 1) for h in self.groups[name].hosts)

        walk(group, 0)
        return "\n".join(lines)

    def host_vars(self, pattern: str) -> dict[str, Any]:
        """``ansible-inventory --host PATTERN``: the variables of the one host it matches."""
        hosts = patterns.match(self, pattern)
        if len(hosts) != 1:
            raise patterns.PatternError(
                f"--host {pattern!r} matches {len(hosts)} hosts, not one",
                fix="give one host name (see 'edrfleet inventory INVENTORY')")
        return {k: _ansible_json(v) for k, v in self.hosts[hosts[0]].vars.items()
                if k not in INTERNAL_VARS}


def _graph_line(name: str, depth: int) -> str:
    return "  |" * depth + "--" + name if depth else name


def _ansible_json(value: Any) -> Any:
    """A value as ansible-inventory's JSON shows it: ``!unsafe`` strings are tagged."""
    if isinstance(value, Unsafe):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, dict):
        return {k: _ansible_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ansible_json(v) for v in value]
    return value


def _sort_key(group: PGroup, depth: dict[str, int]) -> tuple[int, int, str]:
    return (depth[group.name], group.priority, group.name)


def _depths(groups: dict[str, PGroup]) -> dict[str, int]:
    """Longest path from ``all``: what Ansible's incremental depth tracking ends with."""
    depth: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in depth:
            parents = groups[name].parents
            depth[name] = max((of(p) + 1 for p in parents), default=0)
        return depth[name]

    for name in groups:
        of(name)
    return depth


def _build(path: Path, parser: Parser) -> Inventory:
    base = str(path.parent)
    group_dir = VarsDir(os.path.join(base, "group_vars"))
    host_dir = VarsDir(os.path.join(base, "host_vars"))
    depth = _depths(parser.groups)
    file_vars = {n: group_dir.load(n) for n in parser.groups}
    source = str(path)
    groups = {
        n: Group(n, tuple(g.hosts), tuple(g.children), tuple(g.parents),
                 merge((g.vars, file_vars[n])), depth[n], g.priority,
                 f"{source}:{g.line}" if g.line else source)
        for n, g in parser.groups.items()}
    all_group = parser.groups["all"]
    made: dict[str, Host] = {}
    for name, h in parser.hosts.items():
        member = set(h.groups)
        for g in h.groups:
            member |= parser.ancestors(g)
        member.discard("all")
        ordered = sorted((parser.groups[g] for g in member), key=lambda g: _sort_key(g, depth))
        layers = [all_group.vars, *(g.vars for g in ordered), file_vars["all"],
                  *(file_vars[g.name] for g in ordered), h.vars, host_dir.load(name)]
        made[name] = Host(name, merge(layers), ("all", *(g.name for g in ordered)),
                          f"{source}:{h.line}")
    inventory = Inventory(path, groups, {}, tuple(parser.hosts),
                          [*parser.warnings, *group_dir.problems("group"),
                           *host_dir.problems("host"),
                           *_shadowed_inline_vars(parser, file_vars)])
    inventory.hosts = {n: made[n] for n in inventory.group_hosts("all")}
    return inventory


def _shadowed_inline_vars(parser: Parser, file_vars: dict[str, dict[str, Any]]) -> list[str]:
    """Group vars written in the inventory that group_vars/all overrides for every host of the
    group (and the group's own group_vars file does not set): Ansible's precedence, and a
    classic surprise."""
    return [f"{parser.source}:{g.var_lines[k]}: {k!r} of group {g.name!r} is overridden by "
            f"group_vars/all for its hosts, as in Ansible (fix: set it in "
            f"group_vars/{g.name}.yml)"
            for g in parser.groups.values() if g.name != "all"
            for k in g.vars if k in file_vars["all"] and k not in file_vars[g.name]]


def load_inventory(path: str | Path) -> Inventory:
    """Read a YAML inventory file and the group_vars/host_vars beside it.

    Raises:
        InventoryError: bad YAML or inventory structure (``FILE:LINE: what (fix: ...)``).
        OSError: the file cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        raise InventoryError("is a directory, not an inventory file", source=str(path),
                             fix=f"pass the file, e.g. {path / 'inventory.yml'}")
    try:
        parser = Parser(str(path))
        parser.parse(load_yaml_file(str(path)))
        parser.reconcile()
        return _build(path, parser)
    except YamlError as exc:
        fix = (_ini_fix(path) if exc.source == str(path) else None) or exc.fix
        if isinstance(exc, InventoryError) and fix == exc.fix:
            raise
        raise InventoryError(exc.message, source=exc.source, line=exc.line, fix=fix) from None


def _ini_fix(path: Path) -> str | None:
    """A fix for INI inventories, which this YAML reader does not take."""
    try:
        first = next((ln.strip() for ln in path.read_text(errors="replace").splitlines()
                      if ln.strip() and not ln.lstrip().startswith(("#", ";"))), "")
    except OSError:
        return None
    if first.startswith("[") and first.endswith("]"):
        return (f"this looks like an INI inventory; convert it with 'ansible-inventory -i "
                f"{path} --list -y > inventory.yml'")
    return None
