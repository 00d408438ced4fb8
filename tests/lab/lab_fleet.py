"""Helpers for lab-tier tests (imported as ``lab_fleet``): a lab's hosts and transports."""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edrfleet.fleet.deploy.deployer import Deployer, DeployOptions
from edrfleet.fleet.deploy.facts import HostPaths, gather_facts
from edrfleet.fleet.inventory.load import load_inventory
from edrfleet.fleet.transport.ssh import SshTransport
from edrfleet.lab import netns as lab

# What deploy and the role install into on a lab host (docs/fleet.md host variables).
MANAGED_DIRS = ("edrfleet_install_dir", "edrfleet_config_dir", "edrfleet_spool_dir",
                "edrfleet_run_dir")


@dataclass(frozen=True)
class InventoryHost:
    """The shape of edrfleet.fleet.inventory.load.Host, read from the lab's own inventory."""

    name: str
    vars: dict[str, Any]
    groups: tuple[str, ...] = ("all", "lab")


def load_lab_hosts(inventory: Path) -> dict[str, Any]:
    """Hosts of a lab inventory: through the real inventory loader when it is there."""
    try:
        from edrfleet.fleet.inventory.load import load_inventory
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

    def transport(self, name: str, **var_overrides: Any) -> SshTransport:
        h = self.hosts[name]
        if var_overrides:
            h = InventoryHost(h.name, {**h.vars, **var_overrides})
        return SshTransport(h, self.inventory.parent, connect_timeout=5)

    def restore_dirs(self) -> None:
        """Every host's managed directories as `lab up` made them (for the modules after an
        uninstall)."""
        for h in self.hosts.values():
            for var in MANAGED_DIRS:
                Path(h.vars[var]).mkdir(mode=0o700, exist_ok=True)
                Path(h.vars[var]).chmod(0o700)

    def facts(self, name: str) -> dict[str, Any]:
        """What deploy reads from the host (edrfleet.fleet.deploy.facts), over SSH."""
        with self.transport(name) as t:
            return gather_facts(t, HostPaths.from_vars(self.hosts[name].vars))

    def agent_pids(self) -> dict[str, int]:
        return {n: self.facts(n)["agent_pid"] for n in self.names}

    def canary_attack(self, name: str) -> tuple[int, bool]:
        """rm -rf of a fresh canary inside the host: returns (exit status, canary survived)."""
        victim = Path(f"/tmp/edrfleet-canary-{secrets.token_hex(4)}")
        (victim / "precious").mkdir(parents=True)
        try:
            with self.transport(name) as t:
                # through a shell that waits (not exec): a killed rm is exit status 137
                r = t.run(["sh", "-c", 'rm -rf "$1"; exit $?', "sh", str(victim)], check=False)
            return r.rc, (victim / "precious").is_dir()
        finally:
            shutil.rmtree(victim, ignore_errors=True)  # from here: outside the lab's cgroups

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


def hosts(lab_hosts, **overrides):
    """The lab's inventory hosts; overrides = {host name: {var: value}}."""
    inv = load_inventory(lab_hosts.inventory)
    return [dataclasses.replace(h, vars={**h.vars, **overrides.get(h.name, {})})
            for h in inv.hosts.values()]


def run_deploy(lab_hosts, host_list=None, **opts):
    d = Deployer(lab_hosts.inventory.parent, DeployOptions(connect_timeout=5, **opts))
    report = d.run(host_list if host_list is not None else hosts(lab_hosts))
    return report, {r.name: r for r in report.results}
