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

from edrfleet.cli import fleet_args
from edrfleet.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from edrfleet.fleet.report.inert import markup_safe, terminal_lines, terminal_safe


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
    fleet_args.add_fleet_options(p)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="one line per host phase on stderr (also when stderr is not a "
                   "terminal), instead of the progress bar")


def _hosts(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from edrfleet.fleet.inventory.load import load_inventory

    inv = load_inventory(fleet_args.inventory_sources(args))
    return inv, inv.select(args.limit)


class LiveProgress:
    """A rich progress bar naming the hosts being worked on; where nobody watches a bar (stderr
    not a terminal) or with ``lines``, one line per host phase on stderr instead."""

    def __init__(self, console: Console, total: int, verb: str, *, lines: bool = False) -> None:
        self.active: dict[str, str] = {}
        self.total, self.finished, self.applied = total, 0, set[str]()
        self.lock = threading.Lock()
        self.verb = verb
        self.lines = lines or not console.is_terminal
        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.fields[verb]}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), console=console,
                                 transient=True, disable=self.lines)
        self.task = self.progress.add_task("", total=total, verb=verb)

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, host: str, phase: str) -> None:
        with self.lock:
            if self.lines:  # plain text: no markup, no wrapping, one write per line
                self.console.file.write(f"edrfleet {self.verb}: {host}: {phase}\n")
                self.console.file.flush()
            if phase == "apply":
                self.applied.add(host)
            if phase == "done":
                self.finished += 1
                self.active.pop(host, None)
                self.progress.advance(self.task)
            else:
                self.active[host] = phase
            names = sorted(self.active)
            shown = ", ".join(markup_safe(f"{n} ({self.active[n]})") for n in names[:6])
            more = f" +{len(names) - 6}" if len(names) > 6 else ""
            self.progress.update(self.task, description=shown + more)


    def interrupted(self) -> str:
        """What Ctrl-C stopped: the hosts done, the ones let finish, the ones not done.  Only
        the pool's steps (facts, apply) run on a host; a host whose policy was prepared is
        waiting for its batch, not in flight."""
        flight = sorted(h for h, phase in self.active.items() if phase in ("facts", "apply"))
        left = self.total - self.finished - len(flight)
        text = f"interrupted: {self.verb} stopped with {self.finished} of {self.total} hosts done"
        if flight:
            shown = ", ".join(f"{h} ({self.active[h]})" for h in flight[:6])
            text += (f"; in flight, let finish that step so that none is left half-applied: "
                     f"{shown}{' …' if len(flight) > 6 else ''}")
        if left:
            text += f"; {left} more not done"
        if self.verb == "deploy" and not self.applied:
            text += "; no host was changed"
        return text + " (edrfleet status shows each host; run it again to finish)"


def print_recap(console: Console, results: list[Any], title: str = "RECAP") -> None:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for col in ("host", "result", "seconds", "detail"):
        table.add_column(col, overflow="fold", justify="right" if col == "seconds" else "left")
    for r in results:
        # Host-supplied text (remote stderr in the message): inert, never parsed as markup.
        table.add_row(Text(terminal_safe(r.name)), Text(r.status, style=COLORS.get(r.status, "")),
                      f"{r.seconds:.2f}",
                      Text(terminal_lines(fleet_args.without_host(r.name, r.message))))
    console.print(table)


def print_diffs(results: list[Any]) -> None:
    """Each host's policy diff, as written: a unified diff stays one (``patch`` applies it),
    never wrapped or restyled by the console."""
    for r in results:
        if r.diff:
            # The host's policy text is in it: each line inert, the diff still a diff.
            diff = terminal_lines(r.diff)
            sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
    sys.stdout.flush()


