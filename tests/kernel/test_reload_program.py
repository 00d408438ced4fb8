"""A reload whose policy needs a new program (new context matchers): swapped in with no moment
unenforced, and one whose new program fails keeps the old one in force.

The attack loop is a shell in the test's cgroup running a blocked canary (a copy of /bin/true)
over and over while the agent compiles, attaches and pins the new program, retires the old one
and hands over to its resident image: every run must be killed.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.kernel.conftest import complete_lines, harmless_copy

POLICY = """\
version: 1
scope:
  cgroups: [{cgroup}]
rules:
  - id: canary
    description: the attack the loop keeps trying
    severity: high
    action: block
    match:
      executable: [{canary}]
"""
NEEDS_A_PROGRAM = """\
  - id: under-shell
    description: a parent matcher, compiled out of the first program
    severity: high
    action: block
    match:
      executable: [{second}]
      parent: {{executable: [{shell}]}}
"""
LOOP = 'while [ ! -e "$1" ]; do "$2"; echo "rc=$?"; done'


class AttackLoop:
    """The canary run over and over in the cgroup until stopped; each run's status counted."""

    def __init__(self, cgroup, shell: Path, canary: Path, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:6]
        self.stop_file, self.out = tmp / f"stop-{tag}", tmp / f"loop-{tag}.out"
        with open(self.out, "w") as out:  # a file: a pipe full would stop the loop
            self.proc = subprocess.Popen([str(shell), "-c", LOOP, "loop", str(self.stop_file),
                                          str(canary)], preexec_fn=cgroup.enter, stdout=out,
                                         stderr=subprocess.DEVNULL)

    def finish(self) -> dict[str, int]:
        self.stop_file.touch()
        self.proc.wait(timeout=30)
        counts: dict[str, int] = {}
        for line in self.out.read_text().split():
            counts[line] = counts.get(line, 0) + 1
        return counts


@pytest.fixture
def setup(start_agent, cgroup, tmp_path):
    tag = uuid.uuid4().hex[:6]
    canary, second = tmp_path / f"edrreload-canary-{tag}", tmp_path / f"edrreload-2-{tag}"
    shell = tmp_path / f"edrreload-sh-{tag}"
    harmless_copy(canary)
    harmless_copy(second)
    harmless_copy(shell, "/bin/dash")
    first = POLICY.format(cgroup=cgroup.name, canary=canary.name)
    bigger = first + NEEDS_A_PROGRAM.format(second=second.name, shell=shell.name)

    def start():
        agent = start_agent(first)
        return agent, agent.wait_resident()

    return start, first, bigger, canary, second, shell


def wait_for(pred, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def under_shell(cgroup, shell: Path, exe: Path) -> str:
    return cgroup.run([str(shell), "-c", f"{exe}; echo rc=$?"], text=True).stdout.strip()


def test_a_reload_that_swaps_the_program_leaves_no_moment_unenforced(setup, cgroup, tmp_path):
    start, first, bigger, canary, second, shell = setup
    agent, before = start()
    assert before["generation"] == 1  # the hand-over to the resident image is no new policy
    loop = AttackLoop(cgroup, shell, canary, tmp_path)
    try:
        agent.policy.write_text(bigger)
        agent.proc.send_signal(signal.SIGHUP)
        t0 = time.monotonic()
        swapped = wait_for(lambda: (agent.status().get("generation") == 2
                                    and agent.status().get("bcc_loaded") is False
                                    or agent.status().get("last_reload", {}).get("ok") is False))
        took = time.monotonic() - t0
        ran_after = agent.status()
    finally:
        counts = loop.finish()
    assert swapped, ran_after
    print(f"program swap under an attack loop: {counts} (rc=137: killed) in the {took:.1f} s "
          "from SIGHUP to the resident image on the new program")
    assert ran_after["pinned"] != before["pinned"]  # a new program, in force, resident again
    assert ran_after["last_reload"]["ok"] is True
    assert counts.get("rc=0", 0) == 0, counts  # not one canary ran during the whole swap
    assert counts.get("rc=137", 0) >= 50, counts
    assert under_shell(cgroup, shell, second) == "rc=137"  # the new matcher is in force
    assert cgroup.run([str(second)]).returncode == 0  # ... and only under that shell
    assert agent.proc.pid == ran_after["pid"]


@pytest.mark.parametrize("step", ["compile", "attach"])
def test_a_new_program_that_fails_keeps_the_old_one_in_force(setup, cgroup, tmp_path,
                                                             monkeypatch, step):
    monkeypatch.setenv("EDRFLEET_TEST_FAIL_RELOAD", step)
    start, first, bigger, canary, second, shell = setup
    agent, before = start()
    loop = AttackLoop(cgroup, shell, canary, tmp_path)
    try:
        agent.policy.write_text(bigger)
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "last_reload" in agent.status()), agent.status()
        # "attach": BCC was loaded for the new program; the agent sheds it again
        after = agent.wait_resident()
    finally:
        counts = loop.finish()
    assert after["last_reload"]["ok"] is False
    assert f"new program: {step}: forced" in after["last_reload"]["error"], after
    assert after["last_error"].startswith("reload: new program:")
    for key in ("generation", "policy_sha256", "rules", "pinned"):
        assert after[key] == before[key], key
    assert agent.proc.poll() is None and after["pid"] == agent.proc.pid
    print(f"new program failing at {step} under an attack loop: {counts}")
    assert counts.get("rc=0", 0) == 0 and counts.get("rc=137", 0) >= 1, counts
    assert under_shell(cgroup, shell, second) == "rc=0"  # the failed policy is not in force
    # the agent goes on: a reload that fits the program in force is put in force
    agent.policy.write_text(first.replace("severity: high", "severity: low"))
    agent.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: agent.status().get("generation") == 2, 30), agent.status()
    assert agent.status()["last_reload"]["ok"] is True
    assert cgroup.run([str(canary)]).returncode == -9


def test_a_half_written_last_line_is_left_for_the_next_read():
    assert complete_lines(b'{"a": 1}\n{"b": 2}\n{"c"') == [{"a": 1}, {"b": 2}]
    assert complete_lines(b'{"a": 1}\n') == [{"a": 1}]
    assert complete_lines(b'{"a": "\xc3') == []  # cut inside a UTF-8 character too
