"""The outputs' registry files (<spool>/outputs/<name>.cursor) and what a shipper does with
them at start and at a crash, on a real spool."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edrfleet.agent.outputs import Outputs, SyslogSink, WebhookSink
from edrfleet.agent.outputs.cursor import (
    cursor_path,
    end_cursor,
    load_cursor,
    records,
    save_cursor,
)
from edrfleet.agent.spool import Spool, read_segments
from tests.unit.helpers.receivers import TcpSyslogReceiver, wait_for


def test_save_then_load_round_trips_atomically_with_private_modes(tmp_path: Path) -> None:
    save_cursor(str(tmp_path), "syslog", {"inode": 12, "offset": 34}, "tcp://h:601")
    path = Path(cursor_path(str(tmp_path), "syslog"))
    assert load_cursor(str(tmp_path), "syslog") == {"inode": 12, "offset": 34}
    assert json.loads(path.read_text())["target"] == "tcp://h:601"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["syslog.cursor"]  # no temporary left


def test_no_cursor_file_is_none_and_a_bad_one_is_said(tmp_path: Path) -> None:
    assert load_cursor(str(tmp_path), "webhook") is None
    os.makedirs(tmp_path / "outputs")
    Path(cursor_path(str(tmp_path), "webhook")).write_text("{not json")
    with pytest.raises(ValueError, match="not an output cursor.*remove it"):
        load_cursor(str(tmp_path), "webhook")


def test_records_carry_the_cursor_after_each_line(tmp_path: Path) -> None:
    with Spool(str(tmp_path), max_bytes=40) as spool:
        spool.append([{"n": i, "pad": "x" * 10} for i in range(4)])  # two files
    got = read_segments(str(tmp_path), None)
    recs = records(got.segments)
    assert [json.loads(r.line)["n"] for r in recs] == [0, 1, 2, 3]
    # (read_segments' cursor adds the file's fingerprint; an output holds its file open)
    assert recs[-1].cursor == {k: got.cursor[k] for k in ("inode", "offset")}
    # a reader resuming after any record gets exactly the ones after it
    for k, rec in enumerate(recs):
        rest = records(read_segments(str(tmp_path), rec.cursor).segments)
        assert [r.line for r in rest] == [r.line for r in recs[k + 1:]]


def test_end_cursor_is_after_the_last_line(tmp_path: Path) -> None:
    assert end_cursor(str(tmp_path)) is None
    with Spool(str(tmp_path)) as spool:
        spool.append([{"a": 1}])
    assert read_segments(str(tmp_path), end_cursor(str(tmp_path))).segments == []


@pytest.fixture
def syslog_spool(tmp_path: Path) -> Iterator[tuple[Spool, TcpSyslogReceiver, str]]:
    """A real spool, a TCP syslog receiver and its address; both closed afterwards."""
    spool = Spool(str(tmp_path / "spool"))
    rx = TcpSyslogReceiver()
    try:
        yield spool, rx, f"tcp://127.0.0.1:{rx.port}"
    finally:
        rx.stop()
        spool.close()


def test_a_crash_before_the_cursor_is_saved_sends_that_batch_again(syslog_spool) -> None:
    """At least once: the cursor on disk is the receiver's last acknowledgement."""
    spool, rx, address = syslog_spool
    outs = Outputs(spool.directory, [SyslogSink(address)])
    spool.append([{"event": {"id": f"e{i}"}} for i in range(3)])
    outs.wake()
    assert wait_for(lambda: outs.stats()["SyslogOutput"]["delivered"] == 3)
    before = load_cursor(spool.directory, "syslog")
    spool.append([{"event": {"id": f"e{i}"}} for i in range(3, 5)])
    outs.wake()
    assert wait_for(lambda: outs.stats()["SyslogOutput"]["delivered"] == 5)
    outs.close(1)
    save_cursor(spool.directory, "syslog", before)  # as if the agent died before saving
    again = Outputs(spool.directory, [SyslogSink(address)])
    assert wait_for(lambda: len(rx.frames) == 7), len(rx.frames)
    again.close(1)
    got = [json.loads(f.partition(b"\xef\xbb\xbf")[2])["event"]["id"] for f in rx.frames]
    assert got == ["e0", "e1", "e2", "e3", "e4", "e3", "e4"]  # again, never lost


def test_a_missing_header_file_fails_the_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        WebhookSink("http://127.0.0.1:9/x", header_file=str(tmp_path / "nope"))


def test_a_bad_cursor_file_fails_the_start_instead_of_resending_or_skipping(
        tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    os.makedirs(tmp_path / "outputs", exist_ok=True)
    Path(cursor_path(str(tmp_path), "syslog")).write_text("[]")
    with pytest.raises(ValueError, match="syslog.cursor"):
        Outputs(spool.directory, [SyslogSink("udp://127.0.0.1:9")])
    spool.close()


def test_counters_go_on_across_a_hand_over(syslog_spool) -> None:
    """The resident image is the same agent: its outputs count on from the status.json the
    image before it wrote (a garbage value counts as nothing), and ship from the cursor."""
    spool, rx, address = syslog_spool
    outs = Outputs(spool.directory, [SyslogSink(address)])
    spool.append([{"event": {"id": f"e{i}"}} for i in range(2)])
    outs.wake()
    assert wait_for(lambda: outs.stats()["SyslogOutput"]["delivered"] == 2)
    before = json.loads(json.dumps(outs.stats()))  # as written into status.json
    outs.close(1)
    before["SyslogOutput"]["retries"] = "x"
    after = Outputs(spool.directory, [SyslogSink(address)])
    after.carry(before)
    spool.append([{"event": {"id": "e2"}}])
    after.wake()
    assert wait_for(lambda: after.stats()["SyslogOutput"]["delivered"] == 3)
    assert after.stats()["SyslogOutput"]["retries"] == 0
    after.close(1)
    assert len(rx.frames) == 3  # nothing shipped twice
