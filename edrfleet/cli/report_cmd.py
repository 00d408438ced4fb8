"""``edrfleet report``: pull the hosts' new events into the store, print the summary."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edrfleet.cli import fleet_args
from edrfleet.cli.exits import EXIT_FAILED, EXIT_OK
from edrfleet.fleet.report.formats import CSV_SECTIONS, FORMATS
from edrfleet.fleet.report.html_report import HOST_EVENTS, LATEST_EVENTS
from edrfleet.fleet.report.store import DEFAULT_DB, ReportError


def _write(path: Path, text: str) -> None:
    """Replace ``path`` whole (tmp + rename): a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextmanager
def _progress(bar: bool, command: str = "report") -> Iterator[tuple[Any, Any]]:
    """A progress bar on stderr while hosts are pulled; without one (stderr not a terminal,
    or -v), one line per host pulled."""
    if not bar:
        def line(p: Any) -> None:
            what = f"pulled, {p.inserted} new events" if p.ok else "not pulled"
            print(f"edrfleet {command}: {p.host}: {what}", file=sys.stderr, flush=True)

        yield None, line
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from edrfleet.fleet.report.inert import terminal_safe

    with Progress(TextColumn("pulling"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), console=Console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task("", total=None)

        def start(n: int) -> None:
            bar.update(task, total=n)

        def done(p: Any) -> None:
            bar.update(task, advance=1, description=terminal_safe(p.host, 40))

        yield start, done


def _run(args: argparse.Namespace) -> int:
    from edrfleet.fleet.report import run_report
    from edrfleet.fleet.report.formats import render
    from edrfleet.fleet.report.summary import parse_since

    since = parse_since(args.since) if args.since else None
    if args.section is not None and args.format != "csv":
        raise ReportError(f"--section: CSV's table; --format {args.format} shows them all "
                          "(fix: --format csv, or leave --section out)")
    html = args.format == "html"  # the page lists events; the other formats count them
    with _progress(sys.stderr.isatty() and not args.verbose) as (on_start, on_done):
        report = run_report(fleet_args.inventory_sources(args), limit=args.limit, db=args.db,
                            since=since, forks=fleet_args.forks(args), pull=not args.no_pull,
                            connect_timeout=fleet_args.connect_timeout(args),
                            on_start=on_start, on_done=on_done,
                            latest_events=LATEST_EVENTS if html else 0,
                            per_host_events=HOST_EVENTS if html else 0)
    terminal = args.output is None and sys.stdout.isatty()
    width = os.get_terminal_size().columns if terminal else 120
    text = render(report.summary, args.format, terminal=terminal, width=width,
                  section=args.section or "hosts")
    if args.output is not None:
        _write(args.output, text)
    else:
        sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace"))
        sys.stdout.flush()
    for p in report.failed:
        print(f"edrfleet: {p.host}: not pulled: {fleet_args.without_host(p.host, p.error)}",
              file=sys.stderr)
    return EXIT_FAILED if report.failed else EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="pull new events from the hosts and summarize")
    fleet_args.add_fleet_options(p)
    p.add_argument("--db", default=str(DEFAULT_DB), metavar="FILE|URI",
                   help="the central store: a SQLite file (default %(default)s) or "
                        "postgresql://USER@HOST/DB (several controllers may share it)")
    p.add_argument("--since", default=None, metavar="T",
                   help="summarize events since T: 1h, 7d, 2026-12-01T05:00Z (default: all)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--section", choices=CSV_SECTIONS, default=None,
                   help="CSV holds one table: which (default hosts; top: the blocked and "
                        "would-block commands; totals: one row)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="write the report to FILE (replaced whole) instead of stdout")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="one line per host pulled on stderr instead of the progress bar")
    p.add_argument("--no-pull", action="store_true",
                   help="summarize what the store holds, without contacting the hosts")
    p.set_defaults(func=_run)
