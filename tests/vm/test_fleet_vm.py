"""The fleet commands against a real guest: `lab up --vm` -> deploy -> block -> report -> uninstall.

Tests run in file order on the one VM of the tier (the `vm_lab` session fixture): deploy installs
the systemd unit, the agent picks backend lsm by itself, a canary `rm -rf` over SSH fails with
EPERM (126) and survives, `edrfleet report` pulls the event, a root shell's kill of the agent
is refused by the guard, and `uninstall --purge` leaves the guest's file tree as it found it.
"""

from __future__ import annotations

import json
import time

import pytest

from edrfleet.agent import ecs
from edrfleet.cli.main import main
from edrfleet.fleet.report.backends import open_store
from edrfleet.lab.vm import qemu as vm

CANARY = "/tmp/edrfleet-canary-fleet-vm"
# Where the guest's state lives that deploy may touch; compared before deploy and after uninstall.
# Not compared: what the guest rewrites by itself (journal, systemd timestamps, apt lists).
TREE = ("find /opt /etc /usr/local /var/lib /var/log -xdev "
        "-not -path '/var/lib/systemd/*' -not -path '/var/log/journal/*' "
        "-not -path '/var/lib/apt/*' -not -path '/var/lib/dhcp/*' -not -name '*.pyc' | sort")
pytestmark = pytest.mark.timeout(1800)


def sh(guest: vm.VmHandle, cmd: str, timeout: float = 300):
    return vm.ssh(guest, cmd, timeout=timeout)


def status(guest: vm.VmHandle) -> dict:
    r = sh(guest, "cat /var/lib/edrfleet/status.json 2>/dev/null || true")
    return json.loads(r.stdout) if r.stdout.strip() else {}


def main_pid(guest: vm.VmHandle) -> int:
    r = sh(guest, "systemctl show --property=MainPID --value edrfleet-agent.service")
    return int(r.stdout.strip() or 0)


@pytest.fixture(scope="module")
def before(vm_lab) -> str:
    """The guest's file tree before anything is deployed."""
    r = sh(vm_lab.guest, TREE)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def deployed(vm_lab, before) -> dict:
    started = time.monotonic()
    rc = main(["deploy", str(vm_lab.inventory), "--timeout", "900"])
    took = time.monotonic() - started
    st = status(vm_lab.guest)
    print(f"deploy to the VM: {took:.1f} s (agent start in the VM {st.get('start_seconds')} s)")
    assert rc == 0, st
    return st


def test_deploy_starts_an_agent_that_picks_the_lsm_backend_on_its_own(vm_lab, deployed):
    assert deployed["state"] == "enforcing"
    assert deployed["backend"] == "lsm"
    assert deployed["pid"] == main_pid(vm_lab.guest)
    unit = sh(vm_lab.guest, "systemctl is-enabled edrfleet-agent.service; "
                            "systemctl is-active edrfleet-agent.service").stdout.split()
    assert unit == ["enabled", "active"]


def test_a_canary_over_ssh_fails_with_operation_not_permitted_and_survives(vm_lab, deployed):
    r = sh(vm_lab.guest, f"mkdir -p {CANARY} && echo precious > {CANARY}/f; "
                         f"bash -c 'rm -rf {CANARY}'; echo rc=$?; cat {CANARY}/f")
    assert "Operation not permitted" in r.stderr, r
    assert "rc=126" in r.stdout, r
    assert r.stdout.strip().endswith("precious"), r


def test_a_benign_command_runs(vm_lab, deployed):
    r = sh(vm_lab.guest, "mkdir -p /tmp/scratch-fleet-vm && rm -rf /tmp/scratch-fleet-vm "
                         "&& ls / >/dev/null && echo fine")
    assert r.stdout.strip() == "fine", r


def test_report_pulls_the_block_with_backend_lsm(vm_lab, deployed, tmp_path):
    db, out = tmp_path / "report.db", tmp_path / "report.json"
    deadline = time.monotonic() + 60
    events: list[dict] = []
    while not events and time.monotonic() < deadline:  # the agent writes at its next poll
        assert main(["report", str(vm_lab.inventory), "--db", str(db), "--format", "json",
                     "-o", str(out)]) == 0
        raws = [ecs.flatten(json.loads(r[7])) for r in open_store(db).event_rows()]
        events = [e for e in raws if e.get("rule.id") == "lab-canary"]
        if not events:
            time.sleep(2)
    (ev,) = events
    assert ev["event.action"] == "blocked"
    assert ev["edrfleet.backend"] == "lsm"
    assert ev["process.args"] == ["rm", "-rf", CANARY]
    assert ev["host.name"] == vm_lab.guest.name
    summary = json.loads(out.read_text())
    (host,) = summary["hosts"]
    assert (host["name"], host["backend"], host["state"]) == (vm_lab.guest.name, "lsm",
                                                             "enforcing")
    assert {"rule": "lab-canary", "blocked": 1} in [
        {"rule": r["rule"], "blocked": r["blocked"]} for r in summary["rules"]]


def test_a_root_shell_cannot_kill_the_agent_and_it_keeps_enforcing(vm_lab, deployed):
    """The guard (bpf/guard.c) refuses a root shell's SIGKILL to the agent: same pid, still
    enforcing.  (A crash restarted by systemd is proven on Debian 11, where no guard runs, by
    the role's molecule verify; `systemctl kill` of the agent is blocked by the default
    policy, and these guests have no D-Bus daemon to ask pid 1 otherwise.)"""
    old = main_pid(vm_lab.guest)
    assert old > 0
    r = sh(vm_lab.guest, f"kill -KILL {old}")
    assert r.returncode != 0 and "not permitted" in r.stderr, r
    time.sleep(2)
    st = status(vm_lab.guest)
    assert main_pid(vm_lab.guest) == old == st["pid"]
    assert st["state"] == "enforcing" and st["backend"] == "lsm", st


def test_uninstall_leaves_nothing_behind(vm_lab, deployed, before):
    assert main(["uninstall", str(vm_lab.inventory), "--purge"]) == 0
    after = sh(vm_lab.guest, TREE).stdout
    assert after.splitlines() == before.splitlines()
    left = sh(vm_lab.guest, "systemctl list-units --all --no-legend 'edrfleet*'; "
                            "pgrep -af 'agent[.]pyz' || true").stdout  # [.]: not this shell
    journal = sh(vm_lab.guest, "journalctl -u edrfleet-agent.service -n 40 --no-pager").stdout
    assert left.strip() == "", journal
