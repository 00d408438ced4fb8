"""The report summary: what the store holds for the selected hosts, over ``--since``.

:func:`summarize` returns a plain, JSON-ready dict (the ``json`` format prints it as is)::

    generated_at, since, db                  ISO 8601 UTC ("Z"), since may be null
    totals       {blocked, would_block, logged, other}
    hosts        [{name, pull, error, new_events, malformed, lost, blocked, would_block, logged,
                   other, last_event, state, backend, policy_sha256, agent_version}]
                 (inventory order; malformed: lines of this pull that were not JSON objects)
    rules        [{rule, severity, blocked, would_block, logged, other, total}]  (most first)
    top_blocked  [{command_line, count, hosts, last}]                            (most first)
    timeline     {start, end, bucket_seconds, buckets: [{start, blocked, would_block, logged,
                   other}]}
    failed_hosts [names of hosts that could not be pulled]

``pull`` is ``ok``, ``failed`` or ``skipped`` (summary from the store only).  ``other`` counts
events whose ``event.action`` is not one of the three the agent writes.  Values are the
events' own strings: formats must escape them for where they print.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edrfleet.fleet.report.store import ReportError, Store

ACTIONS = ("blocked", "would_block", "logged")
TOP_BLOCKED = 10
MAX_BUCKETS = 48
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhdw])")
_BUCKET_SIZES = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)


def parse_since(text: str, now: float | None = None) -> float:
    """``--since`` as epoch seconds: a duration back from now (``90s``, ``15m``, ``1h``,
    ``7d``, ``2w``) or an ISO 8601 time (``2026-12-01``, ``2026-12-01T05:00``, with ``Z`` or an
    offset; without one it is UTC, like the events).

    Raises:
        ReportError: neither; the message names the fix.
    """
    text = text.strip()
    m = _RELATIVE.fullmatch(text)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--since {text!r}: not a duration or an ISO time (fix: e.g. 1h, 7d, "
                         "2026-12-01T05:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        when = datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, OSError, ValueError):  # a hostile @timestamp far out of range
        return None
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _zero() -> dict[str, int]:
    return {a: 0 for a in (*ACTIONS, "other")}


def _action(value: Any) -> str:
    return value if value in ACTIONS else "other"


def _bucket_size(span: float) -> int:
    for size in _BUCKET_SIZES:
        if span / size <= MAX_BUCKETS:
            return size
    return int(span / MAX_BUCKETS) + 1


def _status_fields(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The status.json fields the summary shows, as strings (or None): the file comes from
    the host, and a value of another type must not break a format."""
    st = status if isinstance(status, Mapping) else {}

    def text(key: str) -> str | None:
        v = st.get(key)
        return None if v is None else str(v)

    return {"state": text("state"), "backend": text("backend"),
            "policy_sha256": text("policy_sha256"), "agent_version": text("version")}


def summarize(store: Store, hosts: Sequence[str], *, since: float | None = None,
              pulls: Mapping[str, Any] | None = None, now: float | None = None) -> dict[str, Any]:
    """Summarize ``hosts`` (inventory names, in order) from ``store``.

    Two passes over the events of the period: one grouped by host, rule, severity, action and
    timeline bucket (everything but the command lines), one over the blocked command lines.

    Args:
        pulls: host -> its pull result (:class:`edrfleet.fleet.report.pull.HostPull`), for the
            pull column; hosts missing from it show ``skipped``.
        now: the clock (tests).
    """
    now = time.time() if now is None else now
    tl_start, size, n_buckets = _timeline_frame(store, since, now)
    buckets = [{"start": iso(tl_start + k * size)} | _zero() for k in range(n_buckets)]
    per_host = {h: _zero() | {"last_event": None} for h in hosts}
    rules: dict[tuple[str, str], dict[str, int]] = {}
    for host, rule, severity, action, b, n, last in store.counts(hosts, since, tl_start,
                                                                 size or 1):
        key = _action(action)
        row = per_host[host]
        row[key] += n
        if last is not None and (row["last_event"] is None or last > row["last_event"]):
            row["last_event"] = last
        counts = rules.setdefault((str(rule or ""), str(severity or "")), _zero())
        counts[key] += n
        if b is not None and 0 <= b < n_buckets:
            buckets[b][key] += n
    return {
        "generated_at": iso(now),
        "since": iso(since),
        "db": store.location,
        "totals": _totals(per_host.values()),
        "hosts": _hosts(store, hosts, per_host, pulls or {}),
        "rules": _rules(rules),
        "top_blocked": _top_blocked(store, hosts, since),
        "timeline": {"start": iso(tl_start), "end": iso(tl_start + n_buckets * size),
                     "bucket_seconds": size, "buckets": buckets},
        "failed_hosts": [h for h in hosts if pulls and h in pulls and not pulls[h].ok],
    }


def _timeline_frame(store: Store, since: float | None, now: float) -> tuple[float, int, int]:
    """(start, bucket seconds, bucket count) spanning the period: from ``since`` (or the
    store's first event) to its last event."""
    lo, hi = store.time_range()
    if hi is None or (since is not None and hi < since):
        return (since if since is not None else now), 0, 0
    start = since if since is not None else lo
    end = max(hi, min(now, hi + 60))  # up to the last event, or a little past it
    size = _bucket_size(max(end - start, 1))
    start = start - start % size
    return start, size, int((end - start) // size) + 1


def _totals(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    out = _zero()
    for row in rows:
        for k in out:
            out[k] += row[k]
    return out


def _hosts(store: Store, hosts: Sequence[str], per_host: dict[str, dict[str, Any]],
           pulls: Mapping[str, Any]) -> list[dict[str, Any]]:
    known = store.host_rows()
    out = []
    for h in hosts:
        p = pulls.get(h)
        stored = known.get(h, {})
        row = {"name": h,
               "pull": "skipped" if p is None else "ok" if p.ok else "failed",
               "error": p.error if p is not None else stored.get("last_error"),
               "new_events": p.inserted if p is not None else 0,
               "malformed": p.malformed if p is not None else 0,
               "lost": bool(p.lost) if p is not None else bool(stored.get("lost")),
               **per_host[h]}
        row["last_event"] = iso(row["last_event"])
        row.update(_status_fields(stored.get("status")))
        out.append(row)
    return out


def _rules(rules: dict[tuple[str, str], dict[str, int]]) -> list[dict[str, Any]]:
    out = [{"rule": r, "severity": s, **c, "total": sum(c.values())}
           for (r, s), c in rules.items()]
    out.sort(key=lambda x: (-x["total"], x["rule"], x["severity"]))
    return out


def _top_blocked(store: Store, hosts: Sequence[str],
                 since: float | None) -> list[dict[str, Any]]:
    rows = store.top_blocked(hosts, since, TOP_BLOCKED)
    return [{"command_line": "" if c is None else str(c), "count": n, "hosts": nh,
             "last": iso(last)} for c, n, nh, last in rows]
