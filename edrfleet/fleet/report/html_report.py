"""The single-file HTML report: tables and an inline SVG timeline, nothing fetched, no script.

Every value goes through :func:`_e` (control characters made visible as in the terminal, then
``html.escape`` with quotes), so a command line such as ``<script>…`` or ``"><img onerror=…>``
renders as text.  The page also carries a Content-Security-Policy that allows no script and no
external resource at all, in case a browser meets something we failed to escape.
"""

from __future__ import annotations

import html
from typing import Any

from edrfleet.fleet.report.inert import terminal_safe

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
            _td((h["policy_sha256"] or "")[:16]), _td(h["error"])]))
    return _table(["host", "pull", "blocked", "would block", "logged", "last event", "state",
                   "backend", "policy", "error"], rows)


def _rules(summary: dict[str, Any]) -> str:
    rows = ["".join([_td(r["rule"]), _td(r["severity"]), _td(r["blocked"], "n"),
                     _td(r["would_block"], "n"), _td(r["logged"], "n"), _td(r["total"], "n")])
            for r in summary["rules"]]
    return _table(["rule", "severity", "blocked", "would block", "logged", "total"], rows)


def _top(summary: dict[str, Any]) -> str:
    rows = ["".join([_td(c["count"], "n"), _td(c["hosts"], "n"), _td(c["command_line"], "cmd"),
                     _td(c["last"])]) for c in summary["top_blocked"]]
    return _table(["count", "hosts", "command line", "last"], rows)


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
<h2>Top blocked command lines</h2>
{_top(summary)}
</body></html>
"""
