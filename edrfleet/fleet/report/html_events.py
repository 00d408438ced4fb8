"""The HTML report's event tables: the fleet's newest events, and one section per host with
its own (:mod:`edrfleet.fleet.report.html_report` puts them in the page).

Severity and action are coloured by class names chosen here from fixed words, never taken from
an event; every value goes through :func:`edrfleet.fleet.report.html_report.cell`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LATEST_EVENTS = 200  # the page's event table
HOST_EVENTS = 10  # each host section's
HOST_SECTIONS = 50  # hosts with events, the most blocked first; the rest are named
SEVERITY_CLASSES = {"critical": "sev-critical", "high": "sev-high", "medium": "sev-medium",
                    "low": "sev-low"}
ACTION_CLASSES = {"blocked": "act-blocked", "would_block": "act-would", "logged": "act-logged"}
CSS = """
td.path{font-family:ui-monospace,monospace;overflow-wrap:anywhere;max-width:14em}
td.event{min-width:24em}
td.sev-critical{background:#7b1010;color:#fff;font-weight:bold}
td.sev-high{background:#d9534f;color:#fff}
td.sev-medium{background:#f0ad4e;color:#222}
td.sev-low{background:#dff0d8;color:#222}
td.act-blocked{color:#c0392b;font-weight:bold}td.act-would{color:#b35900;font-weight:bold}
td.act-logged{color:#555}
section.host{border-left:4px solid #ccc;padding-left:1em;margin:1.2em 0}
section.host h3{margin:.2em 0;font-size:1em}
"""
EVENT_HEADERS = ["time", "host", "user", "parent", "working directory", "command line",
                 "rule", "technique", "action", "severity"]

Cell = Callable[..., str]
Table = Callable[[list[str], list[str]], str]


def _user(e: dict[str, Any]) -> Any:
    if e["user"] is None and e["user_id"] is not None:
        return f"uid {e['user_id']}"
    return e["user"]


def event_rows(events: list[dict[str, Any]], td: Cell, *, host: bool = True) -> list[str]:
    rows = []
    for e in events:
        cells = [td(e["time"])]
        if host:
            cells.append(td(e["host"]))
        cells += [td(_user(e), "path"), td(e["parent"], "path"),
                  td(e["working_directory"], "path"), td(e["command_line"], "cmd event"),
                  td(e["rule"]), td(" ".join(e["technique"])),
                  td(e["action"], ACTION_CLASSES.get(e["action"] or "", "")),
                  td(e["severity"], SEVERITY_CLASSES.get(e["severity"] or "", ""))]
        rows.append("".join(cells))
    return rows


def events_table(summary: dict[str, Any], td: Cell, table: Table) -> str:
    return table(EVENT_HEADERS, event_rows(summary.get("events", []), td))


def _worst_first(summary: dict[str, Any]) -> list[dict[str, Any]]:
    with_events = [h for h in summary["hosts"] if summary.get("host_events", {}).get(h["name"])]
    return sorted(with_events, key=lambda h: -(h["blocked"] + h["would_block"]))


def host_sections(summary: dict[str, Any], td: Cell, table: Table, e: Cell) -> str:
    """One section per host with events in the period (the most blocked and would-block
    first, at most :data:`HOST_SECTIONS`): its counts and its newest events."""
    hosts = _worst_first(summary)
    headers = [h for h in EVENT_HEADERS if h != "host"]
    parts = []
    for h in hosts[:HOST_SECTIONS]:
        events = summary["host_events"][h["name"]]
        parts.append(
            f'<section class="host"><h3>{e(h["name"])}</h3><p class="muted">'
            f'{e(h["blocked"])} blocked, {e(h["would_block"])} would block, {e(h["logged"])} '
            f'logged; state {e(h["state"] or "-")}, last event {e(h["last_event"] or "-")}; '
            f"newest {len(events)} below</p>"
            f"{table(headers, event_rows(events, td, host=False))}</section>")
    rest = hosts[HOST_SECTIONS:]
    if rest:
        parts.append(f'<p class="muted">{len(rest)} more hosts with events: '
                     f'{e(", ".join(h["name"] for h in rest))} (edrfleet events -l HOST)</p>')
    if not hosts:
        parts.append('<p class="muted">no host has events in this period</p>')
    return "".join(parts)
