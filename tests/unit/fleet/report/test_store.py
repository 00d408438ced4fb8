"""edrfleet.fleet.report.store and its backends: dedup by event.id, cursor with the events
and by compare-and-set, columns.  Each test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from edrfleet.agent import ecs
from edrfleet.fleet.report.backends import is_postgres, open_store
from edrfleet.fleet.report.postgres_store import safe_location
from tests.unit.helpers.postgres_server import empty_store
from tests.unit.helpers.report_helpers import T0, event, line

CUR = {"inode": 7, "offset": 100}


def ids(store, host: str | None = None) -> list[str]:
    return [r[0] for r in store.event_rows(host)]


def execute(db: str, sql: str) -> None:
    """Write ``sql`` into the store behind its back (a damaged or foreign database)."""
    if is_postgres(db):
        with psycopg.connect(db, autocommit=True) as c:
            c.execute(sql.replace("meta", "edrfleet.meta"))
    else:
        with sqlite3.connect(db) as c:
            c.execute(sql)


def test_a_batch_sent_twice_is_stored_once(store_db: str) -> None:
    store = open_store(store_db)
    batch = [line(event(f"e{i}")) for i in range(50)]
    assert store.ingest("web1", batch, cursor=CUR, status=None, lost=False).inserted == 50
    again = store.ingest("web1", batch + [line(event("e50"))], cursor=CUR, status=None,
                         lost=False)
    assert (again.inserted, again.ignored) == (1, 50)
    assert store.count() == 51
    assert store.host_rows()["web1"]["events"] == 51


def test_the_cursor_advances_with_the_batch_and_survives_reopening(store_db: str) -> None:
    with open_store(store_db) as store:
        assert store.cursor("web1") is None
        store.ingest("web1", [line(event("a"))], cursor=CUR, status={"state": "enforcing"},
                     lost=False)
        store.ingest("web1", [], cursor={"inode": 8, "offset": 0}, status=None, lost=False)
    with open_store(store_db) as store:
        assert store.cursor("web1") == {"inode": 8, "offset": 0}
        row = store.host_rows()["web1"]
        assert row["status"] == {"state": "enforcing"}  # an absent status keeps the last one
        assert row["events"] == 1


def test_a_failing_batch_moves_neither_events_nor_cursor(store_db: str, monkeypatch) -> None:
    store = open_store(store_db)
    store.ingest("web1", [line(event("a"))], cursor=CUR, status=None, lost=False)

    def boom(*a, **k):
        raise OSError("disk I/O error")

    monkeypatch.setattr(store, "_save_host", boom)
    with pytest.raises(OSError):
        store.ingest("web1", [line(event("b"))], cursor={"inode": 9, "offset": 9}, status=None,
                     lost=False)
    monkeypatch.undo()
    assert store.cursor("web1") == CUR
    assert ids(store) == ["a"]
    # and the store goes on working after the rollback
    store.ingest("web1", [line(event("b"))], cursor={"inode": 9, "offset": 9}, status=None,
                 lost=False)
    assert ids(store) == ["a", "b"]


def test_a_cursor_moved_meanwhile_is_not_overwritten(store_db: str) -> None:
    """Compare-and-set: a batch pulled from a cursor another controller has since moved
    stores its events (once) but leaves the other's cursor, status and lost count."""
    store = open_store(store_db)
    store.ingest("web1", [line(event("a"))], cursor=CUR, status={"state": "one"}, lost=False,
                 expected=None)
    ahead = {"inode": 7, "offset": 300}
    got = store.ingest("web1", [line(event("b"))], cursor=ahead, status=None, lost=False,
                       expected=CUR)
    assert got.moved and store.cursor("web1") == ahead
    stale = store.ingest("web1", [line(event("b")), line(event("c"))], cursor={"inode": 7,
                         "offset": 200}, status={"state": "two"}, lost=True, expected=CUR)
    assert (stale.moved, stale.inserted, stale.ignored) == (False, 1, 1)
    assert store.cursor("web1") == ahead  # never back
    row = store.host_rows()["web1"]
    assert (row["events"], row["lost"], row["status"]) == (3, 0, {"state": "one"})
    first = store.ingest("new", [line(event("n"))], cursor=CUR, status=None, lost=False,
                         expected={"inode": 1, "offset": 1})
    assert not first.moved and store.cursor("new") is None and ids(store, "new") == ["n"]


