"""Executable inventory scripts and the JSON they print (Ansible's script plugin protocol).

``SCRIPT --list`` prints ``{"group": {"hosts": [...], "vars": {...}, "children": [...]}, ...,
"_meta": {"hostvars": {"host": {...}}}}``; without ``_meta.hostvars``, ``SCRIPT --host H`` is
run for each host, as Ansible does (it deprecates that in 2.19). A group given as a list is its
hosts; a group mapping with none of hosts/vars/children is a host of that name with those vars
(both old forms Ansible still reads with a deprecation). The same JSON comes out of
``ansible-inventory --list --export`` (`edrfleet.fleet.inventory.plugin`).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from typing import Any

from edrfleet.fleet.inventory.checks import check_known_vars
from edrfleet.fleet.inventory.data import InventoryData
from edrfleet.fleet.inventory.yaml_lines import Unsafe, YamlError

__all__ = ["SCRIPT_TIMEOUT", "ingest_json", "read_script", "run_json"]

SCRIPT_TIMEOUT = 60.0  # seconds; Ansible waits forever, a deploy should not
_FIX = "run '{cmd}' by hand; it must exit 0 and print one JSON object"


def _last_words(text: str, limit: int = 200) -> str:
    """The last non-empty line of a program's output, shortened for a one-line error."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else last[:limit] + "..."


def run_json(inv: InventoryData, argv: list[str], *, what: str, timeout: float,
             fix: str | None = None, env: dict[str, str] | None = None,
             gist: Callable[[str], str] = _last_words) -> Any:
    """Run ARGV and return the JSON it prints; errors name ``inv.source`` and what it said
    (``gist`` picks that from its stderr)."""
    cmd = shlex.join(argv)
    fix = fix or _FIX.format(cmd=cmd)
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        raise inv.error(f"{what} '{cmd}' did not finish in {timeout:.0f} s", 0, fix) from None
    except OSError as exc:
        raise inv.error(f"{what} '{cmd}' cannot be run: {exc.strerror or exc}", 0,
                        "check its first line (#!) and that the interpreter exists") from None
    stderr = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        said = gist(stderr) or _last_words(done.stdout.decode(errors="replace"))
        status = f"exit status {done.returncode}" if done.returncode > 0 else \
            f"signal {-done.returncode}"
        raise inv.error(f"{what} '{cmd}' failed ({status})" + (f": {said}" if said else ""),
                        0, fix)
    try:
        text = done.stdout.decode()
    except UnicodeDecodeError:
        raise inv.error(f"{what} '{cmd}' printed text that is not UTF-8", 0, fix) from None
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        shown = _last_words(text.splitlines()[exc.lineno - 1] if text.splitlines() else "", 60)
        raise inv.error(f"{what} '{cmd}' printed something that is not JSON ({exc.msg} at line "
                        f"{exc.lineno} column {exc.colno}: {shown!r})", 0, fix) from None


def _tags(value: Any) -> Any:
    """Ansible's JSON tags: ``{"__ansible_unsafe": "..."}`` is a `Unsafe` string."""
    if isinstance(value, dict):
        if len(value) == 1 and "__ansible_unsafe" in value:
            return Unsafe(value["__ansible_unsafe"])
        return {k: _tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tags(v) for v in value]
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value),
                                                                   type(value).__name__)


def ingest_json(inv: InventoryData, doc: Any,
                host_vars: Callable[[str], Any] | None = None) -> None:
    """Add the groups and hosts of an inventory JSON document to ``inv``. ``host_vars(H)`` gives
    a host's vars when the document has no ``_meta.hostvars`` (None: no vars)."""
    if not isinstance(doc, dict):
        raise inv.error(f"the inventory JSON is {_kind(doc)}, not an object of groups", 0,
                        'print {"group": {"hosts": [...]}, "_meta": {"hostvars": {}}}')
    meta = doc.get("_meta", {})
    meta_vars = meta.get("hostvars") if isinstance(meta, dict) else None
    if "_meta" in doc and not isinstance(meta_vars, dict):
        raise inv.error("'_meta.hostvars' of the inventory JSON is not an object", 0,
                        'print "_meta": {"hostvars": {"host": {...}}}')
    hosts: list[str] = []
    for name, data in doc.items():
        if name != "_meta":
            hosts.extend(_group(inv, name, data))
    if meta_vars is None and host_vars is not None:
        inv.warnings.append(f"{inv.source}: the script prints no '_meta.hostvars', so it is "
                            "run once more for each host (Ansible deprecates this)")
    for host in dict.fromkeys(hosts):
        got = meta_vars.get(host, {}) if meta_vars is not None else \
            (host_vars(host) if host_vars else {})
        if not isinstance(got, dict):
            raise inv.error(f"the variables of host {host!r} are {_kind(got)}, not an object",
                            0, 'print "host": {"name": value, ...}')
        values = _tags(got)
        check_known_vars(values, inv.source, f"host {host!r}", text_values=True)
        inv.set_host_vars(inv.hosts[host], values, 0)


def _group(inv: InventoryData, name: str, data: Any) -> list[str]:
    group = inv.add_group(name, 0)
    if not isinstance(data, dict):
        data = {"hosts": data}
    elif not any(k in data for k in ("hosts", "vars", "children")):
        data = {"hosts": [name], "vars": data}
    hosts = data.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise inv.error(f"'{name}.hosts' of the inventory JSON is {_kind(hosts)}, not a list "
                        "of host names", 0, f'print "{name}": {{"hosts": ["host1", ...]}}')
    for host in hosts:
        inv.add_host(host, name, None, 0)
    group_vars = data.get("vars", {})
    if not isinstance(group_vars, dict):
        raise inv.error(f"'{name}.vars' of the inventory JSON is {_kind(group_vars)}, not an "
                        "object", 0, f'print "{name}": {{"vars": {{"name": value}}}}')
    group_vars = _tags(group_vars)
    check_known_vars(group_vars, inv.source, f"group {name!r}", text_values=True)
    for key, value in group_vars.items():
        inv.set_group_var(group, key, value, 0)
    for child in data.get("children", []) or []:
        inv.add_group(child, 0)
        inv.add_child(name, child, 0)
    return hosts


def read_script(inv: InventoryData, path: str, timeout: float = SCRIPT_TIMEOUT) -> None:
    """Run the inventory script PATH (``--list``, then ``--host H`` if it must) into ``inv``."""
    doc = run_json(inv, [path, "--list"], what="inventory script", timeout=timeout)
    if doc is None:
        raise inv.error(f"inventory script '{path} --list' printed nothing", 0,
                        _FIX.format(cmd=f"{path} --list"))

    def host_vars(host: str) -> Any:
        return run_json(inv, [path, "--host", host], what="inventory script",
                        timeout=timeout) or {}

    try:
        ingest_json(inv, doc, host_vars)
    except YamlError as exc:
        if exc.message.startswith("inventory script"):
            raise
        raise inv.error(f"inventory script '{path} --list' printed JSON edrfleet cannot use: "
                        f"{exc.message}", exc.line, exc.fix) from None
