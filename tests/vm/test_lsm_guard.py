"""Self-protection on the LSM backend (bpf/guard.c), proven in the Debian 12 guest.

A second agent on its own spool and transient unit (the session's agent stays for the tests
after this module): tests/helpers/guard_probe.py, run as root in the guest, tries what an
attacker's script would -- SIGKILL/SIGTERM/SIGSTOP/SIGINT/SIGUSR1, ptrace attach, /proc/PID/mem,
unlink and rename of a pin and of its directory, BPF_OBJ_GET of a pin, a writable fd to the
config map by id, an fd to each of its links by id -- and every one gets EPERM while the agent
lives on.  Each refusal is an event and a status.json count.  Then ``agent disarm`` (its stop
request in the spool, not a signal) ends the agent and unpins everything.
"""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import pytest

from edrfleet.lab.vm import qemu as vm
from tests.vm.conftest import run_agent_unit, sh

# the tier's boot and the session agent's start come first: a loaded host takes more than 600 s
pytestmark = pytest.mark.timeout(1800)
SPOOL = "/var/lib/edrguard"
UNIT = "edrvm-guard"
PROBE = Path(__file__).resolve().parents[1] / "helpers" / "guard_probe.py"
AGENT = "cd /opt/edrfleet && python3 -m edrfleet.agent"


def _status(guest) -> dict:
    out = sh(guest, f"cat {SPOOL}/status.json 2>/dev/null || true").stdout.strip()
    return json.loads(out) if out else {}


def _events(guest) -> list[dict]:
    out = sh(guest, f"cat {SPOOL}/events.jsonl 2>/dev/null || true").stdout
    return [json.loads(line) for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def guarded(guest, agent):
    """A guarded agent (the session agent's release and policy, its own spool); disarmed at
    the end whatever happened."""
    vm.copy_to(guest, PROBE.read_text(), "/opt/edrfleet/guard_probe.py", mode="0700")
    status = run_agent_unit(guest, UNIT, "/opt/edrfleet", "/etc/edrfleet/policy.json", SPOOL,
                            "vm1")
    assert status.get("state") == "enforcing", status
    yield status
    sh(guest, f"{AGENT} disarm --spool {SPOOL}; systemctl stop {UNIT} 2>/dev/null; "
              f"systemctl reset-failed {UNIT} 2>/dev/null; rm -rf {SPOOL}", timeout=120)


@pytest.fixture(scope="module")
def probed(guest, guarded) -> dict:
    r = sh(guest, f"python3 /opt/edrfleet/guard_probe.py {SPOOL}", timeout=60)
    assert r.returncode == 0, r
    return json.loads(r.stdout)


def test_the_guard_is_on_with_the_agent_s_objects(guarded):
    guard = guarded["guard"]
    assert guarded["backend"] == "lsm" and guard["on"] is True, guard
    # 9 guard links + exec + lsm; maps, their ids, links and programs, pins, 2 directories
    assert len(guard["link_ids"]) == 11 and "config" in guard["map_ids"], guard
    assert guard["objects"] > 2 * len(guard["link_ids"]) + len(guard["map_ids"]), guard


def test_signals_that_stop_or_end_the_agent_are_refused_and_it_lives(probed):
    for sig in ("SIGKILL", "SIGTERM", "SIGSTOP", "SIGINT", "SIGUSR1"):
        assert probed[f"kill_{sig}"] == errno.EPERM, (sig, probed)
    assert probed["kill_0"] == 0  # "is it alive?" still answers
    assert probed["alive"] and probed["state"] in ("S", "R"), probed


def test_ptrace_and_proc_mem_are_refused_status_is_readable(probed):
    assert probed["ptrace_attach"] == errno.EPERM, probed
    # the guard's EPERM, which proc_mem_open reports as EACCES (the "ptrace" count says whose)
    assert probed["proc_mem"] in (errno.EPERM, errno.EACCES), probed
    assert probed["proc_status"] == 0, probed


def test_pins_cannot_be_removed_moved_or_opened(probed):
    for what in ("unlink_pin", "rename_pin", "rename_dir", "obj_get_map", "obj_get_link"):
        assert probed[what] == errno.EPERM, (what, probed)
    assert "link_lsm" in probed["pins_left"] and "moved" not in probed["pins_left"]


def test_map_writes_and_link_fds_are_refused_reads_are_not(probed):
    assert probed["map_fd_rw"] == errno.EPERM, probed  # bpftool map update needs this fd
    assert probed["map_fd_ro"] == 0, probed
    # no fd, no BPF_LINK_DETACH or BPF_LINK_UPDATE
    assert set(probed["link_fd"].values()) == {errno.EPERM}, probed


def test_each_refusal_is_an_event_and_counted(guest, probed):
    want = {"signal", "ptrace", "unlink", "rename", "open", "map_write", "by_id"}
    deadline = time.monotonic() + 30
    seen: dict[str, int] = {}
    refused: dict[str, int] = {}
    # events go to the spool at once, status.json once a second: wait for both
    while time.monotonic() < deadline and not (
            set(seen) == want and all(refused.get(k, 0) >= n for k, n in seen.items())):
        time.sleep(1)
        seen = {}
        for e in _events(guest):
            if e.get("rule", {}).get("id") == "edrfleet-self-protection":
                r = e["edrfleet"]["refused"]
                seen[r["what"]] = seen.get(r["what"], 0) + r["count"]
                assert e["event"]["action"] == "self-protection" and e["process"]["pid"] > 1
        refused = _status(guest)["guard"]["refused"]
    assert set(seen) == want, seen
    assert seen["signal"] >= 5 and seen["ptrace"] >= 2 and seen["by_id"] >= 11, seen
    assert all(refused.get(k, 0) >= n for k, n in seen.items()), (refused, seen)


def test_disarm_passes_the_guard_ends_the_agent_and_unpins(guest, guarded, probed):
    r = sh(guest, f"{AGENT} disarm --spool {SPOOL} --unit none.service", timeout=120)
    assert "disarmed" in r.stdout, r
    pid, inst = probed["pid"], guarded["pinned"].rsplit("/", 1)[0]
    r = sh(guest, f"test -e /proc/{pid} && echo AGENT-ALIVE; test -e {inst} && echo PINS-LEFT; "
                  f"systemctl is-active {UNIT}; cat {SPOOL}/status.json")
    assert "AGENT-ALIVE" not in r.stdout and "PINS-LEFT" not in r.stdout, r
    assert r.stdout.splitlines()[0] == "inactive", r  # it exited 0, by itself
    status = json.loads(r.stdout.split("\n", 1)[1])
    assert status["state"] == "stopped" and status["guard"]["on"] is False, status
