"""``edrfleet deploy|status|uninstall``: parse, show progress, print the recap, exit status.

Exit status: 0 every host ok/changed, 1 some host failed or was unreachable, 2 bad input (a
host's policy that does not compile stops the deploy before any host is touched).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from edrfleet.cli.exits import EXIT_FAILED, EXIT_OK
from edrfleet.fleet.transport.pool import DEFAULT_FORKS


def console(stderr: bool = False) -> Console:
    """A console as wide as the terminal, or 160 columns into a pipe or file (rich's default
    of 80 folds every recap line)."""
    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=160)
COLORS = {"ok": "green", "changed": "yellow", "unreachable": "red", "failed": "red"}


def register(subparsers: Any) -> None:
    d = subparsers.add_parser("deploy", help="install the agent and each host's policy",
                              description="Roll out the agent and each host's rendered policy; "
                              "only what differs is sent, written or restarted.")
    _common(d)
    d.add_argument("--serial", metavar="N|P%", help="deploy in batches of N hosts or P%% of them")
    d.add_argument("--max-fail-percent", type=float, metavar="P",
                   help="stop later batches when more than P%% of a batch failed")
    d.add_argument("--check", action="store_true", help="change nothing; say what would change")
    d.add_argument("--diff", action="store_true", help="show each host's policy diff")
    d.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="command timeout in seconds (default %(default)s)")
    d.set_defaults(func=cmd_deploy)

    s = subparsers.add_parser("status", help="the agent's state on each host")
    _common(s)
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_status)

    u = subparsers.add_parser("uninstall", help="stop and remove the agent from each host",
                              description="Stop the agent and remove its unit, releases, config "
                              "and run files.  The spool (events) is kept unless --purge.")
    _common(u)
    u.add_argument("--purge", action="store_true", help="remove the spool (events) too")
    u.set_defaults(func=cmd_uninstall)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("inventory", metavar="INVENTORY", help="Ansible YAML inventory")
    p.add_argument("-l", "--limit", metavar="PATTERN", help="host pattern (Ansible's), or @FILE")
    p.add_argument("-f", "--forks", type=int, default=DEFAULT_FORKS,
                   help="hosts worked on at once (default %(default)s)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="SSH connect timeout in seconds (default %(default)s)")


def _hosts(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from edrfleet.fleet.inventory.load import load_inventory

    inv = load_inventory(args.inventory)
    return inv, inv.select(args.limit)


class LiveProgress:
    """A rich progress bar naming the hosts being worked on (quiet when not a terminal)."""

    def __init__(self, console: Console, total: int, verb: str) -> None:
        self.active: dict[str, str] = {}
        self.lock = threading.Lock()
        self.verb = verb
        self.progress = Progress(TextColumn("[bold]{task.fields[verb]}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), console=console,
                                 transient=True, disable=not console.is_terminal)
        self.task = self.progress.add_task("", total=total, verb=verb)

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, host: str, phase: str) -> None:
        with self.lock:
            if phase == "done":
                self.active.pop(host, None)
                self.progress.advance(self.task)
            else:
                self.active[host] = phase
            names = sorted(self.active)
            shown = ", ".join(f"{n} ({self.active[n]})" for n in names[:6])
            more = f" +{len(names) - 6}" if len(names) > 6 else ""
            self.progress.update(self.task, description=shown + more)


def print_recap(console: Console, results: list[Any], title: str = "RECAP") -> None:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for col in ("host", "result", "seconds", "detail"):
        table.add_column(col, overflow="fold", justify="right" if col == "seconds" else "left")
    for r in results:
        table.add_row(r.name, Text(r.status, style=COLORS.get(r.status, "")),
                      f"{r.seconds:.2f}", Text(r.message))
    console.print(table)


def cmd_deploy(args: argparse.Namespace) -> int:
    from edrfleet.fleet.deploy.deployer import DeployOptions, deploy
    from edrfleet.fleet.inventory.patterns import write_retry
    from edrfleet.fleet.transport.pool import parse_serial

    inv, hosts = _hosts(args)
    opts = DeployOptions(forks=args.forks, serial=parse_serial(args.serial),
                         max_fail_percent=args.max_fail_percent, check=args.check,
                         diff=args.diff, connect_timeout=args.connect_timeout,
                         command_timeout=args.timeout)
    out, err = console(), console(stderr=True)
    with LiveProgress(err, len(hosts), "check" if args.check else "deploy") as live:
        report = deploy(inv, args.limit, opts, on_event=live.event)
    for r in report.results:
        if r.diff:
            out.print(Text(r.diff), end="")
    print_recap(out, report.results, "RECAP" + (" (check: nothing changed)" if args.check
                                                else ""))
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("ok", "changed", "unreachable",
                                                           "failed") if report.count(s))
    out.print(f"{len(report.results)} hosts in {report.seconds:.2f} s: {counts}")
    if report.stopped:
        out.print(f"[red]stopped:[/red] {report.stopped}")
    if report.failed:
        retry = Path(inv.path).with_suffix(".retry")
        write_retry(retry, [r.name for r in report.failed])
        out.print(f"to retry the failed hosts: --limit @{retry}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from edrfleet.fleet.deploy.status import STATUS_COUNTERS, fleet_status

    inv, hosts = _hosts(args)
    rows = fleet_status(Path(inv.path).resolve().parent, hosts, forks=args.forks,
                        connect_timeout=args.connect_timeout)
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        table = Table(show_edge=False, pad_edge=False)
        for col in ("host", "state", "backend", "policy", "release", "pid", *STATUS_COUNTERS):
            table.add_column(col.replace("_", " "))
        for r in rows:
            c = r.counters or {}
            style = "green" if r.state in ("enforcing", "monitoring") else "red"
            table.add_row(r.name, Text(r.state, style=style), r.backend, r.policy_sha256[:12],
                          r.release_id, str(r.pid or ""), *(str(c.get(k, "")) for k in
                                                            STATUS_COUNTERS))
        console().print(table)
        for r in rows:
            if r.message or r.last_error:
                print(f"{r.name}: {r.message or r.last_error}", file=sys.stderr)
    return EXIT_FAILED if any(not r.reachable for r in rows) else EXIT_OK


def cmd_uninstall(args: argparse.Namespace) -> int:
    from edrfleet.fleet.deploy.uninstall import fleet_uninstall

    inv, hosts = _hosts(args)
    err = console(stderr=True)
    with LiveProgress(err, len(hosts), "uninstall") as live:
        results = fleet_uninstall(Path(inv.path).resolve().parent, hosts, purge=args.purge,
                                  forks=args.forks, connect_timeout=args.connect_timeout,
                                  on_done=lambda h, r: live.event(h.name, "done"))
    print_recap(console(), results)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK
