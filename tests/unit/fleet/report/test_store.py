"""edrfleet.fleet.report.store: dedup by event.id, cursor with the events, columns."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edrfleet.agent import ecs
from edrfleet.fleet.report.store import Store
from tests.unit.helpers.report_helpers import T0, event, line

CUR = {"inode": 7, "offset": 100}


def test_a_batch_sent_twice_is_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    batch = [line(event(f"e{i}")) for i in range(50)]
    assert store.ingest("web1", batch, cursor=CUR, status=None, lost=False).inserted == 50
    again = store.ingest("web1", batch + [line(event("e50"))], cursor=CUR, status=None,
                         lost=False)
    assert (again.inserted, again.ignored) == (1, 50)
    assert store.count() == 51


def test_the_cursor_advances_with_the_batch_and_survives_reopening(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db") as store:
        assert store.cursor("web1") is None
        store.ingest("web1", [line(event("a"))], cursor=CUR, status={"state": "enforcing"},
                     lost=False)
        store.ingest("web1", [], cursor={"inode": 8, "offset": 0}, status=None, lost=False)
    with Store(tmp_path / "r.db") as store:
        assert store.cursor("web1") == {"inode": 8, "offset": 0}
        row = store.host_rows()["web1"]
        assert row["status"] == {"state": "enforcing"}  # an absent status keeps the last one
        assert row["events"] == 1


def test_a_failing_batch_moves_neither_events_nor_cursor(tmp_path: Path, monkeypatch) -> None:
    store = Store(tmp_path / "r.db")
    store.ingest("web1", [line(event("a"))], cursor=CUR, status=None, lost=False)

    def boom(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_save_host", boom)
    with pytest.raises(sqlite3.OperationalError):
        store.ingest("web1", [line(event("b"))], cursor={"inode": 9, "offset": 9}, status=None,
                     lost=False)
    monkeypatch.undo()
    assert store.cursor("web1") == CUR
    assert [r[0] for r in store.query("SELECT id FROM events")] == ["a"]


def test_lines_that_are_not_json_or_lack_an_id_are_counted_the_rest_stored(tmp_path) -> None:
    store = Store(tmp_path / "r.db")
    got = store.ingest("web1", [line(event("a")), "{not json", '{"event":{"action":"x"}}', "[1]",
                                '{"event":{"id":"n"},"x":NaN}', "[" * 5000 + "]" * 5000,
                                line(event("b"))], cursor=CUR, status=None, lost=False)
    assert (got.inserted, got.malformed, got.ignored) == (2, 3, 2)
    assert store.cursor("web1") == CUR


def test_columns_come_from_the_json_and_the_raw_line_is_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    e = event("a", ts=T0 + 1.5, action="would_block", rule="rx", severity="low", cmd="rm -r /")
    store.ingest("inv-name", [line(e)], cursor=CUR, status=None, lost=False)
    (host, ts, action, rule, sev, cmd, raw), = store.query(
        "SELECT host, ts, action, rule, severity, cmdline, raw FROM events")
    assert (host, action, rule, sev, cmd, raw) == ("inv-name", "would_block", "rx", "low",
                                                   "rm -r /", line(e))
    assert ts == pytest.approx(T0 + 1.5, abs=0.001)


def test_events_of_an_older_agent_with_flat_keys_fill_the_same_columns(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    new = event("n", ts=T0 + 1.5, action="would_block", rule="rx", severity="low", cmd="rm -r /")
    old = {"rule.severity" if k == "edrfleet.severity" else k: v
           for k, v in ecs.flatten(event("o", ts=T0 + 1.5, action="would_block", rule="rx",
                                         severity="low", cmd="rm -r /")).items()}
    assert "rule.severity" in old and "event.id" in old  # the layout of older agents
    got = store.ingest("web1", [line(new), line(old)], cursor=CUR, status=None, lost=False)
    assert got.inserted == 2
    rows = store.query("SELECT id, ts, action, rule, severity, cmdline FROM events ORDER BY id")
    assert [r[0] for r in rows] == ["n", "o"] and rows[0][1:] == rows[1][1:]
    assert rows[0][2:] == ("would_block", "rx", "low", "rm -r /")


def test_a_bad_timestamp_is_null_and_lone_surrogates_read_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    raw = '{"event":{"id":"s"},"@timestamp":"yesterday","process":{"command_line":"a\\udcffb"}}'
    store.ingest("web1", [raw], cursor=CUR, status=None, lost=False)
    (ts, cmd), = store.query("SELECT ts, cmdline FROM events")
    assert ts is None and cmd.startswith("a") and cmd.endswith("b")


def test_lost_and_errors_are_remembered_per_host(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    store.ingest("web1", [], cursor=CUR, status=None, lost=True)
    store.record_error("web2", "Unreachable: refused")
    rows = store.host_rows()
    assert rows["web1"]["lost"] == 1 and rows["web2"]["last_error"] == "Unreachable: refused"
    assert store.cursor("web2") is None


def test_a_file_that_is_not_a_store_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="bad.db: not a report database"):
        Store(bad)


def test_the_store_is_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_lone_surrogates_in_a_line_are_escaped_not_fatal(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    got = store.ingest("web1", ['{"event":{"id":"s"},"process":{"command_line":"a\udcffb"}}',
                                line(event("t"))], cursor=CUR, status=None, lost=False)
    assert got.inserted == 2
    (cmd,), = store.query("SELECT cmdline FROM events WHERE id='s'")
    assert cmd.startswith("a") and cmd.endswith("b")


def test_a_new_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "new" / "r.db")
    store.ingest("web1", [line(event("a"))], cursor=CUR, status=None, lost=False)
    for p in (tmp_path / "new").iterdir():
        assert p.stat().st_mode & 0o077 == 0, p.name
