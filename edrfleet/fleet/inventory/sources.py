"""Inventory sources, tried the way ``ansible-inventory -i SOURCE`` tries them.

A source is a path or a host list. Several sources are read in the order given into one
inventory. A directory is every entry in it, in sorted name order (subdirectories too), except
hidden entries, ``group_vars``/``host_vars``/``vars_plugins`` and names ending in one of
Ansible's ``INVENTORY_IGNORE_EXTS``. Any other path goes to Ansible's default plugins in their
order (``INVENTORY_ENABLED``), the first that reads it wins:

* ``host_list`` — not an existing path and holds a comma: ``'web1,db1:2222,'``;
* ``script`` — an executable file (`edrfleet.fleet.inventory.script`);
* ``auto`` — ``*.yml``/``*.yaml`` with a top-level ``plugin:`` (`edrfleet.fleet.inventory.plugin`);
* ``yaml`` — no extension, ``.yml``, ``.yaml`` or ``.json`` (`edrfleet.fleet.inventory.parse`);
* ``ini`` — any file but ``*.toml`` (`edrfleet.fleet.inventory.ini`);
* ``toml`` — ``*.toml`` (`edrfleet.fleet.inventory.toml`).

A source given on the command line that no plugin reads is an error naming the file, line and
fix; a file inside a directory that none reads is skipped with a warning, as Ansible does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from edrfleet.fleet.inventory.data import InventoryData, InventoryError
from edrfleet.fleet.inventory.hostrange import parse_address
from edrfleet.fleet.inventory.ini import parse_ini, starts_with_section
from edrfleet.fleet.inventory.parse import YAML_EXTENSIONS, parse_yaml
from edrfleet.fleet.inventory.plugin import plugin_name, read_with_ansible
from edrfleet.fleet.inventory.script import read_script
from edrfleet.fleet.inventory.toml import parse_toml
from edrfleet.fleet.inventory.yaml_lines import YamlError, load_yaml_file

__all__ = ["IGNORE_EXTS", "read_sources", "source_list", "vars_base"]

# ansible-core 2.19's defaults (ansible-config dump: INVENTORY_IGNORE_EXTS, IGNORED_ALWAYS).
IGNORE_EXTS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig",
               ".cfg", ".retry")
_IGNORED = re.compile("|".join([r"^\.", "^host_vars$", "^group_vars$", "^vars_plugins$",
                                *(re.escape(ext) + "$" for ext in IGNORE_EXTS)]))
_PLUGIN_EXTENSIONS = (".yml", ".yaml")


def source_list(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The sources as strings, in order (one path or host list, or several)."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    return [os.fspath(s) for s in sources if os.fspath(s)]


def is_host_list(source: str) -> bool:
    return "," in source and not os.path.exists(source)


def vars_base(source: str) -> str | None:
    """Where ``group_vars``/``host_vars`` of a source are: in a directory source, beside a file
    source, nowhere for a host list."""
    if is_host_list(source):
        return None
    return source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))


def _files(source: str) -> list[str]:
    """The files a source stands for, in the order Ansible reads them."""
    if not os.path.isdir(source):
        return [source]
    found: list[str] = []
    for name in sorted(os.listdir(source)):
        if not _IGNORED.search(name):
            found.extend(_files(os.path.join(source, name)))
    return found


def _plugin_config(path: str) -> str | None:
    """The plugin a ``*.yml``/``*.yaml`` file configures (None: it is not such a file)."""
    if not path.endswith(_PLUGIN_EXTENSIONS) or not os.path.isfile(path):
        return None
    try:
        return plugin_name(load_yaml_file(path))
    except (OSError, YamlError):
        return None


def read_sources(inv: InventoryData, sources: list[str]) -> None:
    """Read every source into ``inv`` (not yet reconciled).

    Raises:
        InventoryError: a source that cannot be read (``FILE:LINE: what (fix: ...)``).
    """
    if not sources:
        raise InventoryError("no inventory given", source="edrfleet",
                             fix="pass a file, a directory or 'host1,host2,'")
    # (path, given by the user itself rather than found in a directory)
    files = [(f, f == s) for s in sources
             for f in ([s] if is_host_list(s) else _files(s))]
    for path, _ in files:
        plugin = _plugin_config(path)
        if plugin is not None:  # ansible-core reads them all; see edrfleet.fleet.inventory.plugin
            inv.source = path
            read_with_ansible(inv, sources, plugin, path)
            return
    read = 0
    for path, top in files:
        inv.source = path
        if is_host_list(path):
            _read_host_list(inv, path)
            read += 1
        else:
            read += _read_file(inv, path, top)
    if not read:  # Ansible warns and goes on with no host but an implicit localhost
        raise InventoryError("no inventory source in it could be read", source=sources[0],
                             fix="put an inventory file (YAML, INI or a script) in it")


def _read_host_list(inv: InventoryData, text: str) -> None:
    """Ansible's host_list plugin: names (``name:port`` allowed, no ranges) in ``ungrouped``."""
    for word in text.split(","):
        word = word.strip()
        if not word:
            continue
        parsed = parse_address(word)
        name, port = parsed if parsed is not None and "[" not in parsed[0] else (word, None)
        if name not in inv.hosts:
            inv.add_host(name, "ungrouped", port, 0)


