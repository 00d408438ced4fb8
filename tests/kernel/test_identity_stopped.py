"""A stopped or dead agent holds nothing and opens nothing (issue 11): the kernel judges a file
it does not know by its inode by its size (bpf/identity.c), and the identity keeper reads
fanotify notifications after the fact, so no exec ever waits for it.

With the agent SIGSTOPped, a binary never seen before runs at once (a bounded wait: the child
has a timeout, the agent is always continued); a fresh copy of a protected file made while the
agent is stopped, or after it was SIGKILLed (the pinned program enforces on), is blocked; a
binary of another size runs.  One agent serves the module (one compile), scoped to its cgroup;
the kill test is the module's last.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.conftest import Cgroup, RunningAgent, resident_agent
from tests.kernel.test_identity_current import MARK, POLICY, unique_binary, wait_status

WAIT = 5.0  # an exec that waited for the agent would take until the child's timeout


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("identity-stopped")
    unique_binary(d / "prot")
    return d


@pytest.fixture(scope="module")
def agent(home: Path, mod_cgroup: Cgroup, tmp_path_factory) -> Iterator[RunningAgent]:
    with resident_agent(POLICY.format(cgroup=mod_cgroup.name, d=home, mark=MARK),
                        tmp_path_factory.mktemp("spool")) as running:
        yield running


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A directory on another filesystem (tmpfs) than the protected file's."""
    d = Path("/dev/shm") / f"edrfleet-test-{os.getpid()}-{time.monotonic_ns()}"
    d.mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_timed(cgroup: Cgroup, exe: Path, *args: str) -> tuple[bool, float]:
    """(ran to its end, seconds); never more than WAIT: an exec held by a stopped agent would
    raise TimeoutExpired here, failing the test instead of hanging the suite."""
    t0 = time.monotonic()
    try:
        ok = cgroup.run([str(exe), *args], timeout=WAIT).returncode == 0
    except PermissionError:
        ok = False
    return ok, time.monotonic() - t0


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def test_a_same_size_file_is_judged_by_size_and_reported(agent, home, mod_cgroup, tmp_path):
    """The heuristic's cost, shown: another program of exactly the protected size is judged by
    the protected file's rules (its argv must match them); the keeper counts it."""
    namesake = tmp_path / "namesake"
    namesake.write_bytes((home / "prot").read_bytes()[:-16] + b"x" * 16)
    namesake.chmod(0o755)
    assert run_timed(mod_cgroup, namesake, "harmless")[0]
    assert not run_timed(mod_cgroup, namesake, MARK)[0]
    assert wait_status(agent, lambda st: st["identities"]["size_only"] >= 1)


def test_a_stopped_agent_holds_no_exec_and_a_copy_made_meanwhile_is_blocked(
        agent, home, mod_cgroup, tmp_path, shm_dir):
    os.kill(agent.proc.pid, signal.SIGSTOP)
    try:
        for fresh in (unique_binary(tmp_path / "fresh", blocks=11),
                      unique_binary(shm_dir / "fresh", blocks=12)):
            ok, took = run_timed(mod_cgroup, fresh, MARK)  # never classified: runs at once
            assert ok and took < WAIT
        for copy in (copy_of(home / "prot", tmp_path / "copy-while-stopped"),
                     copy_of(home / "prot", shm_dir / "copy-while-stopped")):
            ok, took = run_timed(mod_cgroup, copy, MARK)
            assert not ok and took < WAIT
            assert run_timed(mod_cgroup, copy, "harmless")[0]  # its rule's argv decides
        other = unique_binary(tmp_path / "other", blocks=9)  # another size: another program
        assert run_timed(mod_cgroup, other, MARK)[0]
    finally:
        os.kill(agent.proc.pid, signal.SIGCONT)
    # continued, the agent reads what it missed and saw the blocks
    assert agent.wait_events(lambda e: e["event.action"] == "blocked"
                             and "copy-while-stopped" in e["process.executable"], count=2)


def test_a_killed_agent_leaves_copies_blocked(agent, home, mod_cgroup, tmp_path, shm_dir):
    """Last in the module: the agent does not come back."""
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=30)
    for copy in (copy_of(home / "prot", tmp_path / "copy-after-kill"),
                 copy_of(home / "prot", shm_dir / "copy-after-kill")):
        assert not run_timed(mod_cgroup, copy, MARK)[0]
    fresh = unique_binary(tmp_path / "fresh-after-kill", blocks=13)
    assert run_timed(mod_cgroup, fresh, MARK)[0]
