"""The stored events as a list an analyst reads (``edrfleet events``, the HTML report's
event tables): one dict per event, the store's columns and the fields of its raw JSON that say
who ran what from where.

Row keys (:data:`ROW_KEYS`)::

    time host user user_id parent parent_pid working_directory command_line pid
    rule action severity technique id

``user`` is ``user.name`` (absent for a uid without a passwd entry: then None, ``user_id``
says which); ``parent`` the parent's executable path, else the name the kernel read;
``technique`` the rule's ATT&CK technique ids (a list, maybe empty).  Values are the host's
own strings: formats must escape them for where they print.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from edrfleet.agent import ecs
from edrfleet.fleet.report.store import EventFilter, Store
from edrfleet.fleet.report.times import iso

__all__ = ["ROW_KEYS", "EventFilter", "EventList", "event_row", "list_events"]

ROW_KEYS = ("time", "host", "user", "user_id", "parent", "parent_pid", "working_directory",
            "command_line", "pid", "rule", "action", "severity", "technique", "id")


class EventList(NamedTuple):
    rows: list[dict[str, Any]]  # newest first
    raws: list[str]  # each event's JSON line as the host wrote it, in the same order
    more: bool  # more events match than were asked for


def _parsed(raw: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:  # SQLite takes JSON5, which Python does not: show the columns only
        return {}
    return doc if isinstance(doc, Mapping) else {}


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def event_row(row: Sequence[Any]) -> dict[str, Any]:
    """A store row (:data:`edrfleet.fleet.report.queries.EVENT_COLUMNS`) as a list row."""
    eid, host, ts, action, rule, severity, cmdline, raw = row
    doc = _parsed(raw)
    parent = (ecs.get(doc, ecs.PARENT_EXECUTABLE) or ecs.get(doc, ecs.PARENT_NAME))
    technique = ecs.get(doc, ecs.TECHNIQUE_ID)
    return {"time": iso(ts), "host": host, "user": _text(ecs.get(doc, ecs.USER_NAME)),
            "user_id": _text(ecs.get(doc, ecs.USER_ID)), "parent": _text(parent),
            "parent_pid": ecs.get(doc, ecs.PARENT_PID),
            "working_directory": _text(ecs.get(doc, ecs.WORKING_DIRECTORY)),
            "command_line": _text(cmdline), "pid": ecs.get(doc, ecs.PID),
            "rule": _text(rule), "action": _text(action), "severity": _text(severity),
            "technique": [str(t) for t in technique] if isinstance(technique, list) else [],
            "id": eid}


def list_events(store: Store, where: EventFilter, limit: int | None) -> EventList:
    """The events ``where`` selects, newest first, at most ``limit`` (None: all); the
    database filters and orders them, and only the rows returned are read whole."""
    rows = store.events(where, None if limit is None else limit + 1)
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if more else rows
    return EventList([event_row(r) for r in rows], [r[7] for r in rows], more)
