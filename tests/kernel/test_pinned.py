"""Enforcement outlives the agent: kill loops, adopt, disarm, a reload that needs a new
program, all while an attack loop runs.  Every test disarms what it pinned, even on failure."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edrfleet.agent.pinned import bpfsys, pins, tamper
from edrfleet.agent.pinned.ringbuf import ring_rss_kib
from tests.kernel.conftest import EDRFLEET, REPO, RunningAgent

POLICY = """\
version: 1
mode: enforce
scope: {{cgroups: [{cgroup}]}}
rules:
  - id: pin-canary
    description: a stand-in that must never run
    severity: high
    action: block
    match:
      executable: [edr-pin-canary]
{extra}"""

USER_RULE = """\
  - id: pin-user
    description: needs the uid matcher, which the first program was built without
    severity: low
    action: log
    match:
      executable: [edr-pin-other]
      user: [root]
"""


class Attacks:
    """Runs the canary in the test cgroup over and over until stopped; counts what ran."""

    def __init__(self, cgroup, canary: Path) -> None:
        self.cgroup, self.canary = cgroup, canary
        self.ran = self.blocked = 0
        self.cond = threading.Condition()
        self.done = False
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.done:
            rc = self.cgroup.run([str(self.canary)]).returncode
            with self.cond:
                if rc == 0:
                    self.ran += 1
                elif rc in (-9, 137):
                    self.blocked += 1
                self.cond.notify_all()

    def wait_blocked(self, more: int, timeout: float = 30.0) -> None:
        with self.cond:
            target = self.blocked + more
            assert self.cond.wait_for(lambda: self.blocked >= target, timeout), self.blocked

    def __enter__(self) -> Attacks:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done = True
        self.thread.join(timeout=30)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    s = tmp_path / "spool"
    try:
        yield s
    finally:
        pins.disarm(s)  # stops a live agent of this spool, unpins everything of it
        assert not os.path.exists(pins.instance_dir(s))


def start(policy: Path, spool: Path) -> RunningAgent:
    proc = subprocess.Popen(
        [*EDRFLEET, "agent", "run", "--policy", str(policy), "--spool", str(spool),
         "--host-name", "kernel-test"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    agent = RunningAgent(proc, spool, policy)
    for _ in range(300):  # a killed agent's status.json still says "enforcing": wait for ours,
        st = agent.wait_state({"enforcing", "monitoring"})  # and for the resident (no BCC)
        if st.get("pid") == proc.pid and st.get("bcc_loaded") is False:
            return agent
        time.sleep(0.05)
    raise AssertionError(f"the agent never wrote its status: {agent.status()}")


def killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in (-9, 137)


def test_kill_loop_leaves_no_gap_and_loses_no_block(tmp_path, spool, cgroup, standins):
    canary = standins("edr-pin-canary")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(cgroup=cgroup.name, extra=""))
    agent = start(policy, spool)
    pdir = agent.status()["pinned"]
    with Attacks(cgroup, canary) as attacks:
        attacks.wait_blocked(3)
        dead = 0
        adopt_seconds = []
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM):
            agent.proc.send_signal(sig)
            agent.proc.wait(timeout=30)
            before = attacks.blocked
            attacks.wait_blocked(5)  # made while no agent ran: they wait in the ring buffer
            agent = start(policy, spool)
            dead += attacks.blocked - before
            st = agent.status()
            assert st["pinned"] == pdir and st.get("adopted"), st
            adopt_seconds.append(st["start_seconds"])
            attacks.wait_blocked(3)
    assert attacks.ran == 0
    print(f"kill loop: 4 kills (-9, -TERM), {attacks.blocked} canaries blocked, "
          f"{attacks.ran} ran, {dead} blocked while no agent ran; adopting starts took "
          f"{adopt_seconds} s")
    found = agent.wait_events(lambda e: e.get("rule.id") == "pin-canary",
                              count=attacks.blocked, timeout=10)
    # the ring buffer's consumer position moves only after the spool write: none may be lost
    by_rule: dict[str, int] = {}
    for e in agent.events():
        by_rule[e.get("rule.id", "")] = by_rule.get(e.get("rule.id", ""), 0) + 1
    assert len(found) >= attacks.blocked, (len(found), attacks.blocked, by_rule)
    agent.stop()


def test_reload_that_needs_a_new_program_opens_no_gap(tmp_path, spool, cgroup, standins):
    canary = standins("edr-pin-canary")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(cgroup=cgroup.name, extra=""))
    agent = start(policy, spool)
    first = agent.status()["pinned"]
    with Attacks(cgroup, canary) as attacks:
        attacks.wait_blocked(3)
        policy.write_text(POLICY.format(cgroup=cgroup.name, extra=USER_RULE))
        agent.proc.send_signal(signal.SIGHUP)
        st = agent.wait_state({"enforcing"})
        for _ in range(600):
            st = agent.status()
            if st.get("pinned") != first and st.get("rules") == 2:
                break
            attacks.wait_blocked(1)
        assert st["pinned"] != first and st["rules"] == 2, (st.get("last_error"), st)
        assert not os.path.exists(first)  # the old program went only after the new one
        attacks.wait_blocked(3)
        # a restart on a new release would do the same: here the new program is adopted
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(timeout=30)
        agent = start(policy, spool)
        assert agent.status()["pinned"] == st["pinned"]
        attacks.wait_blocked(3)
    assert attacks.ran == 0
    agent.stop()


def test_the_resident_agent_holds_no_bcc_and_little_memory(tmp_path, spool, cgroup):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(cgroup=cgroup.name, extra=""))
    agent = start(policy, spool)  # waits for bcc_loaded false: the hand-over happened
    maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
    assert "libbcc" not in maps and "LLVM" not in maps
    rss = next(int(line.split()[1]) for line in
               Path(f"/proc/{agent.proc.pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    # an idle agent maps only the rings' consumer and producer pages, not their data areas
    rings = ring_rss_kib(agent.proc.pid)
    assert 0 < rings <= 4 * 2 * 4, f"{rings} kB of ring buffer pages resident"
    assert rss < 40 * 1024, f"{rss} kB resident, {rings} kB of it the ring buffers"
    agent.stop()


def test_disarm_ends_enforcement_of_a_killed_agent(tmp_path, spool, cgroup, standins):
    canary = standins("edr-pin-canary")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(cgroup=cgroup.name, extra=""))
    agent = start(policy, spool)
    # no BPF LSM on this kernel: no self-protection either (bpf/guard.c), and status says why
    guard = agent.status()["guard"]
    assert guard["on"] is False and guard["why"].startswith("backend sigkill: "), guard
    assert "LSM" in guard["why"] or "lsm" in guard["why"], guard
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=30)
    assert cgroup.run([str(canary)]).returncode in (-9, 137)
    out = subprocess.run([*EDRFLEET, "agent", "disarm", "--spool", str(spool),
                          "--run-dir", str(tmp_path / "run")],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "disarmed" in out.stdout, out
    assert cgroup.run([str(canary)]).returncode == 0
    assert not (spool / pins.MANIFEST).exists()


def _u32(b: bytes) -> int:
    return int.from_bytes(b[:4], "little")


def test_a_bpftool_edit_of_the_mode_is_restored_and_reported(tmp_path, spool, cgroup,
                                                              standins):
    canary = standins("edr-pin-canary")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(cgroup=cgroup.name, extra=""))
    agent = start(policy, spool)
    pdir = agent.status()["pinned"]
    assert killed(cgroup.run([str(canary)]))
    fd = bpfsys.obj_get(f"{pdir}/map_config")
    try:
        info = bpfsys.map_info(fd)
        slot = _u32(bpfsys.map_lookup(bpfsys.obj_get(f"{pdir}/map_active"), bytes(4), 4))
        key = slot.to_bytes(4, "little")
        value = bytearray(bpfsys.map_lookup(fd, key, info["value_size"]))
        assert _u32(value) != 0
        value[0:4] = bytes(4)  # mode = 0: nothing judged, nothing blocked
        t0 = time.monotonic()
        edit = subprocess.run(["bpftool", "map", "update", "pinned", f"{pdir}/map_config",
                               "key", "hex", *(f"{b:02x}" for b in key),
                               "value", "hex", *(f"{b:02x}" for b in value)],
                              capture_output=True, text=True, timeout=30)
        assert edit.returncode == 0, edit.stderr
        assert _u32(bpfsys.map_lookup(fd, key, info["value_size"])) == 0  # the edit landed
        while _u32(bpfsys.map_lookup(fd, key, info["value_size"])) == 0:
            assert time.monotonic() - t0 < 3 * tamper.CHECK_EVERY, "never restored"
            time.sleep(0.01)
        restored = time.monotonic() - t0
    finally:
        os.close(fd)
    assert killed(cgroup.run([str(canary)]))
    found = agent.wait_events(lambda e: e.get("event.action") == "tampered")
    assert found and "config[" in found[0]["message"] and "mode 0" in found[0]["message"]
    st = agent.wait_state({"enforcing"})
    assert st.get("tampered", {}).get("count", 0) >= 1
    print(f"tamper restored in {restored * 1000:.0f} ms (check period "
          f"{tamper.CHECK_EVERY * 1000:.0f} ms)")
    # the prog arrays are frozen: no tail-call target can be swapped through bpf(2)
    progs = bpfsys.obj_get(f"{pdir}/map_progs")
    try:
        with pytest.raises(OSError):
            bpfsys.map_delete(progs, bytes(4))
    finally:
        os.close(progs)
    agent.stop()


def test_an_edit_of_a_map_read_in_turn_is_restored_within_its_bound(tmp_path, spool, cgroup,
                                                                    standins):
    """``rules`` (2 048 entries) is too big to read at every check: it is read in turn with
    the other big maps, so an edit stays at most CHECK_EVERY * (1 + maps in turn)."""
    canary = standins("edr-pin-canary")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(cgroup=cgroup.name, extra=""))
    agent = start(policy, spool)
    pdir = agent.status()["pinned"]
    fds = {n: bpfsys.obj_get(f"{pdir}/map_{n}") for n in tamper.POLICY_MAPS
           if os.path.exists(f"{pdir}/map_{n}")}
    try:
        guard = tamper.Guard(fds)
        guard.arm()
        in_turn = guard.in_turn()
        assert "rules" in in_turn, in_turn
        bound = tamper.CHECK_EVERY * (1 + len(in_turn))
        fd, size = fds["rules"], guard.maps["rules"][1]["value_size"]
        keys = bpfsys.map_keys(fd, 4)
        before = {k: bpfsys.map_lookup(fd, k, size) for k in keys}
        used = [k for k, v in before.items() if any(v)]
        assert used
        t0 = time.monotonic()
        for k in used:  # every rule of both slots emptied: nothing would match any more
            bpfsys.map_update(fd, k, bytes(size))
        while any(bpfsys.map_lookup(fd, k, size) != before[k] for k in used):
            assert time.monotonic() - t0 < bound + 1.0, f"not restored within {bound} s"
            time.sleep(0.01)
        restored = time.monotonic() - t0
    finally:
        for fd in fds.values():
            os.close(fd)
    assert killed(cgroup.run([str(canary)]))
    found = agent.wait_events(lambda e: e.get("event.action") == "tampered")
    assert found and "rules[" in found[0]["message"]
    print(f"rules restored in {restored * 1000:.0f} ms (bound {bound:.0f} s: {in_turn} in turn)")
    agent.stop()
