"""Backend sigkill under an argv-flipping thread: the decision is on the argv the program got.

The same racer as tests/vm/test_lsm_race.py (tests/helpers/argv_race.c): each child execve()s a
stand-in named rm while a second thread flips one byte of its argument between a blocked and a
harmless string.  Here only sched_process_exec decides, on the argv already copied into the
new mm, so there is nothing to race: every child whose copy holds the blocked string is
killed before it runs, every other one runs, and the stand-in's marker file (what each program
that ran really received) never shows the blocked argv.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "helpers" / "argv_race.c"
ITERATIONS = 600


@pytest.fixture
def racer(tmp_path: Path) -> Path:
    if not shutil.which("gcc") or not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists():
        pytest.skip("needs gcc and a static libc (scripts/setup.sh installs gcc, libc6-dev)")
    out = tmp_path / "edr-race"
    subprocess.run(["gcc", "-static", "-O2", "-pthread", "-Wall", "-Werror", "-o", str(out),
                    str(SOURCE)], check=True, capture_output=True)
    shutil.copy2(out, tmp_path / "rm")
    return out


def test_a_flipping_argv_is_judged_on_the_copy_the_program_received(
        start_agent, cgroup, racer, canary_dir, tmp_path):
    blocked = str(canary_dir)
    flip_at = blocked.index("canary")
    benign = blocked[:flip_at] + "C" + blocked[flip_at + 1:]
    agent = start_agent(f"""\
version: 1
mode: enforce
scope:
  cgroups: [{cgroup.name}]
rules:
  - id: race-canary
    description: the rm stand-in on a canary directory
    severity: critical
    action: block
    match:
      executable: [rm]
      args:
        - any: [-rf]
        - glob: "/tmp/edrfleet-canary-*"
""")
    marker = tmp_path / "ran"
    res = cgroup.run([str(racer), str(tmp_path / "rm"), str(ITERATIONS), blocked, str(flip_at),
                      "C"], env={"EDR_RACE_MARKER": str(marker)}, timeout=300, text=True)
    assert res.returncode == 0, res
    counts = json.loads(res.stdout)
    print(f"race (sigkill): {counts}")
    assert counts["other"] == 0 and counts["eperm"] == 0, counts
    received = [line.split("\t", 1)[1] for line in marker.read_text().splitlines()]
    assert len(received) == counts["ran"]
    assert set(received) <= {f"-rf {benign}"}, sorted(set(received))
    evs = agent.wait_events(lambda e: e["rule.id"] == "race-canary", count=counts["killed"],
                            timeout=20)
    assert len(evs) == counts["killed"]
    assert all(e["process.args"] == ["rm", "-rf", blocked] and e["edrfleet.reason"] == "rule"
               for e in evs)
    # both strings really reached the kernel's copy: the flip raced the exec
    assert counts["killed"] > 0 and counts["ran"] > 0, counts
    assert canary_dir.exists()
