"""The central report store: what pull, summary and formats use, whichever database holds it.

Two backends with the same semantics:

- SQLite (:mod:`edrfleet.fleet.report.sqlite_store`), the embedded default: one file
  (``.edrfleet/report.db``), for one controller;
- PostgreSQL (:mod:`edrfleet.fleet.report.postgres_store`), ``--db postgresql://…``: several
  controllers may pull into one database at once.

Semantics (both)::

    events   stored once each by (host key, event.id) (a re-sent event is ignored), with the
             columns of edrfleet.fleet.report.fields extracted by the database, and the raw
             JSON line
    hosts    per host key: inventory name, machine id, cursor, last status.json, pulled_at,
             events, lost, dropped, last_error

A host's *key* is its identity, :func:`host_key` of its ``/etc/machine-id`` (read by the pull
on the host) and its inventory name: two fleets whose hosts share names never share rows or
cursors, and a host can neither overwrite nor suppress another's events by sending their
``event.id`` (ids are unique per key only).  The store's methods take and return keys; the
summary sees inventory names through :class:`edrfleet.fleet.report.view.FleetView`.

A pulled batch is one transaction: its events and the host's new cursor (and status) commit
together, so the cursor never points past an event that is not stored.  The cursor moves by
compare-and-set: a batch carries the cursor it was pulled from (``expected``), and the new
one is written only if the store still holds that one (under the database's write lock:
SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's row lock).  Otherwise another controller moved
the cursor meanwhile: the batch's events are still stored (the ones already there ignored),
the cursor is left where the other one put it, and ``Ingested.moved`` is False so the puller
re-reads it.  A cursor never goes back, and no event is lost or stored twice.

Example::

    >>> store = open_store(".edrfleet/report.db")
    >>> key = host_key("web1", "0f3c9e51a2b04d6e8f7a1b2c3d4e5f60")
    >>> store.ingest(key, ['{"event.id":"a1","event.action":"blocked"}'],
    ...              cursor={"inode": 12, "offset": 41}, status=None, lost=False)
    Ingested(inserted=1, ignored=0, malformed=0, moved=True)
    >>> store.cursor(key)
    {'inode': 12, 'offset': 41}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from edrfleet.errors import InputError

DEFAULT_DB = Path(".edrfleet") / "report.db"
# 2: events keyed by (host key, event.id), hosts by key.  A version-1 store is refused, not
# migrated: its rows were keyed by inventory name alone, so two fleets (or a host sending
# another's ids) may already be mixed in it, and a migration would carry that forward as if
# it were true.  The events are still in the hosts' spools: a new store pulls them again.
SCHEMA_VERSION = 2
# Event times outside [2000-01-01, now + 1 day] are stored but drive no timeline (a host's
# clock or a forged @timestamp of year 9999 would squash it into 166-year buckets).
SANE_SINCE = 946684800.0
SANE_AHEAD = 86400.0
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def host_key(name: str, machine_id: str) -> str:
    """The store's key of a host: its machine id (32 hex digits, or "" unknown) and its
    inventory name.  The id holds no ``:``, so the key is unambiguous."""
    return f"{machine_id}:{name}"


def split_key(key: str) -> tuple[str, str]:
    """(name, machine id) of a :func:`host_key` (a key without ``:`` is a bare name)."""
    machine_id, sep, name = key.partition(":")
    return (name, machine_id) if sep else (key, "")


def sane_window(now: float) -> tuple[float, float]:
    """The event times that may drive a timeline (see SANE_SINCE)."""
    return SANE_SINCE, now + SANE_AHEAD


class ReportError(InputError, ValueError):
    """A report database or a report argument that cannot be used; the message names the fix."""


class _Unchecked:
    def __repr__(self) -> str:
        return "UNCHECKED"


# ``expected=UNCHECKED``: write the cursor whatever the store holds (one controller, tests).
UNCHECKED: Any = _Unchecked()

Cursor = dict[str, int]


class Ingested(NamedTuple):
    inserted: int  # new events stored
    ignored: int  # already stored (same event.id) or without an event.id
    malformed: int  # lines that are not a JSON object
    moved: bool = True  # False: another controller had moved the cursor; it was left there


@dataclass(frozen=True)
class EventFilter:
    """Which stored events: every condition given must hold (AND).

    ``hosts``: inventory names (None: all); ``since``: epoch seconds; ``rule``: a rule id;
    ``action``: ``blocked``, ``would_block`` or ``logged``; ``search``: a substring of the
    command line, case-insensitive (how: :mod:`edrfleet.fleet.report.queries`).
    """

    hosts: Sequence[str] | None = None
    since: float | None = None
    rule: str | None = None
    action: str | None = None
    search: str | None = None

    def __post_init__(self) -> None:
        if self.search is not None:
            try:
                self.search.encode("utf-8")
            except UnicodeEncodeError:
                raise ReportError("--search: holds characters that are not text (lone "
                                  "surrogates) (fix: search for the text around them)") from None
            if "\x00" in self.search:
                raise ReportError("--search: holds a NUL, which no command line holds")


class Store(Protocol):
    """What the report needs from a store.  Implementations are thread-safe."""

    location: str  # where it is, for the summary (never a password)
    writers: int  # how many ingest calls may usefully run at once

    def ingest(self, host: str, lines: Sequence[str], *, cursor: Cursor | None,
               status: dict[str, Any] | None, lost: bool,
               expected: Cursor | None = UNCHECKED, dropped: int = 0) -> Ingested:
        """Store one pulled batch of the host keyed ``host`` and move its cursor from
        ``expected`` to ``cursor``, in one transaction (see the module's docstring);
        ``dropped``: lines the pull dropped (too long), added to the host's count."""
        ...

    def latest_key(self, name: str) -> str | None:
        """The key of the host last pulled under inventory name ``name``, None if never."""
        ...

    def record_error(self, host: str, error: str) -> None:
        """``host`` could not be pulled; its cursor and events stay as they are."""
        ...

    def cursor(self, host: str) -> Cursor | None: ...

    def host_rows(self) -> dict[str, dict[str, Any]]:
        """Per host key: name, machine_id, status (dict or None), pulled_at, events, lost,
        dropped, last_error."""
        ...

    def count(self) -> int: ...

    def time_range(self) -> tuple[float | None, float | None]:
        """The first and last event time (epoch seconds) of the whole store, of the times
        within :func:`sane_window`."""
        ...

    def counts(self, hosts: Sequence[str], since: float | None, start: float,
               size: float) -> list[tuple[Any, ...]]:
        """Events of ``hosts`` since ``since``, counted per (host, rule, severity, action,
        timeline bucket ``(ts - start) // size``): rows of those five, count, max(ts) of the
        times within :func:`sane_window`, and max(id) (one event of the group, read with its
        host by :meth:`raw_events`)."""
        ...

    def raw_events(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(host key, event id) -> its raw JSON line, for the ``refs`` stored: by the
        store's key, so another host that sent the same id can't stand in for the event."""
        ...

    def top_commands(self, hosts: Sequence[str], since: float | None, action: str,
                     limit: int) -> list[tuple[Any, ...]]:
        """The commands most often given ``action``, their variants grouped (rule and
        :func:`edrfleet.fleet.report.queries.command_pattern`): rows of (rule, pattern,
        count, distinct hosts, distinct command lines, an example command line (the least
        in byte order), max(ts)), most first."""
        ...

    def events(self, where: EventFilter, limit: int | None) -> list[tuple[Any, ...]]:
        """The events ``where`` selects, newest first (by time, then id; those without a
        time last), at most ``limit`` (None: all): rows of
        :data:`edrfleet.fleet.report.queries.EVENT_COLUMNS`.  Filtered by the database."""
        ...

    def latest_per_host(self, hosts: Sequence[str], since: float | None,
                        per_host: int) -> list[tuple[Any, ...]]:
        """Each host's ``per_host`` newest events since ``since`` (as :meth:`events`' rows),
        by host, newest first."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...
