"""``edrfleet events``: pull the hosts' new events into the store, list the stored ones."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from edrfleet.cli import fleet_args
from edrfleet.cli.exits import EXIT_FAILED, EXIT_OK
from edrfleet.cli.report_cmd import _progress
from edrfleet.fleet.report.event_formats import EVENT_FORMATS
from edrfleet.fleet.report.store import DEFAULT_DB, ReportError
from edrfleet.fleet.report.summary import ACTIONS

DEFAULT_MAX = 100


def _max(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n}: a number of events, 0 for all")
    return n


def _run(args: argparse.Namespace) -> int:
    from edrfleet.fleet.report import run_events
    from edrfleet.fleet.report.event_formats import render_events
    from edrfleet.fleet.report.summary import parse_since

    since = parse_since(args.since) if args.since else None
    if args.search == "":
        raise ReportError("--search '': an empty text matches every event (fix: leave it out)")
    with _progress(sys.stderr.isatty() and not args.verbose, "events") as (on_start, on_done):
        found = run_events(fleet_args.inventory_sources(args), limit=args.limit, db=args.db,
                           rule=args.rule, action=args.action, since=since, search=args.search,
                           max_events=args.max or None, forks=fleet_args.forks(args),
                           connect_timeout=fleet_args.connect_timeout(args),
                           pull=not args.no_pull, on_start=on_start, on_done=on_done)
    terminal = sys.stdout.isatty()
    width = os.get_terminal_size().columns if terminal else 160
    text = render_events(found.events, args.format, terminal=terminal, width=width)
    sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace"))
    sys.stdout.flush()
    if found.events.more:
        print(f"edrfleet: the {args.max} newest matching events shown; more match (fix: "
              "-n 0 for all, or narrow with --since, --rule, --action, --search, -l)",
              file=sys.stderr)
    for p in found.failed:
        print(f"edrfleet: {p.host}: not pulled: {fleet_args.without_host(p.host, p.error)}",
              file=sys.stderr)
    return EXIT_FAILED if found.failed else EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "events", help="pull new events from the hosts and list the stored ones",
        description="List stored events, newest first: host, time, user, parent, working "
        "directory, command line, rule, action, severity. Filters combine (all must hold).")
    fleet_args.add_fleet_options(p)
    p.add_argument("--rule", default=None, metavar="ID", help="only this rule's events")
    p.add_argument("--action", choices=ACTIONS, default=None,
                   help="only events with this action")
    p.add_argument("--since", default=None, metavar="T",
                   help="only events since T: 1h, 7d, 2026-12-01T05:00Z (default: all)")
    p.add_argument("--search", default=None, metavar="TEXT",
                   help="only command lines holding TEXT: a plain substring (no wildcards), "
                        "case-insensitive (ASCII letters)")
    p.add_argument("--format", choices=EVENT_FORMATS, default="table",
                   help="table; json (one array of the rows); ndjson (each event's JSON "
                        "line as the agent wrote it); csv (a header, a row per event)")
    p.add_argument("-n", "--max", type=_max, default=DEFAULT_MAX, metavar="N",
                   help="at most N events, the newest (default %(default)s; 0: all)")
    p.add_argument("--db", default=str(DEFAULT_DB), metavar="FILE|URI",
                   help="the central store: a SQLite file (default %(default)s) or "
                        "postgresql://USER@HOST/DB")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="one line per host pulled on stderr instead of the progress bar")
    p.add_argument("--no-pull", action="store_true",
                   help="list what the store holds, without contacting the hosts")
    p.set_defaults(func=_run)
