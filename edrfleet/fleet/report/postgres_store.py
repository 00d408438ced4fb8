"""The PostgreSQL report store (``--db postgresql://…``): several controllers, one database.

Same tables and semantics as the SQLite store (:mod:`edrfleet.fleet.report.store`), in the
schema ``edrfleet`` of the database the URI names (created on first use, under an advisory
lock so that two controllers starting at once do not race)::

    edrfleet.events(host text, id text, ts double precision, action text, rule text,
                    severity text, cmdline text, raw text NOT NULL, PRIMARY KEY(host, id))
    edrfleet.hosts(key text PRIMARY KEY, name text, machine_id text, cursor text, status text,
                   pulled_at double precision, events bigint, lost bigint, dropped bigint,
                   last_error text)

A batch is one transaction: one ``INSERT … SELECT … FROM unnest(lines) … ON CONFLICT
(host, id) DO NOTHING``, keyed by (host key, event.id) (the server parses each line once as
jsonb and extracts the columns of :mod:`edrfleet.fleet.report.fields`), then the host's
row locked (``SELECT … FOR UPDATE``) for the cursor's compare-and-set.  Controllers pulling
the same host wait for each other's uncommitted events (the unique index) and then its
cursor row, always in that order; a deadlock or serialization failure the server still
reports is retried.  ``raw`` is text, not jsonb: it keeps the line byte for byte as the host
wrote it.

A batch holding a line the server refuses (not JSON, ``\\u0000`` or a lone surrogate escape,
NaN, a NUL byte) is redone line by line, each in a savepoint, counting the refused lines;
a line holding lone surrogates (not UTF-8) has them written as visible ``\\udcff`` text.
Command lines are sensitive: grant the ``edrfleet`` schema to the report's role only.

Reads filter and group in SQL; the top lists' command pattern is ``regexp_replace`` with the
expressions of :mod:`edrfleet.fleet.report.queries` (the same result as SQLite's, tested).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors

from edrfleet.fleet.report.fields import COLUMNS, first_of, postgres_path, sql_string
from edrfleet.fleet.report.queries import (
    EVENT_COLUMNS,
    LIKE_ESCAPE,
    MARK,
    NUMBER,
    PROGRAM_DIR,
    like_pattern,
)
from edrfleet.fleet.report.store import (
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
_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*(@)|(password=)[^&\s]*")
_RETRIES = 5
_IDLE = psycopg.pq.TransactionStatus.IDLE
# Batches stored at once, one connection each: the server parses the lines, so a controller
# with one connection waits on one server core.  Memory: each holds one decoded chunk.
WRITERS = 4
_SCHEMA_LOCK = 0x6564726651  # pg_advisory_xact_lock key: "edrfQ"

# ts: what SQLite's julianday reads (ISO 8601, 'Z' or an offset, none = UTC), else NULL.  The
# common, certainly valid form is cast directly; only the rest pays for the exception block
# (a subtransaction) that turns a Feb 30 into NULL rather than failing the batch.
_EPOCH = r"""
CREATE FUNCTION edrfleet.epoch(t text) RETURNS double precision
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $fn$
BEGIN
    IF t ~ '@VALID@' THEN
        RETURN round(extract(epoch FROM t::timestamptz), 3);
    END IF;
    IF t !~ '^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?$' THEN
        RETURN NULL;
    END IF;
    BEGIN
        RETURN round(extract(epoch FROM t::timestamptz), 3);
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END;
END $fn$
""".replace("@VALID@", r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d"
                     r":[0-5]\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)?$")

_SCHEMA = (
    "CREATE SCHEMA IF NOT EXISTS edrfleet",
    "CREATE TABLE IF NOT EXISTS edrfleet.meta(key text PRIMARY KEY, value text)",
    """CREATE TABLE IF NOT EXISTS edrfleet.events(
        host text NOT NULL, id text NOT NULL, ts double precision, action text, rule text,
        severity text, cmdline text, raw text NOT NULL, PRIMARY KEY(host, id))""",
    "CREATE INDEX IF NOT EXISTS events_ts ON edrfleet.events(ts)",
    """CREATE TABLE IF NOT EXISTS edrfleet.hosts(
        key text PRIMARY KEY, name text NOT NULL, machine_id text NOT NULL, cursor text,
        status text, pulled_at double precision, events bigint NOT NULL DEFAULT 0,
        lost bigint NOT NULL DEFAULT 0, dropped bigint NOT NULL DEFAULT 0, last_error text)""",
    "CREATE INDEX IF NOT EXISTS hosts_name ON edrfleet.hosts(name, pulled_at)",
)


def _field(column: str) -> str:
    return first_of([postgres_path("j", p) for p in COLUMNS[column]])


# OFFSET 0 keeps the subquery whole, so each line is parsed once, not once per column.  The
# lines go as one binary text[] parameter: psycopg builds it at ~1 us a line, where the text
# form costs ~55 (and COPY into a staging table ~2).
_INSERT = f"""
INSERT INTO edrfleet.events(id, host, ts, action, rule, severity, cmdline, raw)
SELECT id, %(host)s, edrfleet.epoch(ts), action, rule, severity, cmdline, line FROM (
    SELECT line, {_field("id")} AS id, {_field("ts")} AS ts, {_field("action")} AS action,
           {_field("rule")} AS rule, {_field("severity")} AS severity,
           {_field("cmdline")} AS cmdline
    FROM (SELECT line, line::jsonb AS j FROM unnest(%(lines)b::text[]) AS u(line) OFFSET 0) p
) e WHERE id IS NOT NULL
ON CONFLICT (host, id) DO NOTHING
"""

# What the server (or psycopg, for a NUL byte) says of a line it cannot take as jsonb.
_REFUSED = (psycopg.DataError, errors.StatementTooComplex, errors.ProgramLimitExceeded,
            UnicodeEncodeError)


def _escape_surrogates(line: str) -> str:
    # jsonb refuses a lone surrogate, even escaped: inside a JSON string, write it as the
    # visible text "\udcff" (SQLite shows it the same way); outside one the line was not JSON.
    return _SURROGATE.sub(lambda m: f"\\\\u{ord(m.group()):04x}", line)


def _where(hosts: Sequence[str] | None, since: float | None) -> tuple[str, list[Any]]:
    sql = "host = ANY(%s)" if hosts is not None else "true"
    params: list[Any] = [list(hosts)] if hosts is not None else []
    if since is not None:
        sql += " AND ts >= %s"
        params.append(since)
    return sql, params


def _filter(f: EventFilter) -> tuple[str, list[Any]]:
    sql, params = _where(f.hosts, f.since)
    for column, value in (("rule", f.rule), ("action", f.action)):
        if value is not None:
            sql += f" AND {column} = %s"
            params.append(value)
    if f.search is not None:
        sql += f" AND cmdline ILIKE %s ESCAPE {sql_string(LIKE_ESCAPE)}"
        params.append(like_pattern(f.search))
    return sql, params


_COLUMNS = ", ".join(EVENT_COLUMNS)
_NEWEST = 'ts DESC NULLS LAST, id COLLATE "C" DESC'
# edrfleet.fleet.report.queries.command_pattern, in the server's regular expressions
_PATTERN = (f"regexp_replace(regexp_replace(cmdline, {sql_string(PROGRAM_DIR)}, ''), "
            f"{sql_string(NUMBER)}, {sql_string(MARK)}, 'g')")


def safe_location(dsn: str) -> str:
    """``dsn`` without its password (the summary prints the store's location)."""
    return _PASSWORD.sub(lambda m: f"{m.group(1)}***{m.group(2)}" if m.group(1)
                         else f"{m.group(3)}***", dsn)


class PostgresStore:
    """The report database in PostgreSQL.  Thread-safe: reads on one connection under a lock;
    up to :data:`WRITERS` batches stored at once, each on a connection of its own (opened as
    needed; one the server dropped is replaced by the next batch).

    Raises:
        OSError: the server cannot be reached or refuses the login.
        ValueError: a bad URI, or the database holds another version of the schema.
    """

    def __init__(self, dsn: str, writers: int = WRITERS) -> None:
        self.location = safe_location(dsn)
        self.writers = writers
        self._dsn = dsn
        self._lock = threading.Lock()  # self._db
        self._slots = threading.BoundedSemaphore(writers)
        self._idle: list[psycopg.Connection] = []
        self._idle_lock = threading.Lock()
        self._db = self._connect()
        self._create_schema()

    def _connect(self) -> psycopg.Connection:
        try:
            db = psycopg.connect(self._dsn, autocommit=True, connect_timeout=30)
        except psycopg.ProgrammingError as e:  # an unparsable URI
            raise ReportError(f"{self.location}: {e} (fix: --db postgresql://USER@HOST/DB)"
                             ) from None
        except psycopg.OperationalError as e:
            raise OSError(f"{self.location}: cannot connect: {' '.join(str(e).split())}"
                          ) from None
        db.execute("SET TIME ZONE 'UTC'")  # an @timestamp without offset is UTC
        return db

    @contextmanager
    def _writer(self) -> Iterator[psycopg.Connection]:
        """A connection of the writers' pool for one batch."""
        with self._slots:
            with self._idle_lock:
                db = self._idle.pop() if self._idle else None
            if db is None:
                db = self._connect()
            try:
                yield db
            finally:
                if db.broken or db.closed or db.info.transaction_status != _IDLE:
                    db.close()
                else:
                    with self._idle_lock:
                        self._idle.append(db)

    def _create_schema(self) -> None:
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for sql in _SCHEMA:
                self._db.execute(sql)
            if self._db.execute("SELECT to_regprocedure('edrfleet.epoch(text)')"
                                ).fetchone()[0] is None:
                self._db.execute(_EPOCH)
            row = self._db.execute("SELECT value FROM edrfleet.meta WHERE key='schema'"
                                   ).fetchone()
            if row is None and self._db.execute(
                    "SELECT 1 FROM information_schema.columns WHERE table_schema='edrfleet' "
                    "AND table_name='hosts' AND column_name='key'").fetchone() is None:
                row = ("1",)  # version-1 tables, kept by CREATE IF NOT EXISTS
            if row is None:
                self._db.execute("INSERT INTO edrfleet.meta VALUES('schema', %s)",
                                 (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise ReportError(f"{self.location}: report database schema {row[0]}, this "
                                 f"edrfleet reads {SCHEMA_VERSION} (fix: pass another --db, or "
                                 "drop the schema edrfleet: the hosts' spools still hold their "
                                 "events)")

    def close(self) -> None:
        with self._lock, self._idle_lock:
            for db in (self._db, *self._idle):
                db.close()
            self._idle.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    def ingest(self, host: str, lines: Sequence[str], *, cursor: Cursor | None,
               status: dict[str, Any] | None, lost: bool,
               expected: Cursor | None = UNCHECKED, dropped: int = 0) -> Ingested:
        """Store one pulled batch and move ``host``'s cursor, in one transaction."""
        with self._writer() as db:
            for attempt in range(_RETRIES):
                try:
                    with db.transaction():
                        inserted, malformed = self._insert(db, host, lines)
                        moved = self._save_host(db, host, cursor, status, inserted, lost,
                                                expected, dropped)
                    return Ingested(inserted, len(lines) - malformed - inserted, malformed,
                                    moved)
                except (errors.DeadlockDetected, errors.SerializationFailure):
                    if attempt == _RETRIES - 1:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    @staticmethod
    def _insert(db: psycopg.Connection, host: str, lines: Sequence[str]) -> tuple[int, int]:
        """(inserted, malformed): the batch in one statement, else line by line."""
        try:
            with db.transaction():  # a savepoint: a refused batch is undone alone
                return db.execute(_INSERT, {"host": host, "lines": list(lines)}).rowcount, 0
        except _REFUSED:
            pass
        inserted = malformed = 0
        for line in lines:
            try:
                with db.transaction():
                    inserted += db.execute(
                        _INSERT, {"host": host, "lines": [_escape_surrogates(line)]}).rowcount
            except _REFUSED:
                malformed += 1
        return inserted, malformed

    @staticmethod
    def _save_host(db: psycopg.Connection, host: str, cursor: Cursor | None,
                   status: dict[str, Any] | None, inserted: int, lost: bool,
                   expected: Cursor | None, dropped: int) -> bool:
        """Count the batch for ``host``; move its cursor (and status, lost) if the store
        still holds ``expected``.  Returns whether it moved.  Inside the transaction."""
        db.execute("INSERT INTO edrfleet.hosts(key, name, machine_id) VALUES(%s, %s, %s) "
                   "ON CONFLICT DO NOTHING", (host, *split_key(host)))
        (held,), = db.execute("SELECT cursor FROM edrfleet.hosts WHERE key=%s FOR UPDATE",
                              (host,)).fetchall()
        moved = expected is UNCHECKED or (json.loads(held) if held else None) == expected
        if moved:
            db.execute(
                """UPDATE edrfleet.hosts SET cursor=%s, status=coalesce(%s, status),
                       pulled_at=%s, events=events+%s, lost=lost+%s, dropped=dropped+%s,
                       last_error=NULL WHERE key=%s""",
                (json.dumps(cursor) if cursor is not None else None,
                 json.dumps(status) if status is not None else None, time.time(), inserted,
                 int(lost), dropped, host))
        else:
            db.execute("""UPDATE edrfleet.hosts SET pulled_at=%s, events=events+%s,
                              dropped=dropped+%s, last_error=NULL WHERE key=%s""",
                       (time.time(), inserted, dropped, host))
        return moved

    def record_error(self, host: str, error: str) -> None:
        self._run("""INSERT INTO edrfleet.hosts(key, name, machine_id, last_error)
                     VALUES(%s, %s, %s, %s)
                     ON CONFLICT(key) DO UPDATE SET last_error=excluded.last_error""",
                  (host, *split_key(host), error))

    # --- reading ---------------------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """One statement on the readers' connection (reopened if the server dropped it)."""
        with self._lock:
            if self._db.broken or self._db.closed:
                self._db = self._connect()
            cur = self._db.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """A read-only query in PostgreSQL's SQL (diagnostics, tests)."""
        return self._run(sql, params)

    def cursor(self, host: str) -> Cursor | None:
        rows = self.query("SELECT cursor FROM edrfleet.hosts WHERE key=%s", (host,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    def latest_key(self, name: str) -> str | None:
        rows = self.query("SELECT key FROM edrfleet.hosts WHERE name=%s AND pulled_at "
                          "IS NOT NULL ORDER BY pulled_at DESC LIMIT 1", (name,))
        return rows[0][0] if rows else None

    def host_rows(self) -> dict[str, dict[str, Any]]:
        rows = self.query("SELECT key, name, machine_id, status, pulled_at, events, lost, "
                          "dropped, last_error FROM edrfleet.hosts")
        return {key: {"name": name, "machine_id": mid,
                      "status": json.loads(st) if st else None, "pulled_at": at,
                      "events": n, "lost": lost, "dropped": dropped, "last_error": err}
                for key, name, mid, st, at, n, lost, dropped, err in rows}

    def count(self) -> int:
        return self.query("SELECT count(*) FROM edrfleet.events")[0][0]

    def time_range(self) -> tuple[float | None, float | None]:
        lo, hi = self.query("SELECT min(ts), max(ts) FROM edrfleet.events "
                            "WHERE ts BETWEEN %s AND %s", sane_window(time.time()))[0]
        return lo, hi

    def counts(self, hosts: Sequence[str], since: float | None, start: float,
               size: float) -> list[tuple[Any, ...]]:
        where, params = _where(hosts, since)
        return self.query(
            f"SELECT host, rule, severity, action, trunc((ts - %s) / %s)::bigint AS b, count(*),"
            f" max(CASE WHEN ts BETWEEN %s AND %s THEN ts END), max(id) FROM edrfleet.events"
            f" WHERE {where} GROUP BY host, rule, severity, action, b",
            [start, size, *sane_window(time.time()), *params])

    def top_commands(self, hosts: Sequence[str], since: float | None, action: str,
                     limit: int) -> list[tuple[Any, ...]]:
        where, params = _where(hosts, since)
        # COLLATE "C": the example and ties in the order SQLite gives them (bytes).
        return self.query(
            f'SELECT rule, {_PATTERN} AS p, count(*), count(DISTINCT host), '
            f'count(DISTINCT cmdline), min(cmdline COLLATE "C"), max(ts) FROM edrfleet.events '
            f"WHERE {where} AND action = %s GROUP BY rule, p "
            f'ORDER BY count(*) DESC, coalesce(rule, \'\') COLLATE "C", '
            f'{_PATTERN} COLLATE "C" '
            f"LIMIT %s", [*params, action, limit])

    def events(self, where: EventFilter, limit: int | None) -> list[tuple[Any, ...]]:
        sql, params = _filter(where)
        return self.query(f"SELECT {_COLUMNS} FROM edrfleet.events WHERE {sql} "
                          f"ORDER BY {_NEWEST} LIMIT %s", [*params, limit])

    def latest_per_host(self, hosts: Sequence[str], since: float | None,
                        per_host: int) -> list[tuple[Any, ...]]:
        where, params = _where(hosts, since)
        # The window sorts ids and times only; the rows it keeps are read by key.
        return self.query(
            f"SELECT {_COLUMNS} FROM edrfleet.events WHERE (host, id) IN (SELECT host, id FROM "
            f"(SELECT host, id, row_number() OVER (PARTITION BY host ORDER BY {_NEWEST}) AS n "
            f"FROM edrfleet.events WHERE {where}) w WHERE n <= %s) "
            f'ORDER BY host COLLATE "C", {_NEWEST}', [*params, per_host])

    def raw_events(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        rows = self.query("SELECT host, id, raw FROM edrfleet.events WHERE (host, id) IN "
                          "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                          [[h for h, _ in refs], [i for _, i in refs]])
        return {(host, eid): raw for host, eid, raw in rows}

    def event_rows(self, host: str | None = None) -> list[tuple[Any, ...]]:
        sql = f"SELECT {_COLUMNS} FROM edrfleet.events"
        params: list[Any] = []
        if host is not None:
            sql += " WHERE host = %s"
            params.append(host)
        return self.query(sql + ' ORDER BY ts NULLS LAST, id COLLATE "C"', params)
