"""Print a summary (edrfleet.fleet.report.summary) as a table, JSON, CSV or HTML.

Every string in a summary may come from a hostile host (command lines above all), so each
format makes it inert for where it lands:

- table (rich): ANSI escape sequences removed, every other control or invisible formatting
  character (C0, DEL, C1, zero-width and bidi overrides, line separators, lone surrogates)
  shown as a visible escape (``\\n``, ``\\x07``, ``\\u202e``), cells built as ``rich.text.Text``
  so ``[bold]``-style markup prints as typed, long values cut with ``…``;
- json: ``ensure_ascii``: every non-ASCII and control character is a ``\\u`` escape;
- csv: one table per output (``section``: hosts, rules, top, timeline or totals), one header
  row; RFC 4180 quoting (commas, quotes, newlines), and a cell starting with ``= + - @`` or a
  tab/CR gets a leading ``'`` so a spreadsheet never runs it as a formula;
- html: :mod:`edrfleet.fleet.report.html_report`.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edrfleet.fleet.report.html_report import to_html
from edrfleet.fleet.report.inert import terminal_safe
from edrfleet.fleet.report.summary import drops_line

FORMATS = ("table", "json", "csv", "html")
TABLE_CELL_MAX = 160

_FORMULA = ("=", "+", "-", "@", "\t", "\r")

# --- json ------------------------------------------------------------------------------------


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, ensure_ascii=True) + "\n"


# --- csv -------------------------------------------------------------------------------------

HOST_COLUMNS = ("name", "pull", "error", "new_events", "malformed", "lost", "blocked",
                "would_block", "logged", "other", "last_event", "state", "backend",
                "policy_sha256", "agent_version", "dropped_blocks", "dropped_logs",
                "folded_logs")
RULE_COLUMNS = ("rule", "severity", "techniques", "blocked", "would_block", "logged", "other",
                "total")
TOP_COLUMNS = ("action", "rule", "count", "hosts", "variants", "pattern", "command_line",
               "last")
TIMELINE_COLUMNS = ("start", "blocked", "would_block", "logged", "other")
TOTALS_COLUMNS = ("generated_at", "since", "blocked", "would_block", "logged", "other")
CSV_SECTIONS = ("hosts", "rules", "top", "timeline", "totals")


def csv_cell(value: Any, terminal: bool) -> Any:
    """A CSV cell: None empty, numbers as they are, a list space-separated, text with formulas
    defused (a leading ``'``) and, for a terminal, control characters visible."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    s = terminal_safe(value) if terminal else str(value)
    return "'" + s if s.startswith(_FORMULA) else s


def _csv_rows(summary: dict[str, Any], section: str) -> tuple[tuple[str, ...], list[dict]]:
    if section == "hosts":
        return HOST_COLUMNS, summary["hosts"]
    if section == "rules":
        return RULE_COLUMNS, summary["rules"]
    if section == "top":
        return TOP_COLUMNS, [{"action": action, **row} for action in ("blocked", "would_block")
                             for row in summary[f"top_{action}"]]
    if section == "timeline":
        return TIMELINE_COLUMNS, summary["timeline"]["buckets"]
    if section == "totals":
        return TOTALS_COLUMNS, [{"generated_at": summary["generated_at"],
                                 "since": summary["since"], **summary["totals"]}]
    raise ValueError(f"--section {section!r}: not one of {', '.join(CSV_SECTIONS)}")


def to_csv(summary: dict[str, Any], section: str = "hosts", *, terminal: bool = False) -> str:
    """One table of the summary: a header row, then a row per host, rule, top command (the
    blocked ones, then the would-block ones), timeline bucket, or the one row of totals."""
    columns, rows = _csv_rows(summary, section)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(csv_cell(row.get(c), terminal) for c in columns)
    return buf.getvalue()


# --- table -----------------------------------------------------------------------------------


def _cell(value: Any, limit: int = TABLE_CELL_MAX) -> Text:
    return Text(terminal_safe(value, limit))


def _short(sha: Any) -> str:
    return str(sha)[:12] if sha else ""


def _hosts_table(summary: dict[str, Any]) -> Table:
    t = Table(title=f"Hosts ({since_label_of(summary)})", title_justify="left")
    for col in ("host", "pull", "new", "blocked", "would_block", "logged", "last event",
                "state", "backend", "policy"):
        t.add_column(col, justify="right" if col in ("new", "blocked", "would_block", "logged")
                     else "left", overflow="fold")
    for h in summary["hosts"]:
        pull = h["pull"] + (" (gap: spool rotated past cursor)" if h["lost"] else "")
        if h.get("malformed"):
            pull += f" ({h['malformed']} malformed lines)"
        style = "red" if h["pull"] == "failed" else None
        t.add_row(_cell(h["name"]), Text(terminal_safe(pull), style=style or ""),
                  str(h["new_events"]), str(h["blocked"]), str(h["would_block"]), str(h["logged"]),
                  _cell(h["last_event"] or "-"), _cell(h["state"] or "-"),
                  _cell(h["backend"] or "-"), _cell(_short(h["policy_sha256"]) or "-"))
    return t


def _rules_table(summary: dict[str, Any]) -> Table:
    t = Table(title="Rules", title_justify="left")
    for col in ("rule", "severity", "technique", "blocked", "would_block", "logged", "total"):
        t.add_column(col, justify="left" if col in ("rule", "severity", "technique")
                     else "right", overflow="fold")
    for r in summary["rules"]:
        t.add_row(_cell(r["rule"] or "-"), _cell(r["severity"] or "-"),
                  _cell(" ".join(r["techniques"]) or "-"), str(r["blocked"]),
                  str(r["would_block"]), str(r["logged"]), str(r["total"]))
    return t


def _top_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("count", justify="right")
    t.add_column("hosts", justify="right")
    t.add_column("variants", justify="right")
    t.add_column("rule", overflow="fold")
    t.add_column("command line (an example)", overflow="fold")
    t.add_column("last")
    for c in rows:
        t.add_row(str(c["count"]), str(c["hosts"]), str(c["variants"]), _cell(c["rule"] or "-"),
                  _cell(c["command_line"]), _cell(c["last"] or "-"))
    return t


def since_label_of(summary: dict[str, Any]) -> str:
    return "all stored events" if summary["since"] is None else f"since {summary['since']}"


def to_table(summary: dict[str, Any], *, width: int = 120, color: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color,
                      color_system="standard" if color else None, highlight=False,
                      emoji=False, markup=False)
    console.print(_hosts_table(summary))
    console.print(_rules_table(summary))
    console.print(_top_table(summary["top_blocked"], "Top blocked commands (variants grouped)"))
    if summary["top_would_block"] or summary["totals"]["would_block"]:
        console.print(_top_table(summary["top_would_block"], "Would block (monitor mode: "
                                 "what enforcing would stop; variants grouped)"))
    tot = summary["totals"]
    console.print(Text(f"{tot['blocked']} blocked, {tot['would_block']} would block, "
                       f"{tot['logged']} logged ({since_label_of(summary)}); store "
                       f"{terminal_safe(summary['db'])}"))
    for h in summary["hosts"]:
        if drops_line(h):
            style = "red" if h.get("dropped_blocks") else None
            console.print(Text(f"{terminal_safe(h['name'])}: {drops_line(h)}", style=style or ""))
        if h["pull"] == "failed":
            console.print(Text(f"{terminal_safe(h['name'])}: not pulled: "
                               f"{terminal_safe(h['error'], 400)}", style="red"))
    return buf.getvalue()


def render(summary: dict[str, Any], fmt: str, *, terminal: bool = False,
           width: int = 120, section: str = "hosts") -> str:
    """``summary`` in format ``fmt`` (one of :data:`FORMATS`); ``terminal``: the text goes to
    a terminal (colour in the table, control characters made visible in CSV); ``section``:
    CSV's table (one of :data:`CSV_SECTIONS`).
    """
    if fmt == "table":
        return to_table(summary, width=width, color=terminal)
    if fmt == "json":
        return to_json(summary)
    if fmt == "csv":
        return to_csv(summary, section, terminal=terminal)
    if fmt == "html":
        return to_html(summary)
    raise ValueError(f"--format {fmt!r}: not one of {', '.join(FORMATS)}")


__all__ = ["CSV_SECTIONS", "FORMATS", "csv_cell", "render", "terminal_safe", "to_csv",
           "to_json", "to_table"]
