"""The single-file HTML report: tables and an inline SVG timeline, nothing fetched, no script.

Sections: totals, timeline, hosts, rules (with their ATT&CK techniques), the top blocked and
would-block commands (variants grouped), the fleet's newest events, and one section per host
with its newest events; severity and action are coloured by class names chosen here from
fixed words, never taken from an event.  The events are in the summary when it was made with
``latest_events`` / ``per_host_events`` (``edrfleet report --format html`` asks for them).

Every value goes through :func:`_e` (control characters made visible as in the terminal, then
``html.escape`` with quotes), so a command line such as ``<script>…`` or ``"><img onerror=…>``
renders as text.  The page also carries a Content-Security-Policy that allows no script and no
external resource at all, in case a browser meets something we failed to escape.
"""

from __future__ import annotations

import html
from typing import Any

from edrfleet.fleet.report.inert import terminal_safe
from edrfleet.fleet.report.summary import drops_line

__all__ = ["HOST_EVENTS", "LATEST_EVENTS", "to_html"]

LATEST_EVENTS = 200  # the page's event table
HOST_EVENTS = 10  # each host section's
HOST_SECTIONS = 50  # hosts with events, the most blocked first; the rest are named
SEVERITY_CLASSES = {"critical": "sev-critical", "high": "sev-high", "medium": "sev-medium",
                    "low": "sev-low"}
ACTION_CLASSES = {"blocked": "act-blocked", "would_block": "act-would", "logged": "act-logged"}
EVENT_HEADERS = ["time", "host", "user", "parent", "working directory", "command line",
                 "rule", "technique", "action", "severity"]
HTML_CELL_MAX = 4096
_CSP = "default-src 'none'; style-src 'unsafe-inline'"  # no script, nothing fetched
_COLORS = {"blocked": "#c0392b", "would_block": "#e67e22", "logged": "#7f8c8d",
           "other": "#8e44ad"}
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.cmd{font-family:ui-monospace,monospace;word-break:break-all;max-width:60em}
.failed{color:#c0392b;font-weight:bold}.muted{color:#777}
.legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em}
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


def _e(value: Any, limit: int = HTML_CELL_MAX) -> str:
    return html.escape(terminal_safe(value, limit), quote=True)


