"""An exec storm hides no block: blocked canaries with 4 000-byte argv while another CPU floods
logged execs with the same argv.  Every block is in events.jsonl; every logged exec is in an
event's count (folded under the flood) or counted as dropped, exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path

POLICY = """\
version: 1
mode: enforce
scope:
  cgroups: [{cgroup}]
rules:
  - id: storm-victim
    description: a canary the storm must not hide
    severity: critical
    action: block
    match:
      executable: [edr-storm-victim, rm]
      args:
        - glob: "/tmp/edrfleet-canary-*"
  - id: storm-flood
    description: logged by the thousand
    severity: low
    action: log
    match:
      executable: [edr-storm-flood]
"""
BLOCKS = 1500  # canaries blocked
LOGS = 3000  # logged execs flooding beside them
PAD = "A" * 4000
LOOP = 'i=0; while [ $i -lt "$1" ]; do "$2" "$3" "$4"; i=$((i+1)); done'


def small_block_ring(tmp_path: Path, monkeypatch, pages: int) -> None:
    """The agents this test starts build the program from a copy of bpf/ whose block ring
    buffer has ``pages`` pages."""
    import shutil

    from edrfleet.paths import BPF

    small = tmp_path / "bpf"
    shutil.copytree(BPF, small)
    header = small / "edrfleet.h"
    text = header.read_text()
    assert "#define EDR_RINGBUF_BLOCK_PAGES 4096" in text
    header.write_text(text.replace("#define EDR_RINGBUF_BLOCK_PAGES 4096",
                                   f"#define EDR_RINGBUF_BLOCK_PAGES {pages}"))
    monkeypatch.setenv("EDRFLEET_BPF_DIR", str(small))


def test_a_log_flood_hides_no_block_and_every_logged_exec_is_counted(
        start_agent, cgroup, standins, canary_dir: Path):
    agent = start_agent(POLICY.format(cgroup=cgroup.name))
    victim, flood = str(standins("edr-storm-victim")), str(standins("edr-storm-flood"))
    storms = [subprocess.Popen(["sh", "-c", LOOP, "storm", str(n), exe, arg, PAD],
                               preexec_fn=cgroup.enter, stderr=subprocess.DEVNULL)
              for n, exe, arg in ((BLOCKS, victim, str(canary_dir)), (LOGS, flood, "flood"))]
    for p in storms:
        assert p.wait(timeout=120) == 0
    # the real thing, once, amid the storm's leftovers: rm -rf of the canary with a long argv
    assert cgroup.run(["rm", "-rf", str(canary_dir), PAD]).returncode == -9
    assert (canary_dir / "precious").exists()
    assert agent.stop() == 0  # reads what is left, sums up the last folded execs

    st = agent.status()
    events = agent.events()
    blocks = [e for e in events if e["rule.id"] == "storm-victim"]
    logs = [e for e in events if e["rule.id"] == "storm-flood"]
    assert st["blocked"] == BLOCKS + 1 and st["drops"]["block"] == 0
    assert len(blocks) == BLOCKS + 1  # 100 % of the block events
    assert all(e["edrfleet.count"] == 1 for e in blocks)
    assert st["logged"] == LOGS
    assert sum(e["edrfleet.count"] for e in logs) + st["drops"]["log"] == LOGS  # exactly
    assert st["log_folded"] > 0 and len(logs) < LOGS  # the flood was folded, not sent whole
    assert any(e.get("edrfleet.summary") for e in logs) or \
        any(e["edrfleet.count"] > 1 for e in logs)


def test_block_events_a_full_ring_buffer_refuses_are_summarized_with_their_count(
        start_agent, cgroup, standins, tmp_path: Path, monkeypatch):
    """A block ring buffer of two pages holds one 4 000-byte event: with no agent running
    (killed; the pinned program enforces on), the other blocks are refused, counted under
    their rule and executable, and summarized by the next agent, which adopts the program."""
    import signal

    from tests.kernel.conftest import EDRFLEET, REPO, RunningAgent

    small_block_ring(tmp_path, monkeypatch, pages=2)
    first = start_agent(POLICY.format(cgroup=cgroup.name))
    first.wait_resident()
    victim = str(standins("edr-storm-victim"))
    first.proc.send_signal(signal.SIGKILL)  # nobody reads: the ring buffer fills
    first.proc.wait(timeout=30)
    for _ in range(20):
        assert cgroup.run([victim, "/tmp/edrfleet-canary-none", PAD]).returncode == -9
    proc = subprocess.Popen(
        [*EDRFLEET, "agent", "run", "--policy", str(first.policy), "--spool", str(first.spool),
         "--host-name", "kernel-test"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    agent = RunningAgent(proc, first.spool, first.policy)
    try:
        agent.wait_resident()
    finally:
        assert agent.stop() == 0  # the fixture disarms the spool

    st = agent.status()
    blocks = [e for e in agent.events() if e["rule.id"] == "storm-victim"]
    summaries = [e for e in blocks if e.get("edrfleet.summary")]
    assert st["blocked"] == 20 and len(blocks) < 20
    assert sum(e["edrfleet.count"] for e in blocks) == 20  # each block: an event or a count
    assert st["blocks_summarized"] == sum(e["edrfleet.count"] for e in summaries) > 0
    assert st["drops"]["block"] == 0
    assert summaries[0]["process.name"] == "edr-storm-victim"


def test_records_that_wrap_a_small_ring_buffer_arrive_whole(
        start_agent, cgroup, standins, tmp_path: Path, monkeypatch):
    """The agent maps only the pages it reads, through the data area's second copy when a
    record wraps.  A block ring of four pages wraps every few events; the agent is stopped
    while three are made, so one read runs across the end of the data area; argv lengths that
    differ by 13 bytes put record boundaries at every offset.  Each event arrives with its
    argument intact, in order, or is counted in a summary when the ring was full."""
    import signal

    small_block_ring(tmp_path, monkeypatch, pages=4)
    agent = start_agent(POLICY.format(cgroup=cgroup.name))
    agent.wait_resident()
    victim = str(standins("edr-storm-victim"))
    pads = ["B" * (500 + 13 * n) for n in range(120)]
    for three in range(0, len(pads), 3):
        agent.proc.send_signal(signal.SIGSTOP)  # harmless: the kernel goes on blocking
        try:
            for pad in pads[three:three + 3]:
                assert cgroup.run([victim, "/tmp/edrfleet-canary-none", pad]).returncode == -9
        finally:
            agent.proc.send_signal(signal.SIGCONT)
        last = pads[three:three + 3][-1]  # read before the next stop (unless it was refused)
        agent.wait_events(lambda e, last=last: e.get("process.args", [""])[-1] == last,
                          timeout=3)
        assert agent.proc.poll() is None, "the agent died reading the ring"
    assert agent.stop() == 0

    st = agent.status()
    blocks = [e for e in agent.events() if e["rule.id"] == "storm-victim"]
    whole = [e for e in blocks if not e.get("edrfleet.summary")]
    assert st["blocked"] == len(pads)
    assert sum(e["edrfleet.count"] for e in blocks) == len(pads)  # an event or a count each
    assert len(whole) > len(pads) // 2, "most rounds of three fit the ring"
    seen = [e["process.args"][-1] for e in whole]
    assert all(arg in pads for arg in seen), "a record was read across the wrap garbled"
    assert seen == [p for p in pads if p in set(seen)], "records arrive in order"
