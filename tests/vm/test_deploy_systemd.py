"""edrfleet deploy to a Debian 12 guest whose PID 1 is systemd: the unit path, end to end.

The deploy writes /etc/systemd/system/edrfleet-agent.service, enables and starts it, and waits
until status.json shows the bundle in force (backend lsm in this guest); a rerun changes
nothing (same MainPID), a policy-only change is `systemctl reload` (same MainPID), uninstall
removes unit and files.  Paths are the guest's own /opt/edrfleet-deploy etc., apart from what
test_lsm_backend.py puts in /opt/edrfleet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from edrfleet.cli.main import main
from edrfleet.fleet.deploy.deployer import Deployer, DeployOptions
from edrfleet.fleet.inventory.load import load_inventory
from edrfleet.lab.netns import LAB_CANARY_RULE
from edrfleet.lab.vm import qemu as vm

DIRS = {"edrfleet_install_dir": "/opt/edrfleet-deploy",
        "edrfleet_config_dir": "/etc/edrfleet-deploy",
        "edrfleet_spool_dir": "/var/lib/edrfleet-deploy",
        "edrfleet_run_dir": "/run/edrfleet-deploy"}


def sh(guest, cmd: str) -> str:
    r = vm.ssh(guest, cmd, timeout=120)
    return r.stdout.strip()


@pytest.fixture(scope="module")
def inventory(guest, tmp_path_factory) -> Path:
    inv = tmp_path_factory.mktemp("vm-inv") / "inventory.yml"
    host = {"ansible_host": "127.0.0.1", "ansible_port": guest.port, "ansible_user": "root",
            "ansible_ssh_private_key_file": str(guest.key),
            "edrfleet_known_hosts_file": str(guest.known_hosts),
            "edrfleet_extra_rules": [LAB_CANARY_RULE], "edrfleet_start_timeout": 500, **DIRS}
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"vm1": host}}}))
    yield inv
    main(["uninstall", str(inv), "--purge"])


def deploy(inventory: Path, **overrides):
    hosts = [dataclasses.replace(h, vars={**h.vars, **overrides})
             for h in load_inventory(inventory).hosts.values()]
    report = Deployer(inventory.parent, DeployOptions(command_timeout=300)).run(hosts)
    return report.results[0]


def main_pid(guest) -> int:
    return int(sh(guest, "systemctl show -p MainPID --value edrfleet-agent.service") or 0)


def test_first_deploy_starts_the_systemd_unit_with_backend_lsm(guest, inventory):
    r = deploy(inventory)
    assert r.status == "changed", r.message
    assert "systemd unit" in r.message and "start agent" in r.message
    assert r.agent["state"] == "enforcing" and r.agent["backend"] == "lsm"
    assert sh(guest, "systemctl is-active edrfleet-agent.service") == "active"
    assert sh(guest, "systemctl is-enabled edrfleet-agent.service") == "enabled"
    assert main_pid(guest) == r.agent["pid"]
    unit = sh(guest, "cat /etc/systemd/system/edrfleet-agent.service")
    assert "/opt/edrfleet-deploy/current/agent.pyz run --policy " \
           "/etc/edrfleet-deploy/policy.json" in unit and "--host-name vm1" in unit
    out = sh(guest, "d=/tmp/edrfleet-canary-vm; mkdir -p $d/keep; rm -rf $d; echo rc=$?; "
                    "test -d $d/keep && echo survived")
    assert "rc=126" in out and "survived" in out  # EPERM from the LSM hook


def test_rerun_is_a_no_op_and_a_policy_change_is_a_reload(guest, inventory):
    pid = main_pid(guest)
    assert deploy(inventory).status == "ok"
    r = deploy(inventory, edrfleet_mode="monitor")
    assert r.status == "changed" and "reload agent" in r.message, r.message
    assert r.agent["state"] == "monitoring" and main_pid(guest) == pid
    assert deploy(inventory).agent["state"] == "enforcing" and main_pid(guest) == pid


def test_uninstall_removes_the_unit_and_the_files(guest, inventory):
    assert main(["uninstall", str(inventory), "--purge"]) == 0
    # stopped cleanly: the agent took a policy without rules first, since its own default
    # policy blocks `systemctl stop edrfleet-agent` ("failed" would be an agent killed some
    # other way, e.g. by its spool disappearing); then disarmed: nothing stays pinned
    assert sh(guest, "systemctl is-active edrfleet-agent.service || true") == "inactive"
    assert "edrfleet-agent: stopped: " in sh(guest, "journalctl -u edrfleet-agent.service "
                                                    "--no-pager | tail -40")
    assert sh(guest, "ls /sys/fs/bpf/edrfleet 2>/dev/null || true") == ""
    left = sh(guest, "ls -d /etc/systemd/system/edrfleet-agent.service " +
              " ".join(DIRS.values()) + " 2>/dev/null || true")
    assert left == ""