def _td(value: Any, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<td{c}>{_e('-' if value is None or value == '' else value)}</td>"


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f"<tr>{r}</tr>" for r in rows) or (
        f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _hosts(summary: dict[str, Any]) -> str:
    rows = []
    for h in summary["hosts"]:
        pull = h["pull"] + (" (gap)" if h["lost"] else "")
        pcls = "failed" if h["pull"] == "failed" else ""
        rows.append("".join([
            _td(h["name"]), _td(pull, pcls), _td(h["blocked"], "n"), _td(h["would_block"], "n"),
            _td(h["logged"], "n"), _td(h["last_event"]), _td(h["state"]), _td(h["backend"]),
            _td((h["policy_sha256"] or "")[:16]), _td(drops_line(h)), _td(h["error"])]))
    return _table(["host", "pull", "blocked", "would block", "logged", "last event", "state",
                   "backend", "policy", "lost / folded events", "error"], rows)


def _rules(summary: dict[str, Any]) -> str:
    rows = ["".join([_td(r["rule"]), _td(r["severity"], SEVERITY_CLASSES.get(r["severity"], "")),
                     _td(" ".join(r["techniques"])), _td(r["blocked"], "n"),
                     _td(r["would_block"], "n"), _td(r["logged"], "n"), _td(r["total"], "n")])
            for r in summary["rules"]]
    return _table(["rule", "severity", "ATT&CK technique", "blocked", "would block", "logged",
                   "total"], rows)


def _top(rows: list[dict[str, Any]]) -> str:
    cells = ["".join([_td(c["count"], "n"), _td(c["hosts"], "n"), _td(c["variants"], "n"),
                      _td(c["rule"]), _td(c["command_line"], "cmd"), _td(c["last"])])
             for c in rows]
    return _table(["count", "hosts", "variants", "rule", "command line (an example)", "last"],
                  cells)


# --- events ----------------------------------------------------------------------------------


def _user(e: dict[str, Any]) -> Any:
    if e["user"] is None and e["user_id"] is not None:
        return f"uid {e['user_id']}"
    return e["user"]


def event_rows(events: list[dict[str, Any]], *, host: bool = True) -> list[str]:
    rows = []
    for e in events:
        cells = [_td(e["time"])]
        if host:
            cells.append(_td(e["host"]))
        cells += [_td(_user(e), "path"), _td(e["parent"], "path"),
                  _td(e["working_directory"], "path"), _td(e["command_line"], "cmd event"),
                  _td(e["rule"]), _td(" ".join(e["technique"])),
                  _td(e["action"], ACTION_CLASSES.get(e["action"] or "", "")),
                  _td(e["severity"], SEVERITY_CLASSES.get(e["severity"] or "", ""))]
        rows.append("".join(cells))
    return rows


def events_table(summary: dict[str, Any]) -> str:
    return _table(EVENT_HEADERS, event_rows(summary.get("events", [])))


def _worst_first(summary: dict[str, Any]) -> list[dict[str, Any]]:
    with_events = [h for h in summary["hosts"] if summary.get("host_events", {}).get(h["name"])]
    return sorted(with_events, key=lambda h: -(h["blocked"] + h["would_block"]))


def host_sections(summary: dict[str, Any]) -> str:
    """One section per host with events in the period (the most blocked and would-block
    first, at most :data:`HOST_SECTIONS`): its counts and its newest events."""
    hosts = _worst_first(summary)
    headers = [h for h in EVENT_HEADERS if h != "host"]
    parts = []
    for h in hosts[:HOST_SECTIONS]:
        events = summary["host_events"][h["name"]]
        parts.append(
            f'<section class="host"><h3>{_e(h["name"])}</h3><p class="muted">'
            f'{_e(h["blocked"])} blocked, {_e(h["would_block"])} would block, {_e(h["logged"])} '
            f'logged; state {_e(h["state"] or "-")}, last event {_e(h["last_event"] or "-")}; '
            f"newest {len(events)} below</p>"
            f"{_table(headers, event_rows(events, host=False))}</section>")
    rest = hosts[HOST_SECTIONS:]
    if rest:
        parts.append(f'<p class="muted">{len(rest)} more hosts with events: '
                     f'{_e(", ".join(h["name"] for h in rest))} (edrfleet events -l HOST)</p>')
    if not hosts:
        parts.append('<p class="muted">no host has events in this period</p>')
    return "".join(parts)


def timeline_svg(timeline: dict[str, Any], width: int = 900, height: int = 220) -> str:
    """Stacked bars per time bucket (blocked at the bottom); a <title> on each bar says its
    counts when hovered."""
    buckets = timeline["buckets"]
    if not buckets:
        return '<p class="muted">no events in this period</p>'
    left, bottom, top = 48, 28, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max(sum(b[a] for a in _COLORS) for b in buckets) or 1
    bar_w = plot_w / len(buckets)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="events over time">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
             'stroke="#999"/>',
             f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" font-size="11">{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>']
    label_every = max(1, len(buckets) // 6)
    for k, b in enumerate(buckets):
        x = left + k * bar_w
        y = top + plot_h
        tip = ", ".join(f"{b[a]} {a}" for a in _COLORS if b[a])
        parts.append(f"<g><title>{_e(b['start'])}: {_e(tip or 'none')}</title>")
        for action, color in _COLORS.items():
            h = plot_h * b[action] / peak
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}"'
                             f' height="{h:.1f}" fill="{color}"/>')
        parts.append("</g>")
        if k % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="11">'
                         f'{_e((b["start"] or "")[5:16].replace("T", " "))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(summary: dict[str, Any]) -> str:
    tot = summary["totals"]
    since = summary["since"] or "all stored events"
    failed = summary["failed_hosts"]
    banner = (f'<p class="failed">Not pulled: {_e(", ".join(failed))} (their events may be '
              "missing below)</p>") if failed else ""
    legend = "".join(f'<span style="background:{c}"></span>{_e(a)}' for a, c in _COLORS.items())
    tl = summary["timeline"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edrfleet report {_e(summary["generated_at"])}</title><style>{_CSS}</style></head>
<body>
<h1>edrfleet report</h1>
<p>Generated {_e(summary["generated_at"])}; period: {_e(since)}; store {_e(summary["db"])}.</p>
{banner}
<p><b>{_e(tot["blocked"])}</b> blocked, <b>{_e(tot["would_block"])}</b> would block,
<b>{_e(tot["logged"])}</b> logged.</p>
<h2>Timeline</h2>
<p class="legend muted">{_e(tl["bucket_seconds"])} s per bar{legend}</p>
{timeline_svg(tl)}
<h2>Hosts</h2>
{_hosts(summary)}
<h2>Rules</h2>
{_rules(summary)}
<h2>Top blocked commands</h2>
<p class="muted">Variants of one command grouped: same rule, same program wherever it was
copied, numbers ignored; one example shown.</p>
{_top(summary["top_blocked"])}
<h2>Would block (monitor mode)</h2>
<p class="muted">Commands a rule would have blocked if enforcing; variants grouped.</p>
{_top(summary["top_would_block"])}
<h2>Newest events</h2>
{events_table(summary)}
<h2>Per host</h2>
{host_sections(summary)}
</body></html>
"""
