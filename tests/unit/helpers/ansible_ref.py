"""Run the real ansible-core (from the test venv) to compare edrfleet's inventory with it."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ANSIBLE_INVENTORY = shutil.which("ansible-inventory", path=str(BIN)) or shutil.which(
    "ansible-inventory")
ANSIBLE = shutil.which("ansible", path=str(BIN)) or shutil.which("ansible")

needs_ansible = pytest.mark.skipif(
    not (ANSIBLE_INVENTORY and ANSIBLE),
    reason="ansible-core is not installed (it is in the dev extra: bash scripts/setup.sh)")

_HOME = tempfile.mkdtemp(prefix="edrfleet-test-ansible-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
_CONFIG = os.path.join(_HOME, "ansible.cfg")  # empty: Ansible's defaults, whatever ~ holds
Path(_CONFIG).write_text("[defaults]\n")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_HOME=_HOME, ANSIBLE_LOCAL_TEMP=_HOME, ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=_CONFIG, ANSIBLE_INVENTORY_UNPARSED_FAILED="1",
               ANSIBLE_DEPRECATION_WARNINGS="0",
               # Ansible orders some hosts of `all` through a set (hosts that several groups
               # reach via :children), so its --list-hosts order follows the hash seed: one
               # seed makes the reference one answer, not a coin toss (seen on complex.ini).
               PYTHONHASHSEED="0")
    # cwd is an empty directory: no playbook-adjacent group_vars/host_vars get mixed in.
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=_HOME,
                          timeout=120, check=False)


Sources = Path | str | list[Path | str]


def _i(inventory: Sources) -> list[str]:
    """``-i SOURCE`` for each source (several are merged in order, as ansible reads them)."""
    sources = inventory if isinstance(inventory, list) else [inventory]
    return [arg for s in sources for arg in ("-i", str(s))]


def ansible_inventory(inventory: Sources, *extra: str) -> dict:
    """``ansible-inventory -i INVENTORY --list`` (or ``--host H``) as parsed JSON."""
    args = list(extra) if extra and extra[0] == "--host" else ["--list", *extra]
    done = _run([str(ANSIBLE_INVENTORY), *_i(inventory), *args])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ansible_graph(inventory: Sources, group: str = "all") -> str:
    """``ansible-inventory -i INVENTORY --graph GROUP`` as printed (without the last newline)."""
    done = _run([str(ANSIBLE_INVENTORY), *_i(inventory), "--graph", group])
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


def ansible_list_hosts(inventory: Sources, limit: str | None,
                       pattern: str = "all") -> list[str] | None:
    """``ansible PATTERN -i INVENTORY --list-hosts [--limit LIMIT]``: host names in order,
    None when ansible refuses (no host left, bad subscript)."""
    limit_args = ["--limit", limit] if limit is not None else []
    done = _run([str(ANSIBLE), pattern, *_i(inventory), "--list-hosts", *limit_args])
    if done.returncode != 0:
        return None
    lines = done.stdout.splitlines()
    assert lines and lines[0].strip().startswith("hosts ("), done.stdout
    return [line.strip() for line in lines[1:] if line.strip()]


def ansible_values(inventory: Sources, host: str, names: list[str]) -> dict | str:
    """What a play on ``host`` sees for each of ``names`` (Ansible templates them at use):
    ``ansible HOST -m debug -a 'msg={{ {...} }}'``; the error message when that fails."""
    expr = "{{ {" + ", ".join(f"{json.dumps(n)}: {n}" for n in names) + "} }}"
    done = _run([str(ANSIBLE), host, *_i(inventory), "-o", "-m", "ansible.builtin.debug",
                 "-a", f"msg={expr}"])
    line = next((x for x in done.stdout.splitlines() if x.startswith(f"{host} | ")), "")
    assert " => " in line, done.stdout + done.stderr
    result = json.loads(line.split(" => ", 1)[1])
    return result["msg"]  # the values; with "HOST | FAILED!", the error message
