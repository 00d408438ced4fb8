"""The inventory while it is read: groups and hosts from every source, under Ansible's rules.

One `InventoryData` is shared by every source of one inventory (YAML, INI, scripts, host lists,
plugin output), as Ansible's ``InventoryData`` is: a host or group written in two sources is one
host or group, its variables set in source order (a later value replaces an earlier one), its
port taken from its first mention. `edrfleet.fleet.inventory.load` turns the result into
`Inventory` once every source is read.
"""

from __future__ import annotations

import re
from typing import Any

from edrfleet.fleet.inventory.yaml_lines import YamlError

# Names Ansible reads as the controller itself when no host of that name is in the inventory.
LOCALHOST = ("127.0.0.1", "localhost", "::1")
# Ansible's variable names: identifiers, ASCII, not a Jinja keyword (utils.vars).
_BAD_GROUP_CHARS = re.compile(r"^[\d\W]|[^\w]")  # Ansible's INVALID_VARIABLE_NAMES
_JINJA_KEYWORDS = frozenset({"False", "None", "True", "false", "none", "not", "true"})


class InventoryError(YamlError):
    """An inventory that cannot be read: ``FILE:LINE: what is wrong (fix: ...)``."""


class PGroup:
    """A group while reading: its own variables, members and links in the order written."""

    __slots__ = ("name", "vars", "var_lines", "priority", "children", "parents", "hosts", "line",
                 "source")

    def __init__(self, name: str, line: int, source: str) -> None:
        self.name, self.line, self.source, self.priority = name, line, source, 1
        self.vars: dict[Any, Any] = {}
        self.var_lines: dict[Any, int] = {}
        self.children: list[str] = []
        self.parents: list[str] = []
        self.hosts: dict[str, None] = {}  # ordered set


class PHost:
    """A host while reading: its inventory vars (``ansible_port`` from ``name:port`` first)."""

    __slots__ = ("name", "vars", "groups", "line", "source")

    def __init__(self, name: str, line: int, source: str, port: int | None) -> None:
        self.name, self.line, self.source = name, line, source
        self.vars: dict[Any, Any] = {} if port is None else {"ansible_port": port}
        self.groups: dict[str, None] = {}


def bad_var_name(name: Any) -> bool:
    """Ansible 2.19 accepts such a name with a deprecation warning (it will refuse it in 2.23)."""
    return not (isinstance(name, str) and name.isidentifier() and name.isascii()
                and name not in _JINJA_KEYWORDS)


class InventoryData:
    """Groups and hosts of every source read so far. ``source`` is the one being read now (it
    names errors and where a group or host was first written)."""

    def __init__(self) -> None:
        self.source = ""
        self.groups: dict[str, PGroup] = {n: PGroup(n, 0, "") for n in ("all", "ungrouped")}
        self.hosts: dict[str, PHost] = {}
        self.warnings: list[str] = []
        self.add_child("all", "ungrouped", 0)

    def error(self, message: str, line: int, fix: str | None = None) -> InventoryError:
        return InventoryError(message, source=self.source, line=line, fix=fix)

    def add_group(self, name: str, line: int) -> PGroup:
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = PGroup(name, line, self.source)
            if _BAD_GROUP_CHARS.search(name):
                where = f"{self.source}:{line}" if line else self.source
                self.warnings.append(
                    f"{where}: group name {name!r} has characters Ansible calls invalid (it "
                    "keeps the name, as edrfleet does; a name of letters, digits and _ not "
                    "starting with a digit works everywhere, e.g. in Jinja)")
        return group

    def add_host(self, name: str, group: str | None, port: int | None, line: int) -> PHost:
        """The host NAME, made on its first mention (a port given later is ignored, as in
        Ansible), and made a member of GROUP."""
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = PHost(name, line, self.source, port)
        if group is not None:
            host.groups[group] = None
            self.groups[group].hosts[name] = None
        return host

    def set_group_var(self, group: PGroup, key: Any, value: Any, line: int) -> None:
        self.warn_var_name(key, line)
        if key == "ansible_group_priority":
            try:
                group.priority = int(value)
            except (TypeError, ValueError):
                raise self.error(f"ansible_group_priority of group '{group.name}' must be a "
                                 f"whole number, not {value!r}", line,
                                 "write e.g. 'ansible_group_priority: 10'") from None
            return
        group.vars[key] = value
        group.var_lines[key] = line

    def set_host_vars(self, host: PHost, values: dict[Any, Any], line: int) -> None:
        lines = getattr(values, "key_lines", {})
        for key in values:
            self.warn_var_name(key, lines.get(key, line))
        host.vars.update(values)

    def warn_var_name(self, key: Any, line: int) -> None:
        if bad_var_name(key):
            where = f"{self.source}:{line}" if line else self.source
            self.warnings.append(
                f"{where}: accepting inventory variable with invalid name {key!r}, as "
                "ansible-core 2.19 does (it will refuse it from 2.23; a name is letters, digits "
                "and _, not starting with a digit)")

    def add_child(self, parent: str, child: str, line: int) -> None:
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
        """Ansible's rules once every source is read: parentless groups go under ``all``; hosts
        in no group but ``all`` are ``ungrouped``; ``ungrouped`` keeps only such hosts."""
        for conflict in self.groups.keys() & self.hosts.keys():
            host = self.hosts[conflict]
            raise InventoryError(f"'{conflict}' is both a host and a group", source=host.source,
                                 line=host.line,
                                 fix="rename the host or the group; Ansible cannot tell them "
                                 "apart")
        for name, group in self.groups.items():
            if name != "all" and not group.parents:
                self.add_child("all", name, group.line)
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
