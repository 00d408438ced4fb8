"""The SQLite report store: one file (default ``.edrfleet/report.db``), the embedded default.

Tables (semantics in :mod:`edrfleet.fleet.report.store`)::

    events(host TEXT NOT NULL,             -- the key of the host it was pulled from
           id TEXT NOT NULL,               -- event.id: a re-sent event is ignored
           ts REAL,                        -- @timestamp as epoch seconds (NULL if unparsable)
           action TEXT, rule TEXT, severity TEXT, cmdline TEXT,
           raw TEXT NOT NULL,              -- the event's JSON line as the host wrote it
           PRIMARY KEY(host, id))
    hosts(key TEXT PRIMARY KEY, name TEXT, machine_id TEXT, cursor TEXT, status TEXT,
          pulled_at REAL, events INTEGER, lost INTEGER, dropped INTEGER, last_error TEXT)

A batch is one ``BEGIN IMMEDIATE`` transaction, which also makes the cursor's
compare-and-set atomic between processes sharing the file.  Columns are extracted from the
JSON by SQLite itself (``json_extract``, paths from :mod:`edrfleet.fleet.report.fields`), in
C, while the GIL is released for the pulling threads.  A batch holding a line that is not
JSON falls back to inserting line by line and counts the lines SQLite refuses.  (SQLite
3.40's json_extract ends a string at an escaped NUL; argv-derived command lines cannot hold
one, and ``raw`` keeps the line whole either way.)

Reads filter and group in SQL; the top lists' command pattern
(:func:`edrfleet.fleet.report.queries.command_pattern`) is a function registered on the
connection, ``edrfleet_pattern``, since SQLite has no regular-expression replace.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edrfleet.fleet.report.fields import COLUMNS, first_of, sqlite_path
from edrfleet.fleet.report.queries import (
    EVENT_COLUMNS,
    LIKE_ESCAPE,
    command_pattern,
    like_pattern,
)
from edrfleet.fleet.report.store import (
    DEFAULT_DB,
    SCHEMA_VERSION,
    UNCHECKED,
    Cursor,
    EventFilter,
    Ingested,
    ReportError,
    Store,
    sane_window,
    split_key,
)

_SURROGATE = re.compile("[\ud800-\udfff]")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS events(
    host TEXT NOT NULL, id TEXT NOT NULL, ts REAL, action TEXT, rule TEXT,
    severity TEXT, cmdline TEXT, raw TEXT NOT NULL, PRIMARY KEY(host, id));
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS hosts(
    key TEXT PRIMARY KEY, name TEXT NOT NULL, machine_id TEXT NOT NULL, cursor TEXT,
    status TEXT, pulled_at REAL, events INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0, dropped INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE INDEX IF NOT EXISTS hosts_name ON hosts(name, pulled_at);
"""


def _field(column: str) -> str:
    return first_of([f"json_extract(?2, '{sqlite_path(p)}')" for p in COLUMNS[column]])


# One JSON parse per line: SQLite caches the parsed text across the json_extract calls of
# one row.  julianday() reads ISO 8601 with 'Z' or '+HH:MM' (anything else gives NULL) to the
# millisecond; a double of days is good to ~50 us, so round to the millisecond it read.
_INSERT = f"""
INSERT OR IGNORE INTO events(host, id, ts, action, rule, severity, cmdline, raw)
VALUES (?1, {_field("id")}, round((julianday({_field("ts")}) - 2440587.5) * 86400.0, 3),
        {_field("action")}, {_field("rule")}, {_field("severity")}, {_field("cmdline")}, ?2)
"""


def _text(raw: bytes) -> str:
    # json_extract turns a \udcXX escape into bytes that are not UTF-8; show them, don't fail.
    return raw.decode("utf-8", "backslashreplace")


def _pattern(cmdline: bytes | None) -> str | None:
    # Given as bytes (CAST … AS BLOB): a command line holding bytes that are not UTF-8 (see
    # _text) would fail the call before Python saw it.
    return None if cmdline is None else command_pattern(_text(cmdline))


def _escape_surrogates(line: str) -> str:
    # Inside a JSON string "\udcff" is the same character; outside one the line was not JSON.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


def _where(hosts: Sequence[str] | None, since: float | None) -> tuple[str, list[Any]]:
    sql = "host IN (SELECT value FROM json_each(?))" if hosts is not None else "1"
    params: list[Any] = [json.dumps(list(hosts))] if hosts is not None else []
    if since is not None:
        sql += " AND ts >= ?"
        params.append(since)
    return sql, params


