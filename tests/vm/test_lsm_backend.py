"""Backend lsm, proven in a guest where BPF LSM loads: a canary fails with EPERM (exit 126)."""

from __future__ import annotations

import time

from tests.vm.conftest import events, sh


def test_the_agent_picks_the_lsm_backend_on_its_own(agent):
    assert agent["backend"] == "lsm"


def test_a_canary_fails_with_operation_not_permitted_and_survives(guest, agent):
    r = sh(guest, "mkdir -p /tmp/edrfleet-canary-vm && echo precious > /tmp/edrfleet-canary-vm/f; "
                  "bash -c 'rm -rf /tmp/edrfleet-canary-vm'; echo rc=$?; "
                  "cat /tmp/edrfleet-canary-vm/f")
    assert "Operation not permitted" in r.stdout + r.stderr, r
    assert "rc=126" in r.stdout
    assert "precious" in r.stdout
    deadline = time.monotonic() + 30
    found = []
    while not found and time.monotonic() < deadline:
        found = [e for e in events(guest) if e["rule.id"] == "lab-canary"
                 and "/tmp/edrfleet-canary-vm" in e["process.args"]]
        time.sleep(1)
    (ev,) = found
    assert ev["event.action"] == "blocked"
    assert ev["edrfleet.backend"] == "lsm"
    assert ev["edrfleet.stage"] == "lsm"
    assert ev["process.args"] == ["rm", "-rf", "/tmp/edrfleet-canary-vm"]


def test_harmless_commands_run(guest, agent):
    r = sh(guest, "mkdir -p /tmp/scratch-vm && rm -rf /tmp/scratch-vm && ls / >/dev/null "
                  "&& echo fine")
    assert r.stdout.strip() == "fine", r
