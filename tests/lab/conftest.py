"""Lab tier: real OpenSSH sshd per host in network namespaces on this machine, real SSH.

`lab_hosts` (session scope) brings up one 3-host lab in a temporary directory for every lab
test and removes it at the end; deploy and report tests reuse it:

    def test_something(lab_hosts):
        with lab_hosts.transport("lab01") as t:
            t.run(["true"])
        lab_hosts.inventory          # Path of its inventory.yml (group "lab")

Helpers (LabFleet, load_lab_hosts) live in tests/lab/lab_fleet.py: `from lab_fleet import …`.
A test that breaks a host (stops its sshd, changes its key) must put it back: use
`lab_hosts.sshd_stopped(name)` / `lab_hosts.host_key_changed(name)`, context managers that do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from edrfleet.lab import netns as lab
from tests.lab.lab_fleet import LabFleet, load_lab_hosts
from tests.tiers import mark_tier

LAB_HOSTS = 3


def lab_ready() -> str:
    """Why this machine cannot run lab tests ("" when it can): the checks `lab up` makes."""
    from edrfleet.agent.run import cgroup2_root
    from edrfleet.lab.host import LabError, preflight

    try:
        preflight()
        cgroup2_root()
    except (LabError, FileNotFoundError) as exc:
        return str(exc)
    return ""


def pytest_collection_modifyitems(config, items):
    mark_tier(items, "tests/lab", pytest.mark.lab, lab_ready())


@pytest.fixture(scope="session")
def lab_hosts(tmp_path_factory) -> Iterator[LabFleet]:
    workdir = tmp_path_factory.mktemp("edrfleet-lab") / "lab"
    # owner_pid: if this run is killed, the next `lab up` anywhere on the machine removes it
    inventory = lab.up(LAB_HOSTS, workdir, log=lambda _m: None, owner_pid=os.getpid())
    try:
        yield LabFleet(workdir, inventory, load_lab_hosts(inventory))
    finally:
        lab.down(workdir, log=lambda _m: None)
