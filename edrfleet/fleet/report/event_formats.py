"""Print an event list (:mod:`edrfleet.fleet.report.events`) as a table, JSON, NDJSON or CSV.

Hostile strings are made inert as in :mod:`edrfleet.fleet.report.formats`:

- table: control characters visible, escape sequences removed, markup printed as typed;
- json: one array of the list's rows (:data:`edrfleet.fleet.report.events.ROW_KEYS`),
  ``ensure_ascii``;
- ndjson: each event's JSON line exactly as the agent wrote it (nothing re-encoded, for a
  SIEM or ``jq``); on a terminal, characters that could move the cursor or reorder text are
  shown escaped (the lines are JSON, whose strings hold no raw C0 control characters);
- csv: one row per event under one header row, RFC 4180 quoting, formulas defused.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edrfleet.fleet.report.events import ROW_KEYS, EventList
from edrfleet.fleet.report.formats import TABLE_CELL_MAX, csv_cell
from edrfleet.fleet.report.inert import terminal_safe

EVENT_FORMATS = ("table", "json", "ndjson", "csv")
# rich styles on a terminal; the HTML report has its own colours for the same words
ACTION_STYLES = {"blocked": "bold red", "would_block": "yellow", "logged": "dim"}
SEVERITY_STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "green"}
_TABLE = (("time", "time"), ("host", "host"), ("user", "user"), ("parent", "parent"),
          ("working_directory", "cwd"), ("command_line", "command line"), ("rule", "rule"),
          ("action", "action"), ("severity", "severity"))


def _user(row: dict[str, Any]) -> Any:
    if row["user"] is None and row["user_id"] is not None:
        return f"uid {row['user_id']}"
    return row["user"]


def to_table(events: EventList, *, width: int = 160, color: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color,
                      color_system="standard" if color else None, highlight=False,
                      emoji=False, markup=False)
    t = Table(title=f"{len(events.rows)} events, newest first", title_justify="left")
    for _key, title in _TABLE:
        t.add_column(title, overflow="fold", ratio=4 if title == "command line" else None)
    for row in events.rows:
        cells = []
        for key, _title in _TABLE:
            value = _user(row) if key == "user" else row[key]
            style = (ACTION_STYLES if key == "action" else SEVERITY_STYLES if key == "severity"
                     else {}).get(value, "")
            cells.append(Text(terminal_safe("-" if value is None else value, TABLE_CELL_MAX),
                              style=style))
        t.add_row(*cells)
    console.print(t)
    return buf.getvalue()


def to_json(events: EventList) -> str:
    return json.dumps(events.rows, indent=2, ensure_ascii=True) + "\n"


def to_ndjson(events: EventList, *, terminal: bool = False) -> str:
    lines: Sequence[str] = events.raws
    if terminal:
        lines = [terminal_safe(x) for x in lines]
    return "".join(x + "\n" for x in lines)


def to_csv(events: EventList, *, terminal: bool = False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(ROW_KEYS)
    for row in events.rows:
        w.writerow(csv_cell(" ".join(row[k]) if k == "technique" else row[k], terminal)
                   for k in ROW_KEYS)
    return buf.getvalue()


def render_events(events: EventList, fmt: str, *, terminal: bool = False,
                  width: int = 160) -> str:
    """``events`` in format ``fmt`` (one of :data:`EVENT_FORMATS`); ``terminal``: the text
    goes to a terminal (colours in the table, control characters made visible elsewhere)."""
    if fmt == "table":
        return to_table(events, width=width, color=terminal)
    if fmt == "json":
        return to_json(events)
    if fmt == "ndjson":
        return to_ndjson(events, terminal=terminal)
    if fmt == "csv":
        return to_csv(events, terminal=terminal)
    raise ValueError(f"--format {fmt!r}: not one of {', '.join(EVENT_FORMATS)}")