def test_lines_that_are_not_json_or_lack_an_id_are_counted_the_rest_stored(store_db) -> None:
    store = open_store(store_db)
    got = store.ingest("web1", [line(event("a")), "{not json", '{"event":{"action":"x"}}', "[1]",
                                '{"event":{"id":"n"},"x":NaN}', "[" * 5000 + "]" * 5000,
                                line(event("b"))], cursor=CUR, status=None, lost=False)
    # 5000 levels: past SQLite's JSON depth (1000), malformed; PostgreSQL reads it, an array
    # without an event.id like "[1]", ignored.
    deep = 0 if is_postgres(store_db) else 1
    assert (got.inserted, got.malformed, got.ignored) == (2, 2 + deep, 3 - deep)
    assert store.cursor("web1") == CUR


def test_lines_postgres_refuses_are_malformed_not_fatal(store_db: str) -> None:
    store = open_store(store_db)
    got = store.ingest("web1", [line(event("a")), '{"event.id":"z","x":"\\u0000"}',
                                '{"event.id":"nul","x":"\x00"}', line(event("b"))],
                       cursor=CUR, status=None, lost=False)
    assert got.inserted + got.malformed == 4 and {"a", "b"} <= set(ids(store))
    assert store.cursor("web1") == CUR


def test_columns_come_from_the_json_and_the_raw_line_is_kept(store_db: str) -> None:
    store = open_store(store_db)
    e = event("a", ts=T0 + 1.5, action="would_block", rule="rx", severity="low", cmd="rm -r /")
    store.ingest("inv-name", [line(e)], cursor=CUR, status=None, lost=False)
    (eid, host, ts, action, rule, sev, cmd, raw), = store.event_rows()
    assert (eid, host, action, rule, sev, cmd, raw) == ("a", "inv-name", "would_block", "rx",
                                                        "low", "rm -r /", line(e))
    assert ts == pytest.approx(T0 + 1.5, abs=0.001)


def test_events_of_an_older_agent_with_flat_keys_fill_the_same_columns(store_db: str) -> None:
    store = open_store(store_db)
    new = event("n", ts=T0 + 1.5, action="would_block", rule="rx", severity="low", cmd="rm -r /")
    old = {"rule.severity" if k == "edrfleet.severity" else k: v
           for k, v in ecs.flatten(event("o", ts=T0 + 1.5, action="would_block", rule="rx",
                                         severity="low", cmd="rm -r /")).items()}
    assert "rule.severity" in old and "event.id" in old  # the layout of older agents
    got = store.ingest("web1", [line(new), line(old)], cursor=CUR, status=None, lost=False)
    assert got.inserted == 2
    rows = sorted(r[:7] for r in store.event_rows())  # id, host, ts, action, rule, sev, cmdline
    assert [r[0] for r in rows] == ["n", "o"] and rows[0][1:] == rows[1][1:]
    assert rows[0][3:] == ("would_block", "rx", "low", "rm -r /")


@pytest.mark.parametrize("stamp", ["yesterday", "2026-02-30T05:00:00Z",
                                   "2026-13-01T05:00:00Z", "", "2026-12-01 5h"])
def test_a_bad_timestamp_is_null(store_db: str, stamp: str) -> None:
    store = open_store(store_db)
    got = store.ingest("web1", [f'{{"event":{{"id":"s"}},"@timestamp":"{stamp}"}}'], cursor=CUR,
                       status=None, lost=False)
    assert got.inserted == 1
    if stamp == "2026-02-30T05:00:00Z" and not is_postgres(store_db):
        return  # SQLite's julianday reads day 30 of any month (as March 2)
    assert store.event_rows()[0][2] is None


@pytest.mark.parametrize(("stamp", "epoch"), [
    ("2026-12-01T05:00:00Z", T0), ("2026-12-01T05:00:00.123456Z", T0 + 0.123),
    ("2026-12-01T07:00:00+02:00", T0), ("2026-12-01T05:00:00", T0),
    ("2026-12-31T05:00:00.5Z", T0 + 30 * 86400 + 0.5)])
def test_timestamps_become_epoch_seconds_to_the_millisecond(store_db, stamp, epoch) -> None:
    store = open_store(store_db)
    store.ingest("web1", [f'{{"event.id":"s","@timestamp":"{stamp}"}}'], cursor=CUR,
                 status=None, lost=False)
    assert store.event_rows()[0][2] == pytest.approx(epoch, abs=0.0011)