def _read_file(inv: InventoryData, path: str, top: bool) -> bool:
    """Read one file with the first plugin that takes it; False when skipped (warned)."""
    if not os.path.exists(path):
        if top:
            raise InventoryError("no such file or directory", source=path,
                                 fix="give an inventory file or directory, or hosts as "
                                 "'host1,host2,' (the comma makes it a list)")
        inv.warnings.append(f"{path}: cannot be read (a dangling link?), skipped as Ansible does")
        return False
    if not os.access(path, os.R_OK):
        raise InventoryError("cannot be read (permission denied)", source=path,
                             fix="make it readable by this user")
    failures: dict[str, InventoryError] = {}
    if os.access(path, os.X_OK):
        try:
            read_script(inv, path)
            return True
        except YamlError as exc:
            failures["script"] = _inventory_error(exc)
    ext = os.path.splitext(path)[1]
    doc: object = None
    if ext in YAML_EXTENSIONS and not (ext == "" and starts_with_section(path)):
        try:
            doc = load_yaml_file(path)
            parse_yaml(inv, doc)
            return True
        except YamlError as exc:
            failures["yaml"] = _inventory_error(exc)
    if ext == ".toml":
        try:
            parse_toml(inv, _read_text(path))
            return True
        except YamlError as exc:
            failures["toml"] = _inventory_error(exc)
    else:
        try:
            text = _read_text(path)
            if top and not _has_content(text):  # Ansible reads it as an empty INI inventory
                raise InventoryError("the inventory is empty", source=path, line=1,
                                     fix="start with 'all:' and its 'hosts:' (YAML) or a "
                                     "[group] line (INI)")
            parse_ini(inv, text)
            return True
        except YamlError as exc:  # InventoryError, or a value check of checks.py
            failures["ini"] = _inventory_error(exc)
    error = _likeliest(path, ext, doc, failures)
    if top:
        raise error
    inv.warnings.append(f"{error} - so this file is skipped, as Ansible skips a file of an "
                        "inventory directory that no inventory plugin reads")
    return False


def _has_content(text: str) -> bool:
    return any(ln.strip() and ln.strip()[0] not in "#;" for ln in text.splitlines())


def _inventory_error(exc: YamlError) -> InventoryError:
    if isinstance(exc, InventoryError):
        return exc
    return InventoryError(exc.message, source=exc.source, line=exc.line, fix=exc.fix)


def _read_text(path: str) -> str:
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=path,
                             line=raw.count(b"\n", 0, exc.start) + 1,
                             fix="save the file as UTF-8") from None


def _likeliest(path: str, ext: str, doc: object,
               failures: dict[str, InventoryError]) -> InventoryError:
    """Of the plugins' complaints, the one about the format the file was meant to be in."""
    if "toml" in failures:
        return failures["toml"]
    if "script" in failures:
        with open(path, "rb") as fh:
            if fh.read(2) == b"#!" or len(failures) == 1:
                return failures["script"]
    if "ini" in failures and failures["ini"].message == "the inventory is empty":
        return failures["ini"]
    if "yaml" in failures and (ext in (".yml", ".yaml", ".json") or isinstance(doc, dict)
                               or "ini" not in failures):
        return failures["yaml"]
    return failures.get("ini") or next(iter(failures.values()))
