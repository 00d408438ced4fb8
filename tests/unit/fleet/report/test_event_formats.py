"""edrfleet.fleet.report.event_formats: an event list as table, JSON, NDJSON, CSV; hostile
values from the hosts stay inert in each."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from edrfleet.fleet.report.event_formats import render_events
from edrfleet.fleet.report.events import ROW_KEYS, EventFilter, list_events
from tests.unit.fleet.report.test_formats import HOSTILE
from tests.unit.helpers.report_helpers import T0, event, line, store_with


@pytest.fixture()
def stored(tmp_path: Path):
    events = [event(f"e{i}", cmd=c, ts=T0 + i, action="would_block" if i % 2 else "blocked",
                    fields={"user.name": "\x1b[31mroot", "process.working_directory": c[:50],
                            "process.parent.executable": "=HYPERLINK(x)",
                            "threat.technique.id": ["T1485", "T1070"]})
              for i, c in enumerate(HOSTILE)]
    store = store_with(tmp_path, {"web1": events})
    return events, list_events(store, EventFilter(), None)


def test_table_lists_who_what_where_and_stays_inert(stored) -> None:
    _events, listed = stored
    for color in (False, True):
        out = render_events(listed, "table", terminal=color, width=240)
        if color:
            out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # our own colours only
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert "[bold red]markup[/]" in out and "<script>alert('x')</script>" in out
        for title in ("time", "host", "user", "parent", "cwd", "command line", "rule",
                      "action", "severity"):
            assert title in out
        assert "would_block" in out and "=HYPERLINK(x)" in out


def test_json_is_one_array_of_rows(stored) -> None:
    _events, listed = stored
    out = render_events(listed, "json")
    out.encode("ascii")
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == len(HOSTILE)
    assert set(rows[0]) == set(ROW_KEYS)
    assert rows[-1]["command_line"] == HOSTILE[0] and rows[-1]["technique"] == ["T1485", "T1070"]
    assert rows[0]["id"] == f"e{len(HOSTILE) - 1}"  # newest first


def _surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) < 0xE000 for c in text)


def test_ndjson_is_each_stored_line_as_written(stored) -> None:
    events, listed = stored
    out = render_events(listed, "ndjson")
    lines = out.split("\n")
    assert lines.pop() == ""
    wrote = [line(e) for e in reversed(events)]  # newest first
    assert [json.loads(x) for x in lines] == [json.loads(x) for x in wrote]
    # byte for byte, but for the line with lone surrogates (stored as \udcff escapes)
    assert [x for x in lines if "\\udc" not in x] == [x for x in wrote if not _surrogate(x)]
    on_tty = render_events(listed, "ndjson", terminal=True)
    assert "\u202e" not in on_tty and "\u2028" not in on_tty
    assert len(on_tty.split("\n")) == len(HOSTILE) + 1


def test_csv_has_one_header_and_a_row_per_event_with_formulas_defused(stored) -> None:
    _events, listed = stored
    rows = list(csv.reader(io.StringIO(render_events(listed, "csv"))))
    assert rows[0] == list(ROW_KEYS)
    assert len(rows) == 1 + len(HOSTILE) and all(len(r) == len(ROW_KEYS) for r in rows)
    col = {k: i for i, k in enumerate(ROW_KEYS)}
    cmds = {r[col["command_line"]] for r in rows[1:]}
    assert "'=cmd|' /C calc'!A0" in cmds and "two\nlines\r\nand\ttab\x01soh\x7fdel\x9bcsi" in cmds
    assert {r[col["parent"]] for r in rows[1:]} == {"'=HYPERLINK(x)"}
    assert rows[1][col["technique"]] == "T1485 T1070"
    on_tty = render_events(listed, "csv", terminal=True)
    assert "\x1b" not in on_tty and "\x00" not in on_tty


def test_unknown_format_is_refused(stored) -> None:
    with pytest.raises(ValueError, match="--format 'xml'"):
        render_events(stored[1], "xml")
