#!/usr/bin/env python3
"""An exec storm: of the events the kernel produced, how many reach ``events.jsonl``?

One agent, one policy scoped to a cgroup this script creates, four canary executables (copies
of /bin/true: blocking one harms nothing), each named by one rule:

  storm-block-1     block, run with a 1-byte argument
  storm-block-4000  block, run with a 4 000-byte argument
  storm-log-1       log, 1-byte argument
  storm-log-4000    log, 4 000-byte argument

Phases, one after the other in the same run, each at the machine's maximum exec rate (one
fork+exec+wait loop per CPU, all at once):

  block/1, block/4000, log/1, log/4000   one class alone
  mixed/4000                             the attack: log floods on every CPU but one, blocked
                                         canaries on that one, all with 4 000-byte argv

Produced is what the kernel decided (the exec loops count the blocked children, which die of
SIGKILL; logged children succeed); delivered is what the spool holds for the phase's rule, one
event per exec or, where the agent aggregates a flood, the sum of the events' counts
(``edrfleet.count``).  Lost (counted) is what status.json says the kernel could not hand over,
per class where the agent counts it per class.  Nothing here asserts: it prints ratios.

Usage: .venv/bin/python bench/exec_storm.py [--n 10000] [--phases block/4000,mixed] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

from edrfleet.agent import ecs  # noqa: E402

ARG_SIZES = (1, 4000)
CLASSES = ("block", "log")


@dataclass
class Phase:
    name: str
    cls: str
    size: int
    tag: str = ""  # the mixed phase's canaries are its own
    produced: int = 0
    delivered: int = 0  # execs the spool's events stand for
    records: int = 0  # events in the spool
    summarized: int = 0  # execs in summaries (folded logs, refused blocks), of delivered
    seconds: float = 0.0
    lost_counted: int = 0  # the agent's drop counters grew by this much during the phase

    @property
    def rule(self) -> str:
        """The rule id, and the name of the canary it names."""
        return f"storm-{self.cls}{self.tag}-{self.size}"

    @property
    def rate(self) -> float:
        return self.produced / self.seconds if self.seconds else 0.0


def storm_policy(scope: str, phases: list[Phase]) -> dict[str, Any]:
    rules = [{"id": ph.rule, "description": f"exec storm canary ({ph.cls})", "severity": "low",
              "action": ph.cls, "match": {"executable": [ph.rule]}} for ph in phases]
    return {"version": 1, "mode": "enforce", "scope": {"cgroups": [scope]}, "rules": rules}


def storm(cg: c.Cgroup, loop: Path, jobs: list[tuple[Path, int, int]]) -> tuple[float, list]:
    """Run the exec loops of ``jobs`` (exe, arg bytes, execs) at once; (wall, samples)."""
    t0 = time.monotonic()
    procs = [subprocess.Popen([str(loop), str(n), str(exe), "A" * size],
                              preexec_fn=cg.enter, stdout=subprocess.PIPE, text=True)
             for exe, size, n in jobs]
    samples = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        wall_ns, cpu_ns, failures = out.split()
        samples.append(c.Sample(int(wall_ns) / 1e9, int(cpu_ns) / 1e9, int(failures)))
    return time.monotonic() - t0, samples


class Delivered:
    """Per rule id: (execs the spool's events stand for, events); reads only what is new.
    ``summarized``: per rule id, the execs of those that are summaries."""

    def __init__(self, spool: Path) -> None:
        self.file = spool / "events.jsonl"
        self.offset = 0
        self.by_rule: dict[str, tuple[int, int]] = {}
        self.summarized: dict[str, int] = {}

    def __call__(self) -> dict[str, tuple[int, int]]:
        try:
            with open(self.file, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.by_rule
        data = data[:data.rfind(b"\n") + 1]  # a line being written waits
        self.offset += len(data)
        for line in data.splitlines():
            e = json.loads(line)
            rid = ecs.get(e, ecs.RULE_ID)
            execs, records = self.by_rule.get(rid, (0, 0))
            fields = e.get("edrfleet") or {}
            n = int(fields.get("count", 1))
            self.by_rule[rid] = (execs + n, records + 1)
            if fields.get("summary"):
                self.summarized[rid] = self.summarized.get(rid, 0) + n
        return self.by_rule


def lost_now(st: dict[str, Any], cls: str) -> int:
    """What status.json counts as lost for ``cls`` (per class when the agent splits it)."""
    drops = st.get("drops")
    if isinstance(drops, dict):
        return int(drops.get(cls, 0))
    return int(st.get("events_lost", 0))


def fresh_status(agent: c.Agent, since: float, timeout: float = 120) -> dict[str, Any]:
    """status.json as written after ``since``: the kernel counts a drop when it happens, the
    agent writes its counters once a second, later while it works through a backlog."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            written = (agent.spool / "status.json").stat().st_mtime
        except FileNotFoundError:
            written = 0.0
        if written > since:
            return agent.status()
        time.sleep(0.1)
    raise RuntimeError(f"the agent wrote no status.json for {timeout} s")


def settle_spool(delivered: Delivered, rid: str, want: int, timeout: float) -> None:
    """Wait until the spool holds ``want`` execs of ``rid``, or stops growing for 2 s."""
    deadline = time.monotonic() + timeout
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        have = delivered().get(rid, (0, 0))[0]
        if have >= want:
            return
        if have != last:
            last, still_since = have, time.monotonic()
        elif time.monotonic() - still_since > 2.0:
            return
        time.sleep(0.2)


def run_phase(agent: c.Agent, spooled: Delivered, cg: c.Cgroup, loop: Path, exe_dir: Path,
              ph: Phase, n: int, cpus: int, flood: Phase | None = None) -> None:
    """``ph`` on every CPU; with ``flood``, ``ph`` on one CPU and ``flood`` on the others."""
    plan = [(ph, n)] + [(flood, n)] * max(cpus - 1, 1) if flood else [(ph, n // cpus)] * cpus
    phases = [ph] + ([flood] if flood else [])
    before = {cls: lost_now(fresh_status(agent, time.time()), cls) for cls in CLASSES}
    wall, samples = storm(cg, loop, [(exe_dir / p.rule, p.size, k) for p, k in plan])
    for (phase, execs), s in zip(plan, samples, strict=True):
        phase.produced += s.failures if phase.cls == "block" else execs - s.failures
    for phase in phases:
        phase.seconds = wall
    after = fresh_status(agent, time.time())
    for phase in phases:
        phase.lost_counted = lost_now(after, phase.cls) - before[phase.cls]
    # let the agent catch up before the next phase, so phases do not share its backlog; what
    # is delivered is counted per rule once the agent has stopped (it reads what is left)
    for phase in phases:
        settle_spool(spooled, phase.rule, phase.produced, 60)


def run(args: argparse.Namespace) -> list[Phase]:
    c.preflight()
    workdir = c.make_workdir("edrfleet-bench-storm-")
    cg = c.Cgroup.create()
    agents = c.Agents(workdir)
    cpus = args.cpus or os.cpu_count() or 1
    try:
        loop = c.compile_c(c.EXEC_LOOP_C, "exec_loop", workdir)
        phases = [Phase(f"{cls}/{size}", cls, size) for cls in CLASSES for size in ARG_SIZES]
        mixed_block = Phase("mixed/4000 block", "block", 4000, "-mixed")
        mixed_log = Phase("mixed/4000 log", "log", 4000, "-mixed")
        everything = phases + [mixed_block, mixed_log]
        exe_dir = workdir / "bin"
        exe_dir.mkdir()
        for ph in everything:
            shutil.copy2("/bin/true", exe_dir / ph.rule)
        policy = workdir / "policy.yaml"
        policy.write_text(yaml.safe_dump(storm_policy(cg.name, everything), sort_keys=False))
        c.check_policy(policy)
        # one spool file for the whole run: events.jsonl is what is counted
        agent = agents.start(policy, "storm", "--spool-max-bytes", str(1 << 34))
        spooled = Delivered(agent.spool)
        wanted = set(args.phases.split(",")) if args.phases else None
        ran = [ph for ph in phases if not wanted or ph.name in wanted]
        for ph in ran:
            run_phase(agent, spooled, cg, loop, exe_dir, ph, args.n, cpus)
        if not wanted or "mixed" in wanted:
            run_phase(agent, spooled, cg, loop, exe_dir, mixed_block, args.n // 2, cpus,
                      flood=mixed_log)
            ran += [mixed_block, mixed_log]
        agent.stop()  # it reads what is left in the ring buffers
        got = spooled()
        for ph in ran:
            ph.delivered, ph.records = got.get(ph.rule, (0, 0))
            ph.summarized = spooled.summarized.get(ph.rule, 0)
        return ran
    finally:
        agents.stop_all()
        cg.remove()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def report(phases: list[Phase], args: argparse.Namespace) -> None:
    print(f"exec storm: {args.n} execs per phase, one loop per CPU "
          f"({args.cpus or os.cpu_count()}), policy scoped to the bench's cgroup")
    print(f"{'phase':18} {'produced':>9} {'delivered':>9} {'ratio':>7} {'events':>7} "
          f"{'summarized':>10} {'lost(counted)':>13} {'uncounted':>9} {'execs/s':>8}")
    for ph in phases:
        ratio = ph.delivered / ph.produced if ph.produced else 1.0
        uncounted = ph.produced - ph.delivered - ph.lost_counted
        print(f"{ph.name:18} {ph.produced:9} {ph.delivered:9} {ratio:7.3f} {ph.records:7} "
              f"{ph.summarized:10} {ph.lost_counted:13} {uncounted:9} {ph.rate:8.0f}")
    print("ratio = delivered / produced; delivered counts the execs the events stand for "
          "(edrfleet.count), summarized those in summaries; lost(counted) = growth of "
          "status.json's drop counter of the class (events_lost when the agent does not "
          "split it: shared by the mixed phase's rows)")
    if args.json:
        print(json.dumps([{**asdict(p), "rate": p.rate} for p in phases], indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="execs per phase (10000)")
    ap.add_argument("--phases", default="",
                    help="comma-separated phases to run: block/1, block/4000, log/1, log/4000, "
                         "mixed (default: all)")
    ap.add_argument("--cpus", type=int, default=0, help="exec loops at once (default: CPUs)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (spool)")
    ap.add_argument("--json", action="store_true", help="also print the phases as JSON")
    args = ap.parse_args()
    report(run(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