def cmd_deploy(args: argparse.Namespace) -> int:
    from edrfleet.fleet.deploy.deployer import DeployOptions, deploy
    from edrfleet.fleet.inventory.patterns import write_retry
    from edrfleet.fleet.transport.pool import parse_serial

    opts = DeployOptions(forks=fleet_args.forks(args), serial=parse_serial(args.serial),
                         max_fail_percent=args.max_fail_percent, check=args.check,
                         diff=args.diff, connect_timeout=fleet_args.connect_timeout(args),
                         command_timeout=args.timeout)
    inv, hosts = _hosts(args)
    fleet_args.warn_typos(hosts)
    out, err = console(), console(stderr=True)
    live = LiveProgress(err, len(hosts), "check" if args.check else "deploy", lines=args.verbose)
    try:
        with live:
            report = deploy(inv, args.limit, opts, on_event=live.event)
    except KeyboardInterrupt:
        print(f"edrfleet: {live.interrupted()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print_diffs(report.results)
    print_recap(out, report.results, "RECAP" + (" (check: nothing changed)" if args.check
                                                else ""))
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("ok", "changed", "unreachable",
                                                           "failed") if report.count(s))
    out.print(f"{len(report.results)} hosts in {report.seconds:.2f} s: {counts}")
    if report.stopped:
        out.print(Text.assemble(("stopped:", "red"), " ", terminal_safe(report.stopped)))
    if report.failed:
        retry = Path(inv.path).with_suffix(".retry")
        write_retry(retry, [r.name for r in report.failed])
        out.print(f"to retry the failed hosts: --limit @{retry}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from edrfleet.fleet.deploy.status import STATUS_COUNTERS, fleet_status

    forks, timeout = fleet_args.forks(args), fleet_args.connect_timeout(args)
    inv, hosts = _hosts(args)
    rows = fleet_status(inv.base_dir, hosts, forks=forks,
                        connect_timeout=timeout)
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        table = Table(show_edge=False, pad_edge=False)
        for col in ("host", "state", "backend", "policy", "release", "pid", *STATUS_COUNTERS):
            table.add_column(col.replace("_", " "))
        for r in rows:
            c = r.counters or {}
            style = "green" if r.state in ("enforcing", "monitoring") else "red"
            # status.json's strings come from the host: plain Text, never markup.
            cells = [r.name, r.backend, str(r.policy_sha256)[:12], r.release_id,
                     str(r.pid or ""), *(c.get(k, "") for k in STATUS_COUNTERS)]
            name, *rest = (Text(terminal_safe(v)) for v in cells)
            table.add_row(name, Text(terminal_safe(r.state), style=style), *rest)
        console().print(table)
        for r in rows:
            if r.message or r.last_error:
                text = terminal_safe(fleet_args.without_host(r.name, r.message or r.last_error))
                print(f"{terminal_safe(r.name)}: {text}", file=sys.stderr)
    return EXIT_FAILED if not_as_wanted(hosts, rows) else EXIT_OK


def not_as_wanted(hosts: list[Any], rows: list[Any]) -> list[str]:
    """The hosts whose agent is not in force in the mode its inventory asks for: enforcing, or
    monitoring where ``edrfleet_mode: monitor`` (unreachable, not installed, stopped, failed
    and the other mode all count)."""
    mode = {h.name: str(h.vars.get("edrfleet_mode", "enforce")) for h in hosts}
    return [r.name for r in rows
            if r.state != ("monitoring" if mode.get(r.name) == "monitor" else "enforcing")]


def cmd_uninstall(args: argparse.Namespace) -> int:
    from edrfleet.fleet.deploy.uninstall import fleet_uninstall

    forks, timeout = fleet_args.forks(args), fleet_args.connect_timeout(args)
    inv, hosts = _hosts(args)
    err = console(stderr=True)
    live = LiveProgress(err, len(hosts), "uninstall", lines=args.verbose)
    try:
        with live:
            results = fleet_uninstall(inv.base_dir, hosts, purge=args.purge,
                                      forks=forks, connect_timeout=timeout,
                                      on_done=lambda h, r: live.event(h.name, "done"))
    except KeyboardInterrupt:
        print(f"edrfleet: {live.interrupted()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print_recap(console(), results)
    return EXIT_FAILED if any(r.failed for r in results) else EXIT_OK
