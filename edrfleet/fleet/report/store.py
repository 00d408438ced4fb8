"""The central report store: what pull, summary and formats use, whichever database holds it.

Two backends with the same semantics:

- SQLite (:mod:`edrfleet.fleet.report.sqlite_store`), the embedded default: one file
  (``.edrfleet/report.db``), for one controller;
- PostgreSQL (:mod:`edrfleet.fleet.report.postgres_store`), ``--db postgresql://…``: several
  controllers may pull into one database at once.

Semantics (both)::

    events   stored once each by event.id (a re-sent event is ignored), with the columns of
             edrfleet.fleet.report.fields extracted by the database, and the raw JSON line
    hosts    per inventory name: cursor, last status.json, pulled_at, events, lost, last_error

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
    >>> store.ingest("web1", ['{"event.id":"a1","event.action":"blocked"}'],
    ...              cursor={"inode": 12, "offset": 41}, status=None, lost=False)
    Ingested(inserted=1, ignored=0, malformed=0, moved=True)
    >>> store.cursor("web1")
    {'inode': 12, 'offset': 41}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from edrfleet.errors import InputError

DEFAULT_DB = Path(".edrfleet") / "report.db"
SCHEMA_VERSION = 1
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


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
               expected: Cursor | None = UNCHECKED) -> Ingested:
        """Store one pulled batch and move ``host``'s cursor from ``expected`` to ``cursor``,
        in one transaction (see the module's docstring)."""
        ...

    def record_error(self, host: str, error: str) -> None:
        """``host`` could not be pulled; its cursor and events stay as they are."""
        ...

    def cursor(self, host: str) -> Cursor | None: ...

    def host_rows(self) -> dict[str, dict[str, Any]]:
        """Per host: status (dict or None), pulled_at, events, lost, last_error."""
        ...

    def count(self) -> int: ...

    def time_range(self) -> tuple[float | None, float | None]:
        """The first and last event time (epoch seconds) of the whole store."""
        ...

    def counts(self, hosts: Sequence[str], since: float | None, start: float,
               size: float) -> list[tuple[Any, ...]]:
        """Events of ``hosts`` since ``since``, counted per (host, rule, severity, action,
        timeline bucket ``(ts - start) // size``): rows of those five, count, max(ts), and
        max(id) (one event of the group, for :meth:`raw_events`)."""
        ...

    def raw_events(self, ids: Sequence[str]) -> dict[str, str]:
        """event id -> its raw JSON line, for the ``ids`` stored (read by key)."""
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
