"""Kernel tier: the real agent, real BPF programs on this kernel, scoped to a test cgroup.

Every process a test runs under the agent is put in a cgroup the test created, and the agent's
policy is scoped to it, so nothing else on this shared kernel is ever judged.  Commands that
would do harm if blocking failed are never run: canaries are `rm -rf /tmp/edrfleet-canary-*`
and copies of /bin/true under other names.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from edrfleet.agent import ecs
from edrfleet.agent.pinned import pins
from edrfleet.agent.run import cgroup2_root
from tests.tiers import mark_tier

REPO = Path(__file__).resolve().parents[2]
EDRFLEET = [sys.executable, "-m", "edrfleet.cli.main"]


def _kernel_ready() -> str:
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "needs BTF (/sys/kernel/btf/vmlinux)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "needs BCC (python3-bpfcc) in this interpreter"
    return ""


_copies = itertools.count(1)


def harmless_copy(dst: Path | str, src: str = "/bin/true") -> Path:
    """A copy of a harmless program that is byte-identical to no other file, and of a size no
    other copy has: the agent judges a byte-identical copy of a file a rule names as that file
    (content identity), and a fileless exec of that file's size too, so a plain copy of
    /bin/true named by a rule would make /bin/true itself that file.  The appended bytes are
    never loaded (past the ELF's segments)."""
    shutil.copy2(src, dst)
    with open(dst, "ab") as f:
        f.write(uuid.uuid4().bytes + b"\0" * next(_copies))
    return Path(dst)


@pytest.fixture
def canary_binary(tmp_path: Path) -> Path:
    """A harmless copy of /bin/true for rules to name: blocking it harms nothing."""
    return harmless_copy(tmp_path / "canary-bin")


def pytest_collection_modifyitems(config, items):
    mark_tier(items, "tests/kernel", pytest.mark.kernel, _kernel_ready())


@dataclass
class Cgroup:
    path: Path  # absolute directory
    name: str  # path inside the hierarchy, e.g. /edrfleet-test-1a2b

    def enter(self) -> None:
        """preexec_fn: move the child into this cgroup before it execs."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def run(self, argv: Sequence[str] | str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 30)
        return subprocess.run(argv, preexec_fn=self.enter, **kw)


@contextlib.contextmanager
def fresh_cgroup() -> Iterator[Cgroup]:
    """A fresh cgroup of its own, removed afterwards (its last processes may take a moment)."""
    name = f"/edrfleet-test-{uuid.uuid4().hex[:8]}"
    path = cgroup2_root() / name.lstrip("/")
    path.mkdir()
    try:
        yield Cgroup(path, name)
    finally:
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@pytest.fixture
def cgroup() -> Iterator[Cgroup]:
    with fresh_cgroup() as cg:
        yield cg


@pytest.fixture(scope="module")
def mod_cgroup() -> Iterator[Cgroup]:
    """A cgroup for a module whose tests share one agent."""
    with fresh_cgroup() as cg:
        yield cg


def complete_lines(data: bytes) -> list[dict]:
    """The JSON documents of ``data``'s newline-terminated lines; a last line without its
    newline is still being written and is left for the next read."""
    done = data[:data.rfind(b"\n") + 1]
    return [json.loads(line) for line in done.decode().splitlines() if line]


@dataclass
class RunningAgent:
    proc: subprocess.Popen
    spool: Path
    policy: Path

    def status(self) -> dict:
        try:
            return json.loads((self.spool / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def raw_events(self) -> list[dict]:
        """The spool's events as the agent wrote them (nested ECS documents): complete lines
        only, as the agent may be writing the last one while we read."""
        try:
            data = (self.spool / "events.jsonl").read_bytes()
        except FileNotFoundError:
            return []
        return complete_lines(data)

    def events(self) -> list[dict]:
        """The spool's events by ECS dotted field name (``e["rule.id"]``), as a SIEM query
        names them."""
        return [ecs.flatten(e) for e in self.raw_events()]

    def wait_events(self, pred: Callable[[dict], bool], count: int = 1, timeout=5.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if pred(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def wait_state(self, states: set[str], timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st.get("state") in states:
                return st
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise AssertionError(f"agent exited {self.proc.returncode}: {out}")
            time.sleep(0.05)
        raise AssertionError(f"agent never reached {states}: {self.status()}")

    def wait_resident(self, timeout: float = 120.0) -> dict:
        """Enforcing in the resident image (after the hand-over: no BCC, pinned maps)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.wait_state({"enforcing", "monitoring"}, timeout)
            if st.get("pid") == self.proc.pid and st.get("bcc_loaded") is False:
                return st
            time.sleep(0.05)
        raise AssertionError(f"the agent never handed over to its resident image: {st}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def spawn_agent(policy: Path, spool: Path, *extra: str) -> RunningAgent:
    """``edrfleet agent run`` on ``policy`` with ``spool``; not waited for."""
    proc = subprocess.Popen(
        [*EDRFLEET, "agent", "run", "--policy", str(policy), "--spool", str(spool),
         "--host-name", "kernel-test", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return RunningAgent(proc, spool, policy)


@contextlib.contextmanager
def resident_agent(policy_text: str, spool: Path, timeout: float = 120.0
                   ) -> Iterator[RunningAgent]:
    """One agent for a module's tests: ``policy_text`` in force, in the resident image (its
    identity keeper writes the pinned maps); afterwards continued (a stop a failed test left
    behind), stopped and disarmed - enforcement is pinned beyond the agent.  ``timeout``: for
    the start (the default policy compiles for ~30 s of CPU)."""
    policy = spool / "policy.yaml"
    policy.write_text(policy_text)
    agent = spawn_agent(policy, spool)
    try:
        agent.wait_resident(timeout)
        yield agent
    finally:
        if agent.proc.poll() is None:
            os.kill(agent.proc.pid, signal.SIGCONT)
        agent.stop()
        pins.disarm(spool)


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., RunningAgent]]:
    agents: list[RunningAgent] = []

    def start(policy_text: str, *extra: str, wait: bool = True) -> RunningAgent:
        policy = tmp_path / f"policy-{len(agents)}.yaml"
        policy.write_text(policy_text)
        agent = spawn_agent(policy, tmp_path / f"spool-{len(agents)}", *extra)
        agents.append(agent)
        if wait:
            agent.wait_state({"enforcing", "monitoring"})
        return agent

    try:
        yield start
    finally:  # enforcement is pinned beyond the agent: disarm, even when the test failed
        for a in agents:
            a.stop()
            pins.disarm(a.spool)


@pytest.fixture
def canary_dir() -> Iterator[Path]:
    """A directory a blocked `rm -rf` must not delete (if blocking failed, only it goes)."""
    d = Path(f"/tmp/edrfleet-canary-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    (d / "precious").write_text("still here\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def standins(tmp_path: Path) -> Callable[[str], Path]:
    """Copies of /bin/true under any name: executing them is harmless whatever the policy."""
    bindir = tmp_path / "standin-bin"
    bindir.mkdir()

    def make(name: str) -> Path:
        target = bindir / name
        if not target.exists():
            harmless_copy(target)
        return target

    return make