def test_lost_and_errors_are_remembered_per_host(store_db: str) -> None:
    store = open_store(store_db)
    store.ingest("web1", [], cursor=CUR, status=None, lost=True)
    store.record_error("web2", "Unreachable: refused")
    rows = store.host_rows()
    assert rows["web1"]["lost"] == 1 and rows["web2"]["last_error"] == "Unreachable: refused"
    assert store.cursor("web2") is None


def test_lone_surrogates_in_a_line_are_escaped_not_fatal(store_db: str) -> None:
    store = open_store(store_db)
    got = store.ingest("web1", ['{"event.id":"s","process.command_line":"a\udcffb"}',
                                line(event("t"))], cursor=CUR, status=None, lost=False)
    assert got.inserted == 2
    cmd = {r[0]: r[6] for r in store.event_rows()}["s"]
    assert cmd.startswith("a") and cmd.endswith("b")


def test_an_escaped_surrogate_reads_back(store_db: str) -> None:
    store = open_store(store_db)
    raw = '{"event.id":"s","process.command_line":"a\\udcffb"}'
    got = store.ingest("web1", [raw], cursor=CUR, status=None, lost=False)
    # PostgreSQL's jsonb refuses a lone surrogate escape: the line is counted, not fatal.
    assert got.inserted + got.malformed == 1
    if got.inserted:
        cmd = store.event_rows()[0][6]
        assert cmd.startswith("a") and cmd.endswith("b")


def test_another_schema_version_is_one_clear_error(store_db: str) -> None:
    open_store(store_db).close()
    execute(store_db, "UPDATE meta SET value='99' WHERE key='schema'")
    with pytest.raises(ValueError, match="report database schema 99"):
        open_store(store_db)


def test_a_file_that_is_not_a_store_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="bad.db: not a report database"):
        open_store(bad)


def test_the_sqlite_store_is_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(tmp_path / "r.db")
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_lone_surrogates_in_a_line_are_escaped_not_fatal_in_sqlite(tmp_path: Path) -> None:
    """(PostgreSQL refuses an escaped lone surrogate: such a line is counted as malformed.)"""
    store = open_store(tmp_path / "r.db")
    got = store.ingest("web1", ['{"event":{"id":"s"},"process":{"command_line":"a\udcffb"}}',
                                line(event("t"))], cursor=CUR, status=None, lost=False)
    assert got.inserted == 2
    (cmd,), = store.query("SELECT cmdline FROM events WHERE id='s'")
    assert cmd.startswith("a") and cmd.endswith("b")


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    store = open_store(tmp_path / "new" / "r.db")
    store.ingest("web1", [line(event("a"))], cursor=CUR, status=None, lost=False)
    for p in (tmp_path / "new").iterdir():
        assert p.stat().st_mode & 0o077 == 0, p.name


def test_connections_the_server_dropped_fail_once_then_are_replaced(postgres_server) -> None:
    store_db = empty_store(postgres_server)
    store = open_store(store_db)
    store.ingest("w", [line(event("a"))], cursor=CUR, status=None, lost=False)
    with psycopg.connect(store_db, autocommit=True) as admin:
        assert admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                             ).fetchone()[0] == 2  # the readers' and one writer's
    with pytest.raises(psycopg.OperationalError):
        store.ingest("w", [line(event("b"))], cursor=CUR, status=None, lost=False)
    with pytest.raises(psycopg.OperationalError):
        store.count()
    store.ingest("w", [line(event("b"))], cursor=CUR, status=None, lost=False)
    assert ids(store) == ["a", "b"] and store.count() == 2


def test_an_unreachable_server_is_one_clear_error_without_the_password(tmp_path) -> None:
    uri = f"postgresql://me:s3cret@/db?host={tmp_path}&port=1"
    with pytest.raises(OSError, match="cannot connect") as e:
        open_store(uri)
    assert "s3cret" not in str(e.value)


@pytest.mark.parametrize(("uri", "shown"), [
    ("postgresql://me:pw@db.example/r", "postgresql://me:***@db.example/r"),
    ("postgresql://me@/r?host=/tmp&password=pw", "postgresql://me@/r?host=/tmp&password=***"),
    ("postgres://db/r", "postgres://db/r")])
def test_the_location_hides_the_password(uri: str, shown: str) -> None:
    assert safe_location(uri) == shown
