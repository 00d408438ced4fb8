"""No race: what the LSM hook passed is judged again on the argv the new program received.

bprm_check_security reads argv from the CALLER's memory, after the kernel already copied it
into the new mm (copy_strings runs first).  A second thread that flips the argument between
the two reads can show the LSM hook a harmless string while the program receives a blocked
one.  The exec tracepoint judges the copied argv again and kills it before its first
instruction, with an event whose reason is ``recheck``.

tests/helpers/argv_race.c is built static on this host (the guest has no compiler) and
pushed: the racer forks ITERATIONS children, each execve()s a stand-in named ``rm`` (the same
static file, which only appends its argv to a marker file) while a second thread flips one
byte of ``/tmp/edrfleet-canary-race`` (blocked by the lab canary rule) to ``C`` (harmless).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edrfleet.lab.vm import qemu as vm
from tests.vm.conftest import events, sh

SOURCE = Path(__file__).resolve().parents[1] / "helpers" / "argv_race.c"
DIR = "/tmp/edrfleet-race"
BLOCKED = "/tmp/edrfleet-canary-race"
FLIP_AT = BLOCKED.index("canary")
BENIGN = BLOCKED[:FLIP_AT] + "C" + BLOCKED[FLIP_AT + 1:]
ITERATIONS = int(os.environ.get("EDRFLEET_RACE_ITERATIONS", "1500"))


@pytest.fixture(scope="module")
def racer(guest, tmp_path_factory) -> str:
    """The static racer pushed to the guest, with its stand-in copy named rm; returns the dir."""
    if not shutil.which("gcc") or not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists():
        pytest.skip("needs gcc and a static libc (scripts/setup.sh installs gcc, libc6-dev)")
    out = tmp_path_factory.mktemp("race") / "edr-race"
    subprocess.run(["gcc", "-static", "-O2", "-pthread", "-Wall", "-Werror", "-o", str(out),
                    str(SOURCE)], check=True, capture_output=True)
    r = vm.ssh(guest, f"rm -rf {DIR} && mkdir -p {DIR} && cat > {DIR}/edr-race && "
                      f"chmod 0755 {DIR}/edr-race && cp {DIR}/edr-race {DIR}/rm",
               input=out.read_bytes(), timeout=120)
    assert r.returncode == 0, r.stderr
    return DIR


def standin(guest, arg: str, marker: str):
    return sh(guest, f"EDR_RACE_MARKER={marker} {DIR}/rm -rf {arg}; echo rc=$?; "
                     f"cat {marker} 2>/dev/null || echo never-ran")


def test_the_stand_in_runs_with_the_harmless_arg_and_not_with_the_blocked_one(
        guest, agent, racer):
    r = standin(guest, BENIGN, f"{DIR}/sanity-benign")
    assert "rc=0" in r.stdout and r.stdout.rstrip().endswith(f"\t-rf {BENIGN}"), r
    r = standin(guest, BLOCKED, f"{DIR}/sanity-blocked")
    assert "Operation not permitted" in r.stderr, r
    assert "rc=126" in r.stdout and "never-ran" in r.stdout, r


def race_events(guest, count: int, timeout: float = 120) -> list[dict]:
    """The lab-canary events of the race (the agent writes non-kill events at its next poll)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in events(guest) if e["rule.id"] == "lab-canary"
                 and e["edrfleet.as_executed"] == f"{DIR}/rm"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(2)


def test_a_flipped_argv_never_runs_and_a_recheck_kills_it(guest, agent, racer):
    marker = f"{DIR}/ran"
    sh(guest, f"rm -f {marker}")
    before = len(race_events(guest, 0, timeout=0))
    started = time.monotonic()
    r = sh(guest, f"EDR_RACE_MARKER={marker} {DIR}/edr-race {DIR}/rm {ITERATIONS} "
                  f"{BLOCKED} {FLIP_AT} C", timeout=1800)
    wall = time.monotonic() - started
    assert r.returncode == 0, r
    res = json.loads(r.stdout)
    print(f"race: {res} (wall {wall:.1f} s)")
    assert res["iterations"] == ITERATIONS
    assert res["other"] == 0, res

    # the never-ran property: every program that ran received the harmless argv
    lines = sh(guest, f"cat {marker} 2>/dev/null || true").stdout.splitlines()
    received = [line.split("\t", 1)[1] for line in lines]
    assert len(received) == res["ran"]
    assert set(received) <= {f"-rf {BENIGN}"}, sorted(set(received))

    # every kill and every EPERM is reported, with the argv the deciding stage read
    evs = race_events(guest, before + res["killed"] + res["eperm"])[before:]
    rechecks = [e for e in evs if e["edrfleet.reason"] == "recheck"]
    denied = [e for e in evs if e["edrfleet.stage"] == "lsm"]
    print(f"race: {len(rechecks)} recheck kills, {len(denied)} LSM denials, "
          f"{res['ran']} ran harmless, of {ITERATIONS}")
    assert len(rechecks) == res["killed"] and len(denied) == res["eperm"], (res, len(evs))
    for e in rechecks:
        assert e["event.action"] == "blocked" and e["edrfleet.stage"] == "exec"
        assert e["process.args"] == ["rm", "-rf", BLOCKED]  # what the program received
    for e in denied:
        assert e["process.args"] == ["rm", "-rf", BLOCKED]  # what the LSM hook read
    # the file that was to run, also for a refused exec (whose /proc/PID/exe is the racer)
    assert {e["process.executable"] for e in evs} == {f"{DIR}/rm"}
    st = json.loads(sh(guest, "cat /var/lib/edrfleet/status.json").stdout)
    assert st["events_lost"] == 0
    # the race must really have been run: some children got past the LSM hook with the
    # harmless string while the kernel had copied the blocked one
    assert res["killed"] > 0, f"the race never happened in {ITERATIONS} iterations: {res}"