def _filter(f: EventFilter) -> tuple[str, list[Any]]:
    sql, params = _where(f.hosts, f.since)
    for column, value in (("rule", f.rule), ("action", f.action)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if f.search is not None:  # LIKE folds ASCII letters' case
        sql += f" AND cmdline LIKE ? ESCAPE '{LIKE_ESCAPE}'"
        params.append(like_pattern(f.search))
    return sql, params


_COLUMNS = ", ".join(EVENT_COLUMNS)
_NEWEST = "ts DESC NULLS LAST, id DESC"


class SqliteStore:
    """The report database in one SQLite file.  Thread-safe: one connection, one lock.

    Raises:
        OSError: the file cannot be created or opened.
        ValueError: the file is not a report database of this version.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_DB) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.writers = 1  # SQLite takes one writer at a time
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Command lines are sensitive: the file is the operator's alone (SQLite gives its
        # -wal and -shm files the same mode).
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False, timeout=30)
            self._db.text_factory = _text
            self._db.create_function("edrfleet_pattern", 1, _pattern, deterministic=True)
            # Rows are ~900 bytes (raw JSON): 4 KiB pages split every 4 inserts.  64 KiB pages
            # cut ingest from 6.1 to 4.2 us CPU an event and the file by 12 %; summaries scan
            # faster too.  Only takes effect in a new file (before its first table).
            self._db.execute("PRAGMA page_size=65536")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints
            # The id and ts indexes take ~60 bytes an event; SQLite's default 2 MiB cache
            # makes each insert re-read their pages (1M events: 8.8 -> 7.2 us CPU an event).
            self._db.execute("PRAGMA cache_size=-131072")  # KiB: 128 MiB, allocated as used
            # One transaction: two controllers creating the file at once.  (executescript
            # would commit a transaction begun before it.)
            self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA)
            self._check_version()
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            db = getattr(self, "_db", None)
            if db is not None and db.in_transaction:
                db.execute("ROLLBACK")
            raise ReportError(f"{self.path}: not a report database ({e}) "
                             "(fix: pass another --db or remove the file)") from None

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None and self._db.execute(
                "SELECT 1 FROM pragma_table_info('hosts') WHERE name='key'").fetchone() is None:
            row = ("1",)  # a version-1 file (its CREATE IF NOT EXISTS kept the old tables)
        if row is None:
            self._db.execute("INSERT INTO meta VALUES('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise ReportError(f"{self.path}: report database schema {row[0]}, this edrfleet "
                             f"reads {SCHEMA_VERSION} (fix: pass another --db, or move this "
                             "file away: the hosts' spools still hold their events)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    def ingest(self, host: str, lines: Sequence[str], *, cursor: Cursor | None,
               status: dict[str, Any] | None, lost: bool,
               expected: Cursor | None = UNCHECKED, dropped: int = 0) -> Ingested:
        """Store one pulled batch and move ``host``'s cursor, in one transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                malformed = 0
                try:
                    db.executemany(_INSERT, ((host, line) for line in lines))
                except (sqlite3.OperationalError, UnicodeEncodeError) as e:
                    if isinstance(e, sqlite3.OperationalError) and "JSON" not in str(e):
                        raise
                    # Rare: a line that is not JSON (to SQLite, the judge of what it can
                    # index), or holds lone surrogates (not UTF-8).  Redo the batch line by
                    # line, surrogates escaped, counting the lines SQLite refuses.
                    db.execute("ROLLBACK")
                    db.execute("BEGIN IMMEDIATE")
                    before = db.total_changes
                    malformed = sum(not self._insert_one(host, line) for line in lines)
                inserted = db.total_changes - before
                moved = self._save_host(host, cursor, status, inserted, lost, expected,
                                        dropped)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return Ingested(inserted, len(lines) - malformed - inserted, malformed, moved)

    def _insert_one(self, host: str, line: str) -> bool:
        """Insert one line; False if SQLite finds it is not JSON (the transaction goes on)."""
        try:
            self._db.execute(_INSERT, (host, _escape_surrogates(line)))
        except sqlite3.OperationalError as e:
            if "JSON" not in str(e):
                raise
            return False
        return True

    def _save_host(self, host: str, cursor: Cursor | None, status: dict[str, Any] | None,
                   inserted: int, lost: bool, expected: Cursor | None, dropped: int) -> bool:
        """Count the batch for ``host``; move its cursor (and status, lost) if the store
        still holds ``expected``.  Returns whether it moved.  Inside the write transaction."""
        name, machine_id = split_key(host)
        if expected is not UNCHECKED:
            row = self._db.execute("SELECT cursor FROM hosts WHERE key=?", (host,)).fetchone()
            if (json.loads(row[0]) if row and row[0] else None) != expected:
                self._db.execute(
                    """INSERT INTO hosts(key, name, machine_id, pulled_at, events, dropped)
                       VALUES(?1, ?4, ?5, ?2, ?3, ?6)
                       ON CONFLICT(key) DO UPDATE SET pulled_at=?2, events=events+?3,
                           dropped=dropped+?6, last_error=NULL""",
                    (host, time.time(), inserted, name, machine_id, dropped))
                return False
        self._db.execute(
            """INSERT INTO hosts(key, name, machine_id, cursor, status, pulled_at, events, lost,
                                 dropped, last_error)
               VALUES(?1, ?7, ?8, ?2, ?3, ?4, ?5, ?6, ?9, NULL)
               ON CONFLICT(key) DO UPDATE SET cursor=?2, status=coalesce(?3, status),
                   pulled_at=?4, events=events+?5, lost=lost+?6, dropped=dropped+?9,
                   last_error=NULL""",
            (host, json.dumps(cursor) if cursor is not None else None,
             json.dumps(status) if status is not None else None, time.time(), inserted,
             int(lost), name, machine_id, dropped))
        return True

    def record_error(self, host: str, error: str) -> None:
        name, machine_id = split_key(host)
        with self._lock:
            self._db.execute(
                """INSERT INTO hosts(key, name, machine_id, last_error) VALUES(?1, ?3, ?4, ?2)
                   ON CONFLICT(key) DO UPDATE SET last_error=?2""",
                (host, error, name, machine_id))

    # --- reading ---------------------------------------------------------------------------

    def cursor(self, host: str) -> Cursor | None:
        with self._lock:
            row = self._db.execute("SELECT cursor FROM hosts WHERE key=?", (host,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def latest_key(self, name: str) -> str | None:
        rows = self.query("SELECT key FROM hosts WHERE name=? AND pulled_at IS NOT NULL "
                          "ORDER BY pulled_at DESC LIMIT 1", (name,))
        return rows[0][0] if rows else None

    def host_rows(self) -> dict[str, dict[str, Any]]:
        rows = self.query("SELECT key, name, machine_id, status, pulled_at, events, lost, "
                          "dropped, last_error FROM hosts")
        return {key: {"name": name, "machine_id": mid,
                      "status": json.loads(st) if st else None, "pulled_at": at,
                      "events": n, "lost": lost, "dropped": dropped, "last_error": err}
                for key, name, mid, st, at, n, lost, dropped, err in rows}

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read-only query in SQLite's SQL (the summary's, diagnostics, tests)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def count(self) -> int:
        return self.query("SELECT count(*) FROM events")[0][0]

    def time_range(self) -> tuple[float | None, float | None]:
        # Two index lookups, no scan.
        lo, hi = self.query("SELECT (SELECT min(ts) FROM events WHERE ts >= ?1), "
                            "(SELECT max(ts) FROM events WHERE ts <= ?2)",
                            sane_window(time.time()))[0]
        return lo, hi

    def counts(self, hosts: Sequence[str], since: float | None, start: float,
               size: float) -> list[tuple[Any, ...]]:
        where, params = _where(hosts, since)
        return self.query(
            f"SELECT host, rule, severity, action, CAST((ts - ?) / ? AS INTEGER) AS b, count(*),"
            f" max(CASE WHEN ts BETWEEN ? AND ? THEN ts END), max(id) FROM events WHERE {where}"
            f" GROUP BY host, rule, severity, action, b",
            [start, size, *sane_window(time.time()), *params])

    def top_commands(self, hosts: Sequence[str], since: float | None, action: str,
                     limit: int) -> list[tuple[Any, ...]]:
        where, params = _where(hosts, since)
        return self.query(
            f"SELECT rule, edrfleet_pattern(CAST(cmdline AS BLOB)) AS p, count(*), "
            f"count(DISTINCT host), count(DISTINCT cmdline), min(cmdline), max(ts) FROM events "
            f"WHERE {where} AND action = ? GROUP BY rule, p "
            f"ORDER BY count(*) DESC, coalesce(rule, ''), p LIMIT ?", [*params, action, limit])

    def events(self, where: EventFilter, limit: int | None) -> list[tuple[Any, ...]]:
        sql, params = _filter(where)
        return self.query(f"SELECT {_COLUMNS} FROM events WHERE {sql} ORDER BY {_NEWEST} "
                          "LIMIT ?", [*params, -1 if limit is None else limit])

    def latest_per_host(self, hosts: Sequence[str], since: float | None,
                        per_host: int) -> list[tuple[Any, ...]]:
        where, params = _where(hosts, since)
        # The window sorts ids and times only; the rows it keeps are read by key.
        return self.query(
            f"SELECT {_COLUMNS} FROM events WHERE (host, id) IN (SELECT host, id FROM (SELECT "
            f"host, id, row_number() OVER (PARTITION BY host ORDER BY {_NEWEST}) AS n FROM "
            f"events WHERE {where}) WHERE n <= ?) ORDER BY host, {_NEWEST}", [*params, per_host])

    def raw_events(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        rows = self.query("SELECT host, id, raw FROM events WHERE (host, id) IN (SELECT "
                          "json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM "
                          "json_each(?))", [json.dumps([list(r) for r in refs])])
        return {(host, eid): raw for host, eid, raw in rows}

    def event_rows(self, host: str | None = None) -> list[tuple[Any, ...]]:
        sql = f"SELECT {_COLUMNS} FROM events"
        params: list[Any] = []
        if host is not None:
            sql += " WHERE host = ?"
            params.append(host)
        return self.query(sql + " ORDER BY ts NULLS LAST, id", params)
