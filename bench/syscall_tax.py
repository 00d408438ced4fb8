#!/usr/bin/env python3
"""The syscall tax: does a running agent slow down a syscall-bound program that never execs?

The agent attaches only to sched:sched_process_exec, so a loop of one-byte reads should not
notice it (README, "How it blocks"; a syscalls:sys_enter_* tracepoint would put every
syscall of every process on the slow path).  Workload, run inside a cgroup this script creates
(the agent's default policy is scoped to it):

  dd    dd if=/dev/zero of=/dev/null bs=1 count=N   (N reads + N writes; default)
  read  a C loop of N one-byte read(2)s of /dev/zero (times itself)

Without and with the agent alternate in one run: each alternation runs --runs workloads with no
agent and --runs with the agent (started for them, stopped after; the order flips every
alternation so drift cancels).  Medians of wall and CPU time, their ratio; target <= 1.01.
Never asserts timing.

Usage: .venv/bin/python bench/syscall_tax.py [--count 1000000] [--alternations 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

TARGET = 1.01


def run(args: argparse.Namespace) -> dict[str, Any]:
    c.preflight()
    workdir = c.make_workdir("edrfleet-bench-syscall-")
    cg = c.Cgroup.create()
    agents = c.Agents(workdir)
    stats = None
    try:
        stats = c.bpf_stats_or_none(args.bpf_stats)
        policy = workdir / "default.yaml"
        policy.write_text(c.render_default_policy([cg.name]))
        check = c.check_policy(policy)
        if args.workload == "read":
            loop = c.compile_c(c.READ_LOOP_C, "read_loop", workdir)
            argv = [str(loop), str(args.count)]

            def workload() -> c.Sample:
                return c.timed_loop(cg, argv)
        else:
            argv = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={args.count}"]

            def workload() -> c.Sample:
                return c.timed_command(cg, argv)

        samples: dict[str, list[c.Sample]] = {"without": [], "with": []}
        pair_ratios: list[float] = []
        pair_cpu_ratios: list[float] = []
        busy: dict[str, list[float]] = {"without": [], "with": []}
        start_seconds: list[float] = []
        to_enforcing: list[float] = []
        bpf_runs = 0
        bpf_ns = 0
        other_seen: set[int] = set()
        attached: set[str] = set()

        def measure(state: str) -> list[c.Sample]:
            out = []
            for _ in range(args.runs):
                c.settle(args.settle, args.max_busy, args.idle_timeout)
                other_seen.update(set(c.other_agents()) - {a.proc.pid for a in agents.started})
                b0 = c.cpu_times()
                out.append(workload())
                b1 = c.cpu_times()
                busy[state].append((b1[0] - b0[0]) / max(b1[1] - b0[1], 1))
            samples[state].extend(out)
            return out

        for alt in range(args.alternations):
            order = ("without", "with") if alt % 2 == 0 else ("with", "without")
            got: dict[str, list[c.Sample]] = {}
            for state in order:
                if state == "without":
                    got[state] = measure(state)
                    continue
                agent = agents.start(policy, "default")
                start_seconds.append(float(agent.status()["start_seconds"]))
                to_enforcing.append(agent.enforcing_after or 0.0)
                try:
                    attached.update(c.attachments(agent.proc.pid))
                    ns0, runs0 = c.prog_stats(agent.proc.pid)
                    got[state] = measure(state)
                    ns1, runs1 = c.prog_stats(agent.proc.pid)
                    bpf_ns += ns1 - ns0
                    bpf_runs += runs1 - runs0
                finally:
                    agent.stop()
            pair_ratios.append(statistics.median(s.wall for s in got["with"])
                               / statistics.median(s.wall for s in got["without"]))
            pair_cpu_ratios.append(statistics.median(s.cpu for s in got["with"])
                                   / statistics.median(s.cpu for s in got["without"]))
            print(f"alternation {alt + 1}/{args.alternations}: wall ratio "
                  f"{pair_ratios[-1]:.3f}", file=sys.stderr, flush=True)

        return report(args, samples, pair_ratios, pair_cpu_ratios, busy, start_seconds,
                      to_enforcing, bpf_runs, bpf_ns, check, sorted(other_seen),
                      stats is not None, sorted(attached))
    finally:
        if stats:
            stats.close()
        agents.stop_all()
        cg.remove()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)


def report(args: argparse.Namespace, samples: dict[str, list[c.Sample]],
           pair_ratios: list[float], pair_cpu_ratios: list[float],
           busy: dict[str, list[float]], start_seconds: list[float], to_enforcing: list[float],
           bpf_runs: int, bpf_ns: int, check: str, other_agents: list[int],
           bpf_stats: bool, attached: list[str]) -> dict[str, Any]:
    what = ("dd if=/dev/zero of=/dev/null bs=1" if args.workload == "dd"
            else "C loop of one-byte read(2)s of /dev/zero")
    print()
    print(f"{what}, count={args.count}, {args.alternations} alternations x {args.runs} runs "
          f"per state, in a scoped cgroup")
    rows = {}
    head = (f"{'agent':<10} {'runs':>5} {'median ms':>10} {'min ms':>8} {'max ms':>8} "
            f"{'cpu median ms':>14} {'busy':>5}")
    print(head)
    print("-" * len(head))
    for state in ("without", "with"):
        walls = [s.wall * 1e3 for s in samples[state]]
        cpus = [s.cpu * 1e3 for s in samples[state]]
        rows[state] = {
            "runs": len(walls), "median_ms": statistics.median(walls), "min_ms": min(walls),
            "max_ms": max(walls), "cpu_median_ms": statistics.median(cpus),
            "busy_median": statistics.median(busy[state]), "wall_ms": walls, "cpu_ms": cpus,
        }
        r = rows[state]
        print(f"{state:<10} {r['runs']:>5} {r['median_ms']:>10.1f} {r['min_ms']:>8.1f} "
              f"{r['max_ms']:>8.1f} {r['cpu_median_ms']:>14.1f} {r['busy_median']:>5.2f}")
    ratio = rows["with"]["median_ms"] / rows["without"]["median_ms"]
    cpu_ratio = rows["with"]["cpu_median_ms"] / rows["without"]["cpu_median_ms"]
    best = rows["with"]["min_ms"] / rows["without"]["min_ms"]
    verdict = "ok" if ratio <= TARGET else "MISS"
    print()
    print(f"wall-time ratio (median with / median without): {ratio:.4f}   target <= {TARGET} "
          f"({verdict})")
    print(f"  median of per-alternation ratios: {statistics.median(pair_ratios):.4f}  "
          f"(min {min(pair_ratios):.4f}, max {max(pair_ratios):.4f})")
    print(f"  fastest with / fastest without:   {best:.4f}")
    print(f"cpu-time ratio (medians): {cpu_ratio:.4f}   per-alternation median "
          f"{statistics.median(pair_cpu_ratios):.4f}")
    if bpf_stats:
        per_run = bpf_ns / bpf_runs / 1e3 if bpf_runs else 0.0
        print(f"agent's BPF program during the with-agent runs: {bpf_runs} runs (execs on the "
              f"machine, not syscalls), {bpf_ns / 1e6:.3f} ms in total, {per_run:.2f} µs each")
    print(f"agent's BPF attachments (bpftool perf list): {', '.join(attached) or 'unknown'}")
    print(f"start to enforcing: status start_seconds {c.spread(start_seconds)}; "
          f"spawn -> enforcing {c.spread(to_enforcing)}")
    print("policy check: " + " | ".join(line.strip() for line in check.splitlines()[1:3]))
    print(f"busy = median machine CPU busy fraction during the runs ({os.cpu_count()} CPUs)")
    if other_agents:
        print(f"note: {len(other_agents)} other edrfleet agent(s) ran during the benchmark "
              f"(pids {other_agents[:8]})")
    return {
        "workload": args.workload, "count": args.count, "alternations": args.alternations,
        "runs_per_state": args.runs, "target": TARGET, "ratio": ratio, "cpu_ratio": cpu_ratio,
        "ratio_best": best, "pair_ratios": pair_ratios, "pair_cpu_ratios": pair_cpu_ratios,
        "rows": rows, "bpf_runs": bpf_runs, "bpf_ns": bpf_ns,
        "start_seconds": start_seconds, "wall_to_enforcing": to_enforcing,
        "policy_check": check, "other_agents": other_agents, "attachments": attached,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=["dd", "read"], default="dd",
                    help="dd bs=1 (default) or a C loop of one-byte reads")
    ap.add_argument("--count", type=int, default=1_000_000, help="one-byte reads (1000000)")
    ap.add_argument("--alternations", type=int, default=10,
                    help="without/with alternations (10)")
    ap.add_argument("--runs", type=int, default=3,
                    help="workload runs per state in each alternation (3)")
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds to wait before each run (0.5)")
    ap.add_argument("--max-busy", type=float, default=0.15,
                    help="before each run, wait until the machine's CPUs are at most this busy "
                         "(0.15)")
    ap.add_argument("--idle-timeout", type=float, default=30.0,
                    help="longest wait for --max-busy, seconds (30)")
    ap.add_argument("--no-bpf-stats", dest="bpf_stats", action="store_false",
                    help="do not turn on BPF run-time statistics while running")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (spools)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    if args.alternations < 1 or args.runs < 1 or args.count < 1:
        ap.error("--alternations, --runs and --count must be >= 1")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
