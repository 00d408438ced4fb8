"""The agent on every Debian release a fleet runs: 11 (5.10), 12 (6.1), 13 (6.12), one guest each.

`edrfleet lab up --vm --os debian-11,debian-12,debian-13` boots the three guests at once (the
`matrix_lab` session fixture); one `edrfleet deploy` installs the agent on all three; each agent
picks the backend its kernel allows (lsm where BPF LSM is active, sigkill where it is not) and
says so in status.json with its kernel and scan window; a canary `rm -rf` over SSH is stopped on
each (EPERM with lsm, Killed with sigkill) and the files survive; a benign command runs; the
event names the backend; `edrfleet status --format json` shows every host enforcing.
At the end `edrfleet uninstall --purge` stops the agents the product's way (a `pkill` of the
agent is blocked by its own policy) and leaves the guests clean for the role's molecule
scenario, which runs on the same three guests (tests/vm/test_molecule.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from edrfleet.agent import ecs
from edrfleet.cli.main import main
from edrfleet.lab.vm import qemu as vm
from tests.vm.conftest import MATRIX

CANARY = "/tmp/edrfleet-canary-matrix"
pytestmark = pytest.mark.timeout(3600)


def sh(guest: vm.VmHandle, cmd: str, timeout: float = 300):
    return vm.ssh(guest, cmd, timeout=timeout)


def status(guest: vm.VmHandle) -> dict:
    r = sh(guest, "cat /var/lib/edrfleet/status.json 2>/dev/null || true")
    return json.loads(r.stdout) if r.stdout.strip() else {}


@pytest.fixture(scope="module")
def deployed(matrix_lab) -> Iterator[dict[str, dict]]:
    """One deploy to the three guests at once; each guest's status.json, by release.  The
    agents are uninstalled (spool purged) after the module."""
    started = time.monotonic()
    rc = main(["deploy", str(matrix_lab.inventory), "--timeout", "2400"])
    took = time.monotonic() - started
    states = {rel: status(g) for rel, g in matrix_lab.guests.items()}
    for rel, st in states.items():
        print(f"{rel}: kernel {st.get('kernel')} backend {st.get('backend')} scan window "
              f"{st.get('scan_window')} agent start {st.get('start_seconds')} s "
              f"{st.get('last_error') or ''}")
    print(f"deploy to {len(states)} guests: {took:.1f} s")
    logs = {rel: sh(g, "journalctl -u edrfleet-agent.service -n 30 --no-pager").stdout
            for rel, g in matrix_lab.guests.items() if states[rel].get("state") != "enforcing"}
    try:
        assert rc == 0, (states, logs)
        yield states
    finally:
        assert main(["uninstall", str(matrix_lab.inventory), "--purge"]) == 0
        left = {rel: sh(g, "ls -d /opt/edrfleet /etc/edrfleet /var/lib/edrfleet "
                           "/etc/systemd/system/edrfleet-agent.service 2>/dev/null; "
                           "pgrep -f '[a]gent.pyz run' || true").stdout.strip()  # not this sh
                for rel, g in matrix_lab.guests.items()}
        assert left == {rel: "" for rel in matrix_lab.guests}, left


@pytest.mark.parametrize("release", list(MATRIX))
def test_each_agent_enforces_with_the_backend_its_kernel_allows(matrix_lab, deployed, release):
    st = deployed[release]
    assert st["state"] == "enforcing", st
    assert st["backend"] == MATRIX[release], st
    kernel = sh(matrix_lab.guests[release], "uname -r").stdout.strip()
    assert st["kernel"] == kernel
    assert st["scan_window"] >= 512  # a degraded window is reported, never silent


@pytest.mark.parametrize("release", list(MATRIX))
def test_a_canary_is_stopped_and_survives_and_the_event_names_the_backend(matrix_lab, deployed,
                                                                          release):
    guest = matrix_lab.guests[release]
    r = sh(guest, f"mkdir -p {CANARY} && echo precious > {CANARY}/f; "
                  f"bash -c 'rm -rf {CANARY}'; echo rc=$?; cat {CANARY}/f")
    if MATRIX[release] == "lsm":
        assert "Operation not permitted" in r.stderr and "rc=126" in r.stdout, r
    else:
        assert "rc=137" in r.stdout, r  # Killed before rm ran
    assert r.stdout.strip().endswith("precious"), r
    deadline = time.monotonic() + 60
    found: list[dict] = []
    while not found and time.monotonic() < deadline:
        out = sh(guest, "cat /var/lib/edrfleet/events.jsonl 2>/dev/null || true").stdout
        found = [e for e in (ecs.flatten(json.loads(x)) for x in out.splitlines() if x)
                 if e.get("rule.id") == "lab-canary" and CANARY in e["process.args"]]
        time.sleep(2)
    (ev,) = found
    assert ev["event.action"] == "blocked"
    assert ev["edrfleet.backend"] == MATRIX[release]
    assert ev["process.args"] == ["rm", "-rf", CANARY]


@pytest.mark.parametrize("release", list(MATRIX))
def test_a_benign_command_runs(matrix_lab, deployed, release):
    r = sh(matrix_lab.guests[release], "mkdir -p /tmp/scratch-matrix && rm -rf "
                                       "/tmp/scratch-matrix && ls / >/dev/null && echo fine")
    assert r.stdout.strip() == "fine", r


def test_status_json_shows_every_host_enforcing_with_its_backend_and_kernel(matrix_lab, deployed,
                                                                           capsys):
    capsys.readouterr()
    assert main(["status", str(matrix_lab.inventory), "--format", "json"]) == 0
    rows = {r["host"]: r for r in json.loads(capsys.readouterr().out)}
    want = {g.name: MATRIX[rel] for rel, g in matrix_lab.guests.items()}
    assert {n: (r["state"], r["backend"]) for n, r in rows.items()} == {
        n: ("enforcing", b) for n, b in want.items()}
    for rel, g in matrix_lab.guests.items():
        assert rows[g.name]["kernel"] == deployed[rel]["kernel"]


@pytest.mark.parametrize("release", list(MATRIX))
def test_the_guard_is_on_with_the_lsm_backend_and_says_why_not_elsewhere(deployed, release):
    """bpf/guard.c loads wherever the LSM backend does (6.1, 6.12); on 5.10 nothing changes
    and status.json says why.  The module's uninstall then disarms the guarded agents."""
    guard = deployed[release]["guard"]
    if MATRIX[release] == "lsm":
        assert guard["on"] is True and len(guard["link_ids"]) == 11, guard
    else:
        assert guard["on"] is False and guard["why"].startswith("backend sigkill: "), guard
