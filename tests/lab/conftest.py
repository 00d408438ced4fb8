"""Lab tier: real OpenSSH sshd per host in network namespaces on this machine, real SSH.

`lab_hosts` (session scope) brings up one 3-host lab in a temporary directory for every lab
test and removes it at the end; deploy and report tests reuse it:

    def test_something(lab_hosts):
        with lab_hosts.transport("lab01") as t:
            t.run(["true"])
        lab_hosts.inventory          # Path of its inventory.yml (group "lab")

A test that breaks a host (stops its sshd, changes its key) must put it back: use
`lab_hosts.sshd_stopped(name)` / `lab_hosts.host_key_changed(name)`, context managers that do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from edrfleet.fleet import lab
from edrfleet.fleet.transport import Transport

LAB_HOSTS = 3


def lab_ready() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces, cgroups, sshd)"
    for tool in ("ip", "nsenter", "ssh-keygen", "sshd"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return f"needs {tool} (scripts/setup.sh installs iproute2 and openssh-server)"
    try:
        from edrfleet.agent.run import cgroup2_root

        cgroup2_root()
    except FileNotFoundError as exc:
        return str(exc)
    return ""


def pytest_collection_modifyitems(config, items):
    reason = lab_ready()
    for item in items:
        if "tests/lab" in str(item.fspath):
            item.add_marker(pytest.mark.lab)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@dataclass(frozen=True)
class InventoryHost:
    """The shape of edrfleet.fleet.inventory.Host, read from the lab's own inventory."""

    name: str
    vars: dict[str, Any]
    groups: tuple[str, ...] = ("all", "lab")


def load_lab_hosts(inventory: Path) -> dict[str, Any]:
    """Hosts of a lab inventory: through the real inventory loader when it is there."""
    try:
        from edrfleet.fleet.inventory import load_inventory
    except ImportError:
        doc = yaml.safe_load(inventory.read_text())["all"]["children"]["lab"]
        return {n: InventoryHost(n, {**doc["vars"], **hv}) for n, hv in doc["hosts"].items()}
    return dict(load_inventory(inventory).hosts)


@dataclass
class LabFleet:
    dir: Path
    inventory: Path
    hosts: dict[str, Any] = field(default_factory=dict)   # name -> Host

    @property
    def names(self) -> list[str]:
        return list(self.hosts)

    def lab(self) -> lab.Lab:
        return lab.Lab.load(self.dir)

    def transport(self, name: str, **var_overrides: Any) -> Transport:
        h = self.hosts[name]
        if var_overrides:
            h = InventoryHost(h.name, {**h.vars, **var_overrides})
        return Transport(h, self.inventory.parent, connect_timeout=5)

    @contextmanager
    def sshd_stopped(self, name: str) -> Iterator[None]:
        lab.stop_host(self.dir, name)
        try:
            yield
        finally:
            lab.start_host(self.dir, name)

    @contextmanager
    def host_key_changed(self, name: str) -> Iterator[None]:
        """The host gets a new key (known_hosts keeps the old one); the old one comes back."""
        h = self.lab().host(name)
        saved = {p: p.read_bytes() for p in (h.host_key, h.host_key.with_suffix(".pub"))}
        lab.regenerate_host_key(self.dir, name)
        try:
            yield
        finally:
            for p, data in saved.items():
                p.write_bytes(data)
            h.host_key.chmod(0o600)
            lab.start_host(self.dir, name)


@pytest.fixture(scope="session")
def lab_hosts(tmp_path_factory) -> Iterator[LabFleet]:
    workdir = tmp_path_factory.mktemp("edrfleet-lab") / "lab"
    inventory = lab.up(LAB_HOSTS, workdir, log=lambda _m: None)
    try:
        yield LabFleet(workdir, inventory, load_lab_hosts(inventory))
    finally:
        lab.down(workdir, log=lambda _m: None)
