#!/usr/bin/env python3
"""What the agent adds to fork+exec: /bin/true N times without an agent and with the agent.

Configurations, all measured in one run, alternated in rounds so that drift cancels (round r
runs every configuration for N/rounds execs; even rounds in the order below, odd rounds
reversed; each agent is started for its chunk and stopped after it):

  none      no agent
  default   the agent with templates/policy.yaml.j2 (no variables but the scope)
  large     the agent with a generated policy: 1 000 rules, 200 regexes (arg and cmdline),
            executables spread over ~100 names, plus one `log` rule for a renamed copy of
            /bin/true
  anyexe    the agent with a generated policy of 1 000 rules of which --any-exe-regexes (200)
            are `cmdline:`-only regexes naming no executable (every exec in scope is theirs:
            the literal prefilter decides which of them run); 0 leaves this row out
  logged    under the `large` agent, the renamed copy N times: every exec is reported, so this
            is the event path (ring buffer, agent decode, spool); events received are counted
  worst     under the `large` agent, the most expensive exec it allows (bench/worst_case.py):
            a copy of /bin/true named like the executable with the most automata, with 4 KiB
            of argv walking the largest of them; its "bpf µs" is the worst case per exec
  logged, agent SIGSTOPped
            then the same with the agent's process stopped (up to --paused-cap execs a round):
            the BPF program still decides and fills the ring buffer, nobody reads it until the
            agent continues; this separates the in-kernel event path from the agent's work

The loop is a small C program (fork, execve, waitpid), moved into a cgroup this script creates
before it execs; every policy is scoped to that cgroup.  The loop reports its own wall time and
the CPU time of itself and its children (getrusage), which is far less disturbed by other load
on the machine than wall time.  With BPF run-time statistics on (default; --no-bpf-stats) the
in-kernel cost per exec of the agent's program is printed too.

Prints ratios against `none`; target <= 1.02.  Never
asserts timing.

Usage: .venv/bin/python bench/exec_overhead.py [--n 20000] [--rounds 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
import worst_case  # noqa: E402

from edrfleet.agent import ecs  # noqa: E402

TARGET = 1.02
LOG_RULE_ID = "bench-logged-copy"
COPY_NAME = "edrbench-logged-true"

REAL_NAMES = [
    "rm", "dd", "curl", "wget", "nc", "ncat", "bash", "sh", "python3", "perl", "chmod", "chown",
    "mkfs", "iptables", "systemctl", "useradd", "passwd", "crontab", "ssh", "scp", "tar",
    "base64", "openssl", "socat", "mount", "insmod", "kill", "shred", "find", "awk", "sed",
    "tee", "cp", "mv", "ln", "zsh", "dash", "php", "ruby", "node", "lua", "busybox", "sudo",
    "su", "journalctl", "auditctl", "setenforce", "ufw", "nft", "sysctl",
]
ARG_REGEXES = [
    r"^-[a-zA-Z]*[rR][a-zA-Z]*$",
    r"^--?(force|recursive|no-preserve-root)$",
    r"^https?://[^/]+/.*\.(sh|py|pl)$",
    r"^/dev/(sd[a-z]|nvme[0-9]+n[0-9]+|vd[a-z])$",
    r"^of=/dev/",
    r"[0-9]{1,3}(\.[0-9]{1,3}){3}",
    r"^[0-7]?777$",
    r"^/etc/(shadow|passwd|sudoers)$",
    r"^-[a-z]*e[a-z]*$",
    r"\.onion(:[0-9]+)?$",
]
CMD_REGEXES = [
    r"[|] *(ba)?sh( |$)",
    r"base64 +(-d|--decode)",
    r"/dev/(tcp|udp)/",
    r"mimikatz",
    r"^[^ ]+ -c .*(curl|wget) ",
    r"chmod +[0-7]*[1357][0-9][0-9] +/tmp/",
    r"LD_PRELOAD=",
    r"--no-preserve-root",
]


def generated_policy(scope: str, copy_path: Path, n_rules: int = 1000, n_regexes: int = 200,
                     n_names: int = 100, wildcard_rules: int = 0, two_exe_share: float = 0.1,
                     seed: int = 1, cmdline_only: bool = False) -> dict:
    """A synthetic policy; none of its rules can match /bin/true run with no arguments.

    ``n_regexes`` rules carry a regex (a quarter of them as ``cmdline``), the others `any`
    literals and sometimes a `glob`; executables are drawn from ``n_names`` basenames (never
    `true` or the copy's name).  ``wildcard_rules`` of the regex rules name no executable, so
    every exec in scope is scanned; with ``cmdline_only`` those are a `cmdline:` regex and
    nothing else (the issue's blacklist of command lines).  ``two_exe_share`` of the rules
    name two executables (each distinct list is one more group for its names).
    The last rule logs every exec of ``copy_path``.
    """
    rnd = random.Random(seed)
    names = (REAL_NAMES + [f"tool-{i}" for i in range(n_names)])[:n_names]
    regex_rules = set(rnd.sample(range(n_rules), n_regexes))
    wildcards = set(rnd.sample(sorted(regex_rules), wildcard_rules))
    rules: list[dict[str, Any]] = []
    for i in range(n_rules):
        match: dict[str, Any] = {}
        if cmdline_only and i in wildcards:
            rules.append({"id": f"rule-{i}", "description": f"synthetic rule {i}",
                          "severity": "high",
                          "action": rnd.choices(["block", "log", "allow"], weights=[60, 25, 15])[0],
                          "match": {"cmdline": f"{rnd.choice(CMD_REGEXES)}|--c{i}( |$)"}})
            continue
        if i not in wildcards:
            match["executable"] = rnd.sample(names, 2 if rnd.random() < two_exe_share else 1)
        args: list[dict[str, Any]] = [{"any": [f"-x{i}", f"--opt{i % 37}", f"-{chr(97 + i % 26)}"]}]
        if rnd.random() < 0.4:
            args.append({"glob": f"/tmp/{i % 13}*"})
        if i in regex_rules:
            if rnd.random() < 0.25:
                match["cmdline"] = f"{rnd.choice(CMD_REGEXES)}|--c{i}( |$)"
            else:
                args.append({"regex": f"{rnd.choice(ARG_REGEXES)}|^--r{i}$"})
        match["args"] = args
        rules.append({
            "id": f"rule-{i}",
            "description": f"synthetic rule {i}",
            "severity": rnd.choice(["low", "medium", "high", "critical"]),
            "action": rnd.choices(["block", "log", "allow"], weights=[60, 25, 15])[0],
            "match": match,
        })
    rules.append({
        "id": LOG_RULE_ID,
        "description": "every exec of the benchmark's renamed copy of /bin/true",
        "severity": "low",
        "action": "log",
        "match": {"executable": [str(copy_path)]},
    })
    return {"version": 1, "mode": "enforce", "scope": {"cgroups": [scope]}, "rules": rules}


@dataclass
class Totals:
    execs: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    failures: int = 0
    bpf_ns: int = 0
    bpf_runs: int = 0
    agent_cpu: float = 0.0
    agent_counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    chunks_with_other_agents: int = 0
    busy_during: list[float] = field(default_factory=list)  # machine CPU busy fraction
    rounds_wall: list[float] = field(default_factory=list)  # µs/exec of each round
    rounds_cpu: list[float] = field(default_factory=list)

    def add(self, s: c.Sample, execs: int) -> None:
        self.execs += execs
        self.wall += s.wall
        self.cpu += s.cpu
        self.failures += s.failures
        self.rounds_wall.append(s.wall / execs * 1e6)
        self.rounds_cpu.append(s.cpu / execs * 1e6)


@dataclass
class StartTimes:
    start_seconds: list[float] = field(default_factory=list)
    wall_to_enforcing: list[float] = field(default_factory=list)


def worst_exec_for(policy: Path, copy_dir: Path) -> worst_case.WorstExec:
    """Compile the policy as the agent will, pick the worst exec, make its stand-in."""
    from edrfleet.policy import compile_policy, load_policy

    worst = worst_case.worst_exec(compile_policy(load_policy(policy)), copy_dir)
    copy_dir.mkdir(exist_ok=True)
    c.harmless_copy(copy_dir / worst.name)
    return worst


def execs_of(event: dict) -> int:
    """Execs an event stands for: more than one when the kernel folded a flood of logged execs
    into it (docs/events.md, "Floods")."""
    return int((event.get("edrfleet") or {}).get("count", 1))


def wait_events(agent: c.Agent, count: int, timeout: float = 15.0) -> int:
    """Wait until the agent's spool holds ``count`` events (or ``timeout``); returns the count."""
    deadline = time.monotonic() + timeout
    while True:
        have = sum(execs_of(e) for e in agent.events())
        if have >= count or time.monotonic() > deadline:
            return have
        time.sleep(0.1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    c.preflight()
    workdir = c.make_workdir("edrfleet-bench-exec-")
    cg = c.Cgroup.create()
    agents = c.Agents(workdir)
    stats = None
    try:
        stats = c.bpf_stats_or_none(args.bpf_stats)
        loop = c.compile_c(c.EXEC_LOOP_C, "exec_loop", workdir)
        copy = workdir / "bin" / COPY_NAME
        copy.parent.mkdir()
        c.harmless_copy(copy)

        policies = {"default": workdir / "default.yaml", "large": workdir / "large.yaml"}
        if args.any_exe_regexes:
            policies["anyexe"] = workdir / "anyexe.yaml"
            policies["anyexe"].write_text(yaml.safe_dump(
                generated_policy(cg.name, copy, args.rules, args.any_exe_regexes, args.names,
                                 args.any_exe_regexes, 0.0, args.seed, cmdline_only=True),
                sort_keys=False, width=4096))
        policies["default"].write_text(c.render_default_policy([cg.name]))
        policies["large"].write_text(yaml.safe_dump(
            generated_policy(cg.name, copy, args.rules, args.regexes, args.names,
                             args.wildcard_rules, args.two_exe_share, args.seed),
            sort_keys=False, width=4096))
        checks = {name: c.check_policy(path) for name, path in policies.items()}
        worst = worst_exec_for(policies["large"], workdir / "worst")

        configs = ["none", "default", "large", *(["anyexe"] if args.any_exe_regexes else [])]
        totals: dict[str, Totals] = defaultdict(Totals)
        starts: dict[str, StartTimes] = defaultdict(StartTimes)
        logged = {"execs": 0, "paused_execs": 0, "events": 0, "events_lost": 0,
                  "status_logged": 0, "other": 0}
        base, extra = divmod(args.n, args.rounds)
        other_seen: set[int] = set()

        def chunk(name: str, path: str, execs: int, agent: c.Agent | None,
                  argv: tuple[str, ...] = ()) -> None:
            c.settle(args.settle, args.max_busy, args.idle_timeout)
            others = set(c.other_agents()) - {a.proc.pid for a in agents.started}
            other_seen.update(others)
            if agent:
                ns0, runs0 = c.prog_stats(agent.proc.pid)
                cpu0 = c.process_cpu(agent.proc.pid)
                counters0 = c.process_counters(agent.proc.pid)
            busy0 = c.cpu_times()
            sample = c.timed_loop(cg, [str(loop), str(execs), path, *argv])
            busy1 = c.cpu_times()
            t = totals[name]
            t.add(sample, execs)
            t.busy_during.append((busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1))
            t.chunks_with_other_agents += bool(others)
            if agent:
                time.sleep(0.5)  # the agent polls every 200 ms: let it drain what is pending
                ns1, runs1 = c.prog_stats(agent.proc.pid)
                t.bpf_ns += ns1 - ns0
                t.bpf_runs += runs1 - runs0
                t.agent_cpu += c.process_cpu(agent.proc.pid) - cpu0
                for key, value in c.process_counters(agent.proc.pid).items():
                    t.agent_counters[key] += value - counters0[key]

        for r in range(args.rounds):
            execs = base + (1 if r < extra else 0)
            if execs == 0:
                continue
            order = configs if r % 2 == 0 else configs[::-1]
            for name in order:
                if name == "none":
                    chunk("none", "/bin/true", execs, None)
                    continue
                agent = agents.start(policies[name], name)
                starts[name].start_seconds.append(float(agent.status()["start_seconds"]))
                starts[name].wall_to_enforcing.append(agent.enforcing_after or 0.0)
                paused = min(execs, args.paused_cap) if args.paused and name == "large" else 0
                try:
                    chunk(name, "/bin/true", execs, agent)
                    if name == "large":
                        chunk("logged", str(copy), execs, agent)
                        if args.worst:
                            chunk("worst", str(workdir / "worst" / worst.name), execs, agent,
                                  tuple(worst.args))
                    if paused:
                        # Everything so far written out, then the agent's process stopped:
                        # the program still runs and fills the ring buffer, nobody reads it.
                        wait_events(agent, execs)
                        os.kill(agent.proc.pid, signal.SIGSTOP)
                        try:
                            chunk("logged-paused", str(copy), paused, agent)
                        finally:
                            os.kill(agent.proc.pid, signal.SIGCONT)
                finally:
                    agent.stop()
                if name == "large":
                    events = agent.events()
                    logged["execs"] += execs + paused
                    logged["paused_execs"] += paused
                    logged["events"] += sum(execs_of(e) for e in events
                                            if ecs.get(e, ecs.RULE_ID) == LOG_RULE_ID)
                    logged["other"] += sum(ecs.get(e, ecs.RULE_ID) != LOG_RULE_ID for e in events)
                    logged["events_lost"] += int(agent.final_status.get("events_lost", 0))
                    logged["status_logged"] += int(agent.final_status.get("logged", 0))
                print(f"round {r + 1}/{args.rounds} {name}: done", file=sys.stderr, flush=True)

        result = report(args, totals, starts, logged, checks, sorted(other_seen),
                        stats is not None)
        print(f"worst case: {worst.name!r}, {worst.groups} automata per exec, the largest "
              f"{worst.states} states, {worst.visited} of them visited by a 4 096-byte argv "
              f"({len(worst.args)} arguments); simulator: {worst.action}")
        result["worst"] = asdict(worst) | {"args": len(worst.args)}
        return result
    finally:
        if stats:
            stats.close()
        agents.stop_all()
        cg.remove()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)


def report(args: argparse.Namespace, totals: dict[str, Totals], starts: dict[str, StartTimes],
           logged: dict[str, int], checks: dict[str, str], other_agents: list[int],
           bpf_stats: bool) -> dict[str, Any]:
    none = totals["none"]
    rows = []
    labels = {
        "none": "none (no agent)",
        "default": "default policy",
        "large": f"{args.rules} rules / {args.regexes} regex",
        "anyexe": f"{args.rules} r / {args.any_exe_regexes} any-exe rx",
        "logged": "logged copy (event each)",
        "worst": "worst: 4 KiB, most DFAs",
        "logged-paused": "logged, agent SIGSTOPped",
    }
    for name in ("none", "default", "large", "anyexe", "logged", "worst", "logged-paused"):
        t = totals[name]
        if not t.execs:
            continue
        per_round = [w / b for w, b in zip(t.rounds_wall, none.rounds_wall, strict=False)]
        per_round_cpu = [w / b for w, b in zip(t.rounds_cpu, none.rounds_cpu, strict=False)]
        best = min(t.rounds_wall) / min(none.rounds_wall)
        rows.append({
            "config": name,
            "label": labels[name],
            "execs": t.execs,
            "total_s": t.wall,
            "us_per_exec": t.wall / t.execs * 1e6,
            "ratio": t.wall / none.wall * none.execs / t.execs,
            "ratio_median_of_rounds": statistics.median(per_round),
            "ratio_best_rounds": best,
            "cpu_us_per_exec": t.cpu / t.execs * 1e6,
            "cpu_ratio": t.cpu / none.cpu * none.execs / t.execs,
            "cpu_ratio_median_of_rounds": statistics.median(per_round_cpu),
            "bpf_us_per_exec": (t.bpf_ns / t.bpf_runs / 1e3) if t.bpf_runs else None,
            "bpf_runs": t.bpf_runs,
            "agent_cpu_us_per_exec": t.agent_cpu / t.execs * 1e6 if name != "none" else None,
            "agent_per_exec": {k: v / t.execs for k, v in t.agent_counters.items()},
            "failures": t.failures,
            "chunks_with_other_agents": t.chunks_with_other_agents,
            "machine_busy_during_median": statistics.median(t.busy_during),
            "round_us_per_exec": t.rounds_wall,
        })

    print()
    print(f"fork+exec of /bin/true, N={args.n} per config, {args.rounds} alternating rounds, "
          f"in a scoped cgroup")
    head = (f"{'config':<26} {'execs':>6} {'total s':>8} {'µs/exec':>8} {'ratio':>6} "
            f"{'target':>10}  {'rnd-med':>7} {'best':>6}  {'cpu µs':>7} {'cpu ratio':>9}  "
            f"{'bpf µs':>6} {'agent µs':>8} {'busy':>5}")
    print(head)
    print("-" * len(head))
    for row in rows:
        target = "" if row["config"] == "none" else (
            f"{'ok' if row['ratio'] <= TARGET else 'MISS'} ≤{TARGET}")
        bpf = f"{row['bpf_us_per_exec']:.2f}" if row["bpf_us_per_exec"] is not None else "-"
        agent_cpu = (f"{row['agent_cpu_us_per_exec']:.1f}"
                     if row["agent_cpu_us_per_exec"] is not None else "-")
        print(f"{row['label']:<26} {row['execs']:>6} {row['total_s']:>8.2f} "
              f"{row['us_per_exec']:>8.1f} {row['ratio']:>6.3f} {target:>10}  "
              f"{row['ratio_median_of_rounds']:>7.3f} {row['ratio_best_rounds']:>6.3f}  "
              f"{row['cpu_us_per_exec']:>7.1f} {row['cpu_ratio']:>9.3f}  {bpf:>6} {agent_cpu:>8} "
              f"{row['machine_busy_during_median']:>5.2f}")
    print()
    print("ratio = total wall time / no-agent total; rnd-med = median over rounds of the "
          "per-round ratio;")
    print("best = fastest round / fastest no-agent round; cpu = user+sys of the loop and its "
          "children (getrusage);")
    print("bpf µs = in-kernel run time of the agent's exec program per run (BPF_ENABLE_STATS); "
          "agent µs = agent")
    print(f"process CPU per exec; busy = median machine CPU busy fraction during the chunks "
          f"({os.cpu_count()} CPUs; the")
    print("loop alone keeps about one CPU busy).")
    if not bpf_stats:
        print("(BPF run-time statistics were off)")
    best_none = min(none.rounds_wall)
    for row in rows[1:]:
        if row["bpf_us_per_exec"] is not None:
            share = row["bpf_us_per_exec"] / best_none
            print(f"  {row['config']}: in-kernel program = {share * 100:.2f} % of the fastest "
                  f"no-agent exec ({row['bpf_us_per_exec']:.2f} of {best_none:.1f} µs)")
    for row in rows[1:]:
        per = row["agent_per_exec"]
        if per:
            print(f"  {row['config']}: agent per exec: {per['wakeups']:.3f} wake-ups, "
                  f"{per['syscw']:.3f} write syscalls, {per['syscr']:.3f} read syscalls")
    failures = sum(r["failures"] for r in rows)
    if failures:
        print(f"WARNING: {failures} execs did not exit 0 (killed by a rule?)")

    print()
    print(f"logged copy ({LOG_RULE_ID}): execs {logged['execs']} ({logged['paused_execs']} "
          "of them while the agent was stopped), events received "
          f"{logged['events']} ({logged['events'] / max(logged['execs'], 1) * 100:.2f} %), "
          f"status.json logged {logged['status_logged']}, events_lost {logged['events_lost']}, "
          f"other events {logged['other']}")

    print()
    print("start to enforcing (seconds)")
    start_rows = {}
    for name, st in starts.items():
        start_rows[name] = {
            "starts": len(st.start_seconds),
            "start_seconds": st.start_seconds,
            "wall_to_enforcing": st.wall_to_enforcing,
        }
        print(f"  {labels[name]:<24} starts {len(st.start_seconds):>2}  status start_seconds: "
              f"{c.spread(st.start_seconds)}")
        print(f"  {'':<24} {'':>9}  spawn -> enforcing:     {c.spread(st.wall_to_enforcing)}")
    print()
    for name, text in checks.items():
        print(f"policy check ({name}): " + " | ".join(
            line.strip() for line in text.splitlines()[1:4]))
    if other_agents:
        chunks = sum(r["chunks_with_other_agents"] for r in rows)
        print(f"note: {len(other_agents)} other edrfleet agent(s) ran during the benchmark "
              f"(pids {other_agents[:8]}), in {chunks} of "
              f"{sum(len(r['round_us_per_exec']) for r in rows)} chunks; their programs run on "
              "every exec here too (out of their scope: a cgroup check)")
    return {
        "n": args.n, "rounds": args.rounds, "target": TARGET, "rows": rows, "logged": logged,
        "start": start_rows, "policy_check": checks, "other_agents": other_agents,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="execs per configuration (20000)")
    ap.add_argument("--rounds", type=int, default=10,
                    help="alternating rounds; each runs N/rounds execs per config (10)")
    ap.add_argument("--rules", type=int, default=1000, help="generated policy: rules (1000)")
    ap.add_argument("--regexes", type=int, default=200, help="generated policy: regexes (200)")
    ap.add_argument("--names", type=int, default=100,
                    help="generated policy: distinct executable names (100)")
    ap.add_argument("--wildcard-rules", type=int, default=0,
                    help="generated policy: regex rules with no executable, so every exec is "
                         "scanned (0)")
    ap.add_argument("--two-exe-share", type=float, default=0.1,
                    help="generated policy: share of rules naming two executables (0.1); use 0 "
                         "with --wildcard-rules (at most 8 rule groups per exec)")
    ap.add_argument("--any-exe-regexes", type=int, default=200,
                    help="row 'anyexe': generated policy of --rules rules of which this many "
                         "are cmdline-only regexes for any executable (200; 0: no such row)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to wait before each timed chunk (1.0)")
    ap.add_argument("--max-busy", type=float, default=0.15,
                    help="before each chunk, wait until the machine's CPUs are at most this "
                         "busy (0.15)")
    ap.add_argument("--idle-timeout", type=float, default=30.0,
                    help="longest wait for --max-busy, seconds (30)")
    ap.add_argument("--no-bpf-stats", dest="bpf_stats", action="store_false",
                    help="do not turn on BPF run-time statistics while running")
    ap.add_argument("--no-paused", dest="paused", action="store_false",
                    help="skip the 'logged, agent SIGSTOPped' row (the copy's execs while the "
                         "agent process is stopped: the in-kernel event path alone)")
    ap.add_argument("--paused-cap", type=int, default=1000,
                    help="execs per round for that row; the ring buffer (1 MiB) must hold them "
                         "until the agent resumes (1000)")
    ap.add_argument("--no-worst", dest="worst", action="store_false",
                    help="skip the worst-case row (4 KiB argv through the most automata)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (spools)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    if args.rounds < 1 or args.n < args.rounds:
        ap.error("need --n >= --rounds >= 1")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2, default=asdict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
