"""Ansible inventories: groups, hosts and merged variables, as ``ansible-inventory`` sees them.

Sources (YAML, INI, directories, scripts, host lists, plugin configurations) are read as
`edrfleet.fleet.inventory.sources` says; ``group_vars/`` and ``host_vars/`` beside each source
add variables (`edrfleet.fleet.inventory.variables`). A host's variables merge in Ansible's
order: the inventory's ``all`` vars, then the other groups' inventory vars, then
``group_vars/all``, then ``group_vars/<group>``, then the host's inventory vars, then
``host_vars/<host>`` (each vars layer once per source, in source order). Groups go parent
before child (depth from ``all``), then by ``ansible_group_priority`` (default 1), then by name
(ASCII). Later layers replace top-level keys.

>>> import pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "inv.yml").write_text("web:\\n  hosts:\\n    web[1:2]:2222:\\n")
>>> inv = load_inventory(d / "inv.yml")
>>> [(h.name, h.vars["ansible_port"], h.groups) for h in inv.select("web[0]")]
[('web1', 2222, ('all', 'web'))]
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edrfleet.fleet.inventory import patterns
from edrfleet.fleet.inventory.data import InventoryData, InventoryError, PGroup
from edrfleet.fleet.inventory.sources import read_sources, source_list, vars_base
from edrfleet.fleet.inventory.templating import HostResolver, TemplateVarError
from edrfleet.fleet.inventory.variables import SourceVarsDirs, load_vars_file, merge
from edrfleet.fleet.inventory.yaml_lines import Unsafe, YamlError

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
        self.sources = [str(path)]
        self.implicit: dict[str, Host] = {}  # the implicit localhost, once a pattern names it
        self.implicit_vars: dict[str, Any] = {}
        self.implicit_host_dirs: SourceVarsDirs | None = None
        self._group_hosts: dict[str, list[str]] = {}
        self._resolvers: dict[str, HostResolver] = {}
        # name -> its variables' layers in merge order, each with the files that set it
        self.layers_of: Callable[[str], list[tuple[list[str], dict[str, Any]]]] = \
            lambda _name: []

    @property
    def base_dir(self) -> Path:
        """The directory of the inventory (Ansible's ``inventory_dir`` of its first source): a
        directory source itself, the directory of a file, the working directory for a host
        list."""
        return Path(vars_base(self.sources[0]) or os.getcwd())

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
        return [self.for_use(self.hosts[n]) for n in names]

    def for_use(self, host: Host) -> Host:
        """The host with the variables edrfleet reads templated (``{{ }}``, Ansible's rules:
        edrfleet/fleet/inventory/templating.py).

        Raises:
            InventoryError: a template fails; names the host, the variable and its file.
        """
        try:
            return Host(host.name, self._resolver(host.name, host).resolved(), host.groups,
                        host.where)
        except TemplateVarError as exc:
            source = self.var_origin(exc.host, exc.var)
            raise InventoryError(f"host {exc.host}: variable {exc.var!r}: {exc.why}",
                                 source=source, fix="define what it uses, give it a "
                                 "| default(...), or mark a literal value !unsafe") from None

    def _resolver(self, name: str, host: Host | None = None) -> HostResolver:
        if name not in self._resolvers:
            host = host or self.hosts.get(name) or self.implicit[name]
            t = host.template_vars()
            magic = {k: t[k] for k in ("inventory_hostname", "inventory_hostname_short",
                                       "group_names")}
            magic["groups"] = {g: self.group_hosts(g) for g in self.groups}
            magic["inventory_dir"] = str(self.base_dir)
            magic["inventory_file"] = str(self.sources[0])
            self._resolvers[name] = HostResolver(name, host.vars, magic, self._other)
        return self._resolvers[name]

    def _other(self, name: str) -> HostResolver | None:
        known = name in self.hosts or name in self.implicit
        return self._resolver(name) if known else None

    def var_origin(self, host: str, var: str) -> str:
        """The file (FILE:LINE when known) whose value of ``var`` the host ends up with."""
        for files, layer in reversed(self.layers_of(host)):
            if var not in layer:
                continue
            if len(files) == 1:
                return files[0]
            for f in reversed(files):  # a group_vars directory: its last file setting var
                if var in load_vars_file(f):
                    return f
        return self.hosts[host].where if host in self.hosts else str(self.sources[0])

    def match(self, pattern: str) -> list[Host]:
        """The hosts of a host pattern in pattern order (``ansible PATTERN --list-hosts``);
        ``localhost`` is the implicit one when no inventory host has that name."""
        return [self.hosts.get(n) or self.implicit[n] for n in patterns.match(self, pattern)]

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
                shown = {_json_key(k): _ansible_json(v) for k, v in host.vars.items()
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
        host = self.hosts.get(hosts[0]) or self.implicit[hosts[0]]
        return {_json_key(k): _ansible_json(v, tag_unsafe=False) for k, v in host.vars.items()
                if k not in INTERNAL_VARS}

    def implicit_localhost(self, name: str) -> str:
        """The controller as Ansible's implicit ``localhost``, for a pattern that names it when
        no inventory host has that name: the ``all`` group's vars, a local connection and this
        Python. Not in ``hosts``, so ``--limit`` never selects it (as in Ansible)."""
        if not self.implicit:
            layers = [self.implicit_vars,
                      {"ansible_python_interpreter": sys.executable or "/usr/bin/python",
                       "ansible_connection": "local"}]
            if self.implicit_host_dirs is not None:
                layers.extend(self.implicit_host_dirs.host(name))
            self.implicit[name] = Host(name, merge(layers), (), "implicit localhost")
        return next(iter(self.implicit))


def _graph_line(name: str, depth: int) -> str:
    return "  |" * depth + "--" + name if depth else name


def _json_key(key: Any) -> Any:
    """A mapping key as JSON writes it (``0`` -> ``"0"``, ``True`` -> ``"true"``)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return str(key)


def _ansible_json(value: Any, tag_unsafe: bool = True) -> Any:
    """A value as ansible-inventory's JSON shows it: mapping keys are strings (Ansible accepts
    ``7.2:`` or ``0:`` as keys; JSON has only strings), and ``!unsafe`` strings are tagged
    (``--list`` tags them, ``--host`` prints them plain)."""
    if isinstance(value, Unsafe):
        return {"__ansible_unsafe": str(value)} if tag_unsafe else str(value)
    if isinstance(value, dict):
        return {_json_key(k): _ansible_json(v, tag_unsafe) for k, v in value.items()}
    if isinstance(value, list):
        return [_ansible_json(v, tag_unsafe) for v in value]
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


def _build(sources: list[str], inv: InventoryData) -> Inventory:
    dirs = SourceVarsDirs([vars_base(s) for s in sources])
    depth = _depths(inv.groups)
    file_vars = {n: dirs.group(n) for n in inv.groups}
    groups = {
        n: Group(n, tuple(g.hosts), tuple(g.children), tuple(g.parents),
                 merge((g.vars, *file_vars[n])), depth[n], g.priority, _where(g.source, g.line))
        for n, g in inv.groups.items()}
    all_group = inv.groups["all"]
    made: dict[str, Host] = {}
    ordered_of: dict[str, list[PGroup]] = {}
    for name, h in inv.hosts.items():
        member = set(h.groups)
        for g in h.groups:
            member |= inv.ancestors(g)
        member.discard("all")
        ordered = sorted((inv.groups[g] for g in member), key=lambda g: _sort_key(g, depth))
        ordered_of[name] = ordered
        layers = [all_group.vars, *(g.vars for g in ordered), *file_vars["all"],
                  *(layer for i in range(len(dirs.each))
                    for layer in (file_vars[g.name][i] for g in ordered)),
                  h.vars, *dirs.host(name)]
        made[name] = Host(name, merge(layers), ("all", *(g.name for g in ordered)),
                          _where(h.source, h.line))

    def layers_of(name: str) -> list[tuple[list[str], dict[str, Any]]]:
        """The layers above, each with the files that set it (for error messages only)."""
        if name not in inv.hosts:
            return []
        h, ordered = inv.hosts[name], ordered_of[name]
        n = len(dirs.each)

        def group_files(g: str, i: int) -> list[str]:
            return dirs.each[i][0].files_for(g)

        return [([all_group.source], all_group.vars),
                *(([g.source], g.vars) for g in ordered),
                *((group_files("all", i), file_vars["all"][i]) for i in range(n)),
                *((group_files(g.name, i), file_vars[g.name][i])
                  for i in range(n) for g in ordered),
                ([_where(h.source, h.line)], h.vars),
                *((dirs.each[i][1].files_for(name), layer)
                  for i, layer in enumerate(dirs.host(name)))]

    inventory = Inventory(Path(sources[0]), groups, {}, tuple(inv.hosts),
                          [*inv.warnings, *dirs.problems(),
                           *_shadowed_inline_vars(inv, file_vars)])
    inventory.sources = sources
    inventory.hosts = {n: made[n] for n in inventory.group_hosts("all")}
    inventory.implicit_vars = merge([all_group.vars, *file_vars["all"]])
    inventory.implicit_host_dirs = dirs
    inventory.layers_of = layers_of
    return inventory


def _where(source: str, line: int) -> str:
    return f"{source}:{line}" if line else source


def _shadowed_inline_vars(inv: InventoryData,
                          file_vars: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Group vars written in the inventory that group_vars/all overrides for every host of the
    group (and the group's own group_vars file does not set): Ansible's precedence, and a
    classic surprise."""
    in_all = set().union(*file_vars["all"])
    return [f"{_where(g.source, g.var_lines.get(k, 0))}: {k!r} of group {g.name!r} is "
            f"overridden by group_vars/all for its hosts, as in Ansible (fix: set it in "
            f"group_vars/{g.name}.yml)"
            for g in inv.groups.values() if g.name != "all"
            for k in g.vars if k in in_all and not any(k in f for f in file_vars[g.name])]


def load_inventory(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   ) -> Inventory:
    """Read inventory sources (files, directories, scripts, host lists, plugin configurations;
    see `edrfleet.fleet.inventory.sources`) and the group_vars/host_vars beside them.

    Raises:
        InventoryError: a source that cannot be read (``FILE:LINE: what (fix: ...)``).
        OSError: a file cannot be read.
    """
    names = source_list(sources)
    inv = InventoryData()
    read_sources(inv, names)
    inv.source = names[0]
    inv.reconcile()
    try:
        return _build(names, inv)
    except YamlError as exc:  # a group_vars or host_vars file
        if isinstance(exc, InventoryError):
            raise
        raise InventoryError(exc.message, source=exc.source, line=exc.line, fix=exc.fix) from None
