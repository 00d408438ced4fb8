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


def test_a_memfd_copy_is_reported_as_fileless(guest, agent):
    """The default policy logs fileless execs (runc does them); the 6.1 BTF has i_nlink too."""
    code = ("import os; fd = os.memfd_create('edr-vm-true', 0); "
            "os.write(fd, open('/bin/true', 'rb').read()); "
            "os.execve(fd, ['edr-vm-true', 'from-memory'], {})")
    r = sh(guest, f"python3 -c \"{code}\"; echo rc=$?")
    assert "rc=0" in r.stdout, r
    deadline = time.monotonic() + 30
    found = []
    while not found and time.monotonic() < deadline:
        found = [e for e in events(guest) if e["rule.id"] == "fileless-exec"
                 and e["process.args"] == ["edr-vm-true", "from-memory"]]
        time.sleep(1)
    (ev,) = found
    assert ev["event.action"] == "logged" and ev["edrfleet.fileless"] is True
    assert ev["process.name"] == "memfd:edr-vm-true"
    assert ev["edrfleet.as_executed"].startswith("/dev/fd/")
def test_parent_and_cwd_are_decided_by_the_lsm_hook(guest, agent):
    run = ("cd {cwd} && /tmp/edrvm-bin/{sh} -c '/tmp/edrvm-bin/edrvm-ctx-canary; echo rc=$?'")
    r = sh(guest, run.format(cwd="/tmp/edrvm-ctx/sub", sh="edrvm-sh"))
    assert "Operation not permitted" in r.stdout + r.stderr and "rc=126" in r.stdout, r
    for cwd, shell in (("/tmp", "edrvm-sh"), ("/tmp/edrvm-ctx", "../../bin/dash")):
        r = sh(guest, run.format(cwd=cwd, sh=shell))
        assert "rc=0" in r.stdout, (cwd, shell, r)
    deadline = time.monotonic() + 30
    found = []
    while not found and time.monotonic() < deadline:
        found = [e for e in events(guest) if e["rule.id"] == "vm-ctx-canary"]
        time.sleep(1)
    (ev,) = found
    assert (ev["edrfleet.stage"], ev["process.working_directory"]) == ("lsm", "/tmp/edrvm-ctx/sub")
    assert ev["process.parent.name"] == "edrvm-sh"
