"""Inventory plugin configurations (``plugin: amazon.aws.aws_ec2``, ``ansible.builtin.constructed``
...), read by ansible-core itself: ``ansible-inventory -i SOURCE... --list --export`` runs as a
separate program and edrfleet reads the JSON it prints. edrfleet imports no ansible-core code
(ansible-core is GPL); it only runs the command, like a user would.

``--export`` keeps group variables on their groups and host variables on their hosts (plain
``--list`` flattens every group's vars into each host, which would put them above the
group_vars files of other sources). A constructed plugin builds groups from hosts that other
sources define, so when any source is a plugin configuration every source goes to one
``ansible-inventory`` run, in the order given.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from edrfleet.fleet.inventory.data import InventoryData
from edrfleet.fleet.inventory.script import ingest_json, run_json

__all__ = ["PLUGIN_TIMEOUT", "find_ansible_inventory", "plugin_name", "read_with_ansible"]

PLUGIN_TIMEOUT = 300.0  # seconds; a cloud plugin may page through many API calls


def plugin_name(data: Any) -> str | None:
    """The ``plugin:`` of a YAML document, when it is an inventory plugin configuration."""
    if isinstance(data, dict):
        name = data.get("plugin")
        if isinstance(name, str) and name:
            return name
    return None


def find_ansible_inventory() -> str | None:
    """``ansible-inventory`` beside this Python (a venv) or on PATH."""
    beside = shutil.which("ansible-inventory", path=os.path.dirname(sys.executable))
    return beside or shutil.which("ansible-inventory")


def read_with_ansible(inv: InventoryData, sources: list[str], plugin: str, config: str,
                      timeout: float = PLUGIN_TIMEOUT) -> None:
    """Every source read by ``ansible-inventory`` into ``inv`` (``inv.source`` names the plugin
    configuration ``config`` for errors).

    Raises:
        InventoryError: ansible-core is not installed, or ansible-inventory fails.
    """
    exe = find_ansible_inventory()
    if exe is None:
        raise inv.error(f"the inventory plugin {plugin!r} is read by ansible-core, which is not "
                        "installed", 0, "pip install ansible-core (and the collection that "
                        f"provides {plugin}: ansible-galaxy collection install ...)")
    argv = [exe]
    for source in sources:
        argv += ["-i", source]
    # Unparsed sources fail the run: Ansible would warn and go on with an empty inventory.
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "ANSIBLE_NOCOLOR": "1"}
    doc = run_json(inv, [*argv, "--list", "--export"], what="ansible-inventory",
                   timeout=timeout, env=env, gist=_gist,
                   fix=f"run '{exe} -i {config} --list' and fix what it says (a missing "
                   "collection: ansible-galaxy collection install ...)")
    ingest_json(inv, doc)


def _gist(stderr: str) -> str:
    """The line of ansible-inventory's stderr that says why: a plugin that did not load or
    failed (the other plugins' complaints about a plugin file are noise), else its error."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for needle in ("Error loading plugin", "with 'auto' plugin:", "[ERROR]"):
        for line in lines:
            if needle in line:
                return line.removeprefix("[WARNING]: ").removeprefix("[ERROR]: ")[:300]
    return lines[-1][:300] if lines else ""
