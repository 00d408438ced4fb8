"""``group_vars/`` and ``host_vars/`` beside an inventory, found and merged the way Ansible does.

For an entity NAME, the first of ``NAME``, ``NAME.yml``, ``NAME.yaml``, ``NAME.json`` that exists
is used (only that one). A file is read as YAML; a directory is walked recursively in sorted
order, skipping hidden entries, ``*~`` backups and files with another extension, and its files
are merged one after another (a later file's top-level keys replace earlier ones). With several
inventory sources, each source's directory has its own pair (`SourceVarsDirs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from edrfleet.fleet.inventory.checks import check_known_vars
from edrfleet.fleet.inventory.yaml_lines import YamlError, load_yaml_file, plain

VARS_EXTENSIONS = (".yml", ".yaml", ".json")


class VarsDir:
    """One ``group_vars`` or ``host_vars`` directory (which may not exist)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._entries = frozenset(os.listdir(path)) if os.path.isdir(path) else frozenset()
        except OSError:
            self._entries = frozenset()
        self.used: dict[str, str] = {}  # entry -> the group or host it belongs to

    def files_for(self, name: str) -> list[str]:
        """The files holding NAME's variables, in merge order."""
        if not name or name.startswith("/"):
            return []
        for candidate in (name, *(name + ext for ext in VARS_EXTENSIONS)):
            if candidate not in self._entries and "/" not in candidate:
                continue
            full = os.path.join(self.path, candidate)
            if not os.path.exists(full):
                continue
            self.used[candidate] = name
            return _dir_files(full) if os.path.isdir(full) else [full]
        return []

    def load(self, name: str) -> dict[str, Any]:
        """NAME's variables from this directory ({} when there are none)."""
        data: dict[str, Any] = {}
        for path in self.files_for(name):
            data.update(load_vars_file(path, os.path.relpath(path, os.path.dirname(self.path))))
        return data

    def problems(self, kind: str) -> list[str]:
        """Entries Ansible silently ignores: a NAME.yml beside the NAME it reads instead, and
        files for no known ``kind`` (group or host), nearly always typos."""
        by_name = {name: entry for entry, name in self.used.items()}
        out = []
        for entry in sorted(self._entries - self.used.keys()):
            stem, ext = os.path.splitext(entry)
            if entry.startswith(".") or entry.endswith("~") or ext not in ("", *VARS_EXTENSIONS):
                continue
            where = os.path.join(self.path, entry)
            if ext and stem in by_name:
                out.append(f"{where}: not read, {by_name[stem]!r} is read instead (only the "
                           f"first of NAME, NAME.yml, NAME.yaml, NAME.json counts)")
            else:
                out.append(f"{where}: no {kind} is named {stem if ext else entry!r}, so it is "
                           "not read")
        return out


class SourceVarsDirs:
    """``group_vars``/``host_vars`` of every source, in source order (Ansible reads them per
    source: for each source, the files of each entity)."""

    def __init__(self, bases: list[str | None]) -> None:
        """``bases``: the directory of each source (None: a host list, which has none)."""
        present = [b for b in bases if b is not None]
        made: dict[str, tuple[VarsDir, VarsDir]] = {}
        for base in present:
            if base not in made:
                made[base] = (VarsDir(os.path.join(base, "group_vars")),
                              VarsDir(os.path.join(base, "host_vars")))
        self.unique = list(made.values())
        self.each = [made[b] for b in present]  # a directory given twice is read twice
        self._group_cache: dict[tuple[int, str], dict[str, Any]] = {}

    def group(self, name: str) -> list[dict[str, Any]]:
        """NAME's group_vars, one layer per source."""
        return [self._group(i, name) for i in range(len(self.each))]

    def _group(self, i: int, name: str) -> dict[str, Any]:
        key = (id(self.each[i][0]), name)
        if key not in self._group_cache:
            self._group_cache[key] = self.each[i][0].load(name)
        return self._group_cache[key]

    def host(self, name: str) -> list[dict[str, Any]]:
        return [host_dir.load(name) for _, host_dir in self.each]

    def problems(self) -> list[str]:
        return [*(p for g, _ in self.unique for p in g.problems("group")),
                *(p for _, h in self.unique for p in h.problems("host"))]


def _dir_files(path: str) -> list[str]:
    found: list[str] = []
    for entry in sorted(os.listdir(path)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        ext = os.path.splitext(entry)[1]
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            if not ext:
                found.extend(_dir_files(full))
        elif os.path.isfile(full) and (not ext or ext in VARS_EXTENSIONS):
            found.append(full)
    return found


def load_vars_file(path: str, owner: str | None = None) -> dict[str, Any]:
    """One variables file: a mapping of variable names (empty file: {}). Names that are not
    strings (``1:``, ``7.2:``) are kept, as Ansible's vars plugin keeps them without a word.

    Raises:
        YamlError: bad YAML, or a top level that is not a mapping of names.
    """
    data = load_yaml_file(path)
    if not data:
        return {}
    if not isinstance(data, dict):
        raise YamlError(f"a variables file must be a mapping of variable names, not a "
                        f"{type(data).__name__}", source=path, line=1,
                        fix="write 'name: value' lines at the top level")
    check_known_vars(data, path, owner or path)
    return plain(data)


def merge(layers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Ansible's default ``hash_behaviour: replace``: later layers replace top-level keys."""
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return out
