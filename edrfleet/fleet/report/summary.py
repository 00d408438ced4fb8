"""The report summary: what the store holds for the selected hosts, over ``--since``.

:func:`summarize` returns a plain, JSON-ready dict (the ``json`` format prints it as is)::

    generated_at, since, db                  ISO 8601 UTC ("Z"), since may be null
    totals       {blocked, would_block, logged, other}
    hosts        [{name, pull, error, new_events, malformed, lost, blocked, would_block, logged,
                   other, last_event, state, backend, policy_sha256, agent_version}]
                 (inventory order; malformed: lines of this pull that were not JSON objects)
    rules        [{rule, severity, techniques, blocked, would_block, logged, other, total}]
                 (most first; techniques: the rule's ATT&CK ids, from its events)
    top_blocked  [{rule, pattern, command_line, count, hosts, variants, last}]  (most first)
    top_would_block   the same for would-be blocks (monitor mode: what enforcing would stop)
    timeline     {start, end, bucket_seconds, buckets: [{start, blocked, would_block, logged,
                   other}]}
    failed_hosts [names of hosts that could not be pulled]

The top lists group the variants of one command (:mod:`edrfleet.fleet.report.queries`: the
rule, and the command line with the program's directory dropped and numbers as ``#``):
``pattern`` is that, ``command_line`` one example, ``variants`` how many distinct command
lines it stands for.  With ``latest_events`` (the HTML report) the summary also holds
``events`` (the newest events of the period, :func:`edrfleet.fleet.report.events.event_row`
dicts) and ``host_events`` (host -> its newest events).

``pull`` is ``ok``, ``failed`` or ``skipped`` (summary from the store only).  ``other`` counts
events whose ``event.action`` is not one of the three the agent writes.  Values are the
events' own strings: formats must escape them for where they print.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edrfleet.agent import ecs
from edrfleet.fleet.report.events import event_row
from edrfleet.fleet.report.store import EventFilter, Store
from edrfleet.fleet.report.times import iso, parse_since

__all__ = ["ACTIONS", "iso", "parse_since", "summarize"]

ACTIONS = ("blocked", "would_block", "logged")
TOP_BLOCKED = 10  # lines in each top list
MAX_BUCKETS = 48
_BUCKET_SIZES = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)


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
              pulls: Mapping[str, Any] | None = None, now: float | None = None,
              latest_events: int = 0, per_host_events: int = 0) -> dict[str, Any]:
    """Summarize ``hosts`` (inventory names, in order) from ``store``.

    Passes over the events of the period: one grouped by host, rule, severity, action and
    timeline bucket (everything but the command lines), one over the blocked and one over the
    would-be-blocked command lines; then one event per rule is read whole, by key (its
    techniques).

    Args:
        pulls: host -> its pull result (:class:`edrfleet.fleet.report.pull.HostPull`), for the
            pull column; hosts missing from it show ``skipped``.
        now: the clock (tests).
        latest_events, per_host_events: also the period's newest events, and each host's
            (``events``, ``host_events``; 0: none).
    """
    now = time.time() if now is None else now
    tl_start, size, n_buckets = _timeline_frame(store, since, now)
    buckets = [{"start": iso(tl_start + k * size)} | _zero() for k in range(n_buckets)]
    per_host = {h: _zero() | {"last_event": None} for h in hosts}
    rules: dict[tuple[str, str], dict[str, int]] = {}
    # rule -> (time, host, id) of a recent event: an event is named by its host and its id
    rule_event: dict[str, tuple[float, str, str]] = {}
    for host, rule, severity, action, b, n, last, eid in store.counts(hosts, since, tl_start,
                                                                      size or 1):
        key = _action(action)
        row = per_host[host]
        row[key] += n
        if last is not None and (row["last_event"] is None or last > row["last_event"]):
            row["last_event"] = last
        known = rule_event.get(str(rule or ""))
        if known is None or (last or 0) > known[0]:  # its newest group's: today's tags
            rule_event[str(rule or "")] = (last or 0, host, eid)
        counts = rules.setdefault((str(rule or ""), str(severity or "")), _zero())
        counts[key] += n
        if b is not None and 0 <= b < n_buckets:
            buckets[b][key] += n
    out = {
        "generated_at": iso(now),
        "since": iso(since),
        "db": store.location,
        "totals": _totals(per_host.values()),
        "hosts": _hosts(store, hosts, per_host, pulls or {}),
        "rules": _rules(rules, _techniques(store, rule_event)),
        "top_blocked": _top(store, hosts, since, "blocked"),
        "top_would_block": _top(store, hosts, since, "would_block"),
        "timeline": {"start": iso(tl_start), "end": iso(tl_start + n_buckets * size),
                     "bucket_seconds": size, "buckets": buckets},
        "failed_hosts": [h for h in hosts if pulls and h in pulls and not pulls[h].ok],
    }
    if latest_events or per_host_events:
        rows = store.events(EventFilter(hosts, since), latest_events) if latest_events else []
        out["events"] = [event_row(r) for r in rows]
        host_events: dict[str, list[dict[str, Any]]] = {}
        for r in store.latest_per_host(hosts, since, per_host_events) if per_host_events else ():
            host_events.setdefault(r[1], []).append(event_row(r))
        out["host_events"] = host_events
    return out


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


def _techniques(store: Store,
                rule_event: Mapping[str, tuple[float, str, str]]) -> dict[str, list]:
    """rule -> its ATT&CK technique ids, as one of its recent events carries them
    (``threat.*`` comes from the rule's tags, the same in every event of one policy)."""
    raws = store.raw_events([(host, eid) for _t, host, eid in rule_event.values()])
    out = {}
    for rule, (_t, host, eid) in rule_event.items():
        try:
            ids = ecs.get(json.loads(raws.get((host, eid), "{}")), ecs.TECHNIQUE_ID)
        except (ValueError, AttributeError):  # not JSON to Python, or not an object
            continue
        out[rule] = [str(i) for i in ids] if isinstance(ids, list) else []
    return out


def _rules(rules: dict[tuple[str, str], dict[str, int]],
           techniques: Mapping[str, list]) -> list[dict[str, Any]]:
    out = [{"rule": r, "severity": s, "techniques": techniques.get(r, []), **c,
            "total": sum(c.values())} for (r, s), c in rules.items()]
    out.sort(key=lambda x: (-x["total"], x["rule"], x["severity"]))
    return out


def _top(store: Store, hosts: Sequence[str], since: float | None,
         action: str) -> list[dict[str, Any]]:
    rows = store.top_commands(hosts, since, action, TOP_BLOCKED)
    return [{"rule": "" if rule is None else str(rule), "pattern": "" if p is None else str(p),
             "command_line": "" if c is None else str(c), "count": n, "hosts": nh,
             "variants": nv, "last": iso(last)} for rule, p, n, nh, nv, c, last in rows]
