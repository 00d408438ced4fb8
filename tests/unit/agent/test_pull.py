"""edrfleet.agent.pull: the frame ``agent.pyz pull`` prints and the controller decodes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from edrfleet.agent.pull import FrameError, decode_frame, encode_frame, pull
from edrfleet.agent.spool import Spool
from edrfleet.agent.status import Status, write_status
from edrfleet.fleet.deploy.release import build_release

HOSTILE = [
    "<script>alert(1)</script>",
    "\x1b[2J\x1b]0;owned\x07\x1b[31mred",
    "line1\nline2\r\n\tTAB\x00NUL",
    "\u2028sep\u2029 \u202eevil",
    "bad utf-8 \udcff\udcfe",
    "x" * 60_000,  # long, but an event line under MAX_LINE (64 KiB)
]


def hostile_event(i: int, cmd: str) -> dict:
    return {"event.id": f"h-{i}", "event.action": "blocked", "process.command_line": cmd}


def write_events(d: Path, events: list[dict], **kw) -> Spool:
    s = Spool(str(d), **kw)
    s.append(events)
    return s


def pull_all(d: Path, cursor=None, max_bytes: int | None = 4096) -> tuple[list[dict], dict]:
    """Pull until the host says no more; returns the events and the last cursor."""
    got: list[dict] = []
    while True:
        frame = decode_frame(pull(str(d), cursor, max_bytes))
        got += [json.loads(line) for line in frame.lines]
        if frame.cursor is not None:
            cursor = frame.cursor
        if not frame.more:
            return got, cursor


def test_hostile_lines_round_trip_exactly(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    write_events(d, [hostile_event(i, c) for i, c in enumerate(HOSTILE)]).close()
    frame = decode_frame(pull(str(d), None, None))
    cmds = [json.loads(line)["process.command_line"] for line in frame.lines]
    assert cmds == HOSTILE
    assert frame.header["events"] == len(HOSTILE) and not frame.lost and not frame.more


def test_the_frame_outside_the_payload_is_ascii_and_the_payload_printable(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    write_events(d, [hostile_event(i, c) for i, c in enumerate(HOSTILE)]).close()
    data = pull(str(d), None, None)
    data.decode("ascii")  # whole frame: nothing a text transport could mangle
    assert b"\x1b" not in data and b"<script>" not in data


def test_bytes_in_the_spool_that_are_not_utf8_arrive_as_replacement_characters(
        tmp_path: Path) -> None:
    # pull ships the spool's bytes undecoded; the decoder alone turns them into text.
    d = tmp_path / "spool"
    write_events(d, [hostile_event(1, "a")]).close()
    with open(d / "events.jsonl", "ab") as f:
        f.write(b'{"event.id":"h-2","process.command_line":"x\xff\xfey"}\n')
    frame = decode_frame(pull(str(d), None, None))
    assert [json.loads(x)["process.command_line"] for x in frame.lines] == ["a", "x\ufffd\ufffdy"]
    assert frame.header["events"] == 2


def test_encode_frame_takes_complete_lines_only() -> None:
    with pytest.raises(ValueError, match="complete lines"):
        encode_frame({"cursor": None}, b'{"event.id":"a"}')


def test_junk_before_the_frame_is_skipped(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    write_events(d, [hostile_event(1, "a")]).close()
    frame = decode_frame(b"Welcome to host!\nEDRFLEET-PULL 0 garbage\n" + pull(str(d), None))
    assert [json.loads(x)["event.id"] for x in frame.lines] == ["h-1"]


def test_every_truncation_is_an_error_not_fewer_events(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    write_events(d, [hostile_event(i, c[:2000]) for i, c in enumerate(HOSTILE)]).close()
    data = pull(str(d), None, None)
    step = max(1, len(data) // 300)
    for cut in [*range(0, len(data), step), len(data) - 1]:
        with pytest.raises(FrameError):
            decode_frame(data[:cut])


def _reframe(header: dict, raw: bytes, payload: bytes | None = None) -> bytes:
    payload = base64.b64encode(zlib.compress(raw)) if payload is None else payload
    h = json.dumps(header).encode()
    return b"EDRFLEET-PULL 1 %d %d\n%s\n%s\nEDRFLEET-PULL-END\n" % (len(h), len(payload), h,
                                                                    payload)


@pytest.mark.parametrize("header,raw,payload,msg", [
    ({"encoding": "zlib+base64", "raw_bytes": 99, "events": 1}, b'{"a":1}\n', None, "bytes"),
    ({"encoding": "zlib+base64", "raw_bytes": 8, "events": 2}, b'{"a":1}\n', None, "lines"),
    ({"encoding": "zlib+base64", "raw_bytes": 7, "events": 1}, b'{"a":1}', None, "complete"),
    ({"encoding": "zlib+base64", "raw_bytes": 8, "events": 1}, b"", b"!!!!", "decode"),
    ({"encoding": "zlib+base64", "raw_bytes": 8, "events": 1}, b"",
     base64.b64encode(zlib.compress(b'{"a":1}\n')[:-4]), "early"),
    ({"encoding": "gzip", "raw_bytes": 8, "events": 1}, b'{"a":1}\n', None, "header"),
])
def test_inconsistent_frames_are_refused(header, raw, payload, msg) -> None:
    with pytest.raises(FrameError, match=msg):
        decode_frame(_reframe(header, raw, payload))


def test_a_payload_length_that_lies_is_refused() -> None:
    good = encode_frame({"cursor": None}, b'{"event.id":"a"}\n')
    magic, rest = good.split(b"\n", 1)
    parts = magic.split(b" ")
    longer = b" ".join([*parts[:-1], str(int(parts[-1]) - 1).encode()]) + b"\n" + rest
    with pytest.raises(FrameError, match="trailer"):
        decode_frame(longer)
    with pytest.raises(FrameError, match="no pull frame"):
        decode_frame(b"Traceback: agent.pyz has no command 'pull'\n")


def test_chunked_pulls_across_rotations_see_every_event_once_in_order(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    s = write_events(d, [hostile_event(i, "rm -rf /x" * (i % 7)) for i in range(200)],
                     max_bytes=1500, keep=50)
    got, cursor = pull_all(d, max_bytes=700)
    s.append([hostile_event(i, "more") for i in range(200, 450)])  # rotates many times
    more, cursor = pull_all(d, cursor, max_bytes=900)
    s.close()
    assert s.rotations > 10
    assert [e["event.id"] for e in got + more] == [f"h-{i}" for i in range(450)]
    again, _ = pull_all(d, cursor)
    assert again == []


def test_a_cursor_rotated_away_is_flagged_lost(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    s = write_events(d, [hostile_event(i, "a" * 100) for i in range(3)], max_bytes=400, keep=2)
    frame = decode_frame(pull(str(d), None))
    s.append([hostile_event(i, "b" * 100) for i in range(3, 30)])
    s.close()
    frame2 = decode_frame(pull(str(d), frame.cursor))
    assert frame2.lost and frame2.lines
    assert not decode_frame(pull(str(d), frame2.cursor)).lost


def test_status_is_carried_and_a_broken_one_is_named(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    write_events(d, []).close()
    write_status(str(d), Status(state="enforcing", backend="sigkill", policy_sha256="ab" * 32))
    st = decode_frame(pull(str(d), None)).status
    assert st is not None and st["state"] == "enforcing" and st["policy_sha256"] == "ab" * 32
    (d / "status.json").write_text("{torn")
    frame = decode_frame(pull(str(d), None))
    assert frame.status is None and "not JSON" in frame.header["status_error"]


def test_a_missing_spool_is_empty_and_keeps_the_cursor(tmp_path: Path) -> None:
    frame = decode_frame(pull(str(tmp_path / "none"), {"inode": 5, "offset": 10}))
    assert frame.lines == [] and frame.header["spool_missing"]
    assert frame.cursor == {"inode": 5, "offset": 10}


def test_the_agent_zipapp_pulls_with_the_system_python(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    write_events(d, [hostile_event(i, c) for i, c in enumerate(HOSTILE[:3])]).close()
    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_release().files["agent.pyz"])
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # no PYTHONPATH: the zip alone
    out = subprocess.run([python, str(pyz), "pull", "--spool", str(d), "--cursor", "null",
                          "--max-bytes", "100000"], capture_output=True, env=env, check=True)
    frame = decode_frame(out.stdout)
    assert [json.loads(x)["process.command_line"] for x in frame.lines] == HOSTILE[:3]
    # the frame's cursor carries the file's fingerprint, and the next pull honours it
    assert set(frame.cursor) == {"inode", "offset", "head"}
    again = subprocess.run([python, str(pyz), "pull", "--spool", str(d), "--cursor",
                            json.dumps(frame.cursor)], capture_output=True, env=env, check=True)
    assert decode_frame(again.stdout).lines == [] and not decode_frame(again.stdout).lost
    forged = json.dumps(dict(frame.cursor, head=frame.cursor["head"] ^ 1))
    other = subprocess.run([python, str(pyz), "pull", "--spool", str(d), "--cursor", forged],
                           capture_output=True, env=env, check=True)
    assert decode_frame(other.stdout).lost and len(decode_frame(other.stdout).lines) == 3
    bad = subprocess.run([python, str(pyz), "pull", "--spool", str(d), "--cursor", "[1]"],
                         capture_output=True, env=env)
    assert bad.returncode == 2 and b"--cursor" in bad.stderr


@pytest.mark.parametrize("cursor", [{"inode": "1", "offset": 2}, {"inode": 1}, [1, 2], "x" * 99,
                                    {"inode": 1, "offset": -1}, {"inode": 1, "offset": 2, "x": 3},
                                    {"inode": True, "offset": 2},
                                    {"inode": 1, "offset": 2, "head": "ab"}])
def test_a_cursor_that_is_not_ours_is_refused(cursor) -> None:
    with pytest.raises(FrameError, match="cursor"):
        decode_frame(encode_frame({"cursor": cursor}, b""))


def test_a_payload_that_inflates_past_its_header_is_refused() -> None:
    bomb = b"{}\n" * 3_000_000  # 9 MB that compresses to a few KB
    with pytest.raises(FrameError, match="bytes, header says 30"):
        decode_frame(_reframe({"encoding": "zlib+base64", "raw_bytes": 30, "events": 10},
                              bomb))
    with pytest.raises(FrameError, match="raw_bytes"):
        decode_frame(_reframe({"encoding": "zlib+base64", "raw_bytes": 1 << 40, "events": 1},
                              b"{}\n"))


def test_lines_over_max_line_are_dropped_and_counted_by_the_host(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    events = [hostile_event(0, "a"), hostile_event(1, "x" * 300_000), hostile_event(2, "b")]
    write_events(d, events).close()
    frame = decode_frame(pull(str(d), None, None))
    assert [json.loads(x)["event.id"] for x in frame.lines] == ["h-0", "h-2"]
    assert frame.dropped == 1 and frame.header["dropped"] == 1
    # the cursor is past the dropped line: it is never sent again
    assert decode_frame(pull(str(d), frame.cursor, None)).lines == []


def test_a_frame_carries_the_machine_id_and_whether_the_agent_is_installed(tmp_path) -> None:
    (tmp_path / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "agent.pyz").write_bytes(b"")
    kw = {"machine_id_file": str(tmp_path / "machine-id")}
    frame = decode_frame(pull(str(tmp_path / "spool"), None, agent=str(tmp_path / "agent.pyz"),
                              **kw))
    assert frame.machine_id == "0123456789abcdef0123456789abcdef" and frame.installed
    frame = decode_frame(pull(str(tmp_path / "spool"), None, agent=str(tmp_path / "gone"), **kw))
    assert not frame.installed
    (tmp_path / "machine-id").write_text("not an id")
    assert decode_frame(pull(str(tmp_path / "spool"), None, **kw)).machine_id == ""


def test_a_symlinked_spool_or_spool_file_is_refused_by_name(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_events(real, [hostile_event(0, "a")]).close()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OSError, match="spool directory is a symlink"):
        pull(str(tmp_path / "link"), None)
    d = tmp_path / "spool"
    d.mkdir()
    (d / "events.jsonl").symlink_to(real / "events.jsonl")
    with pytest.raises(OSError, match="a symlink in the spool"):
        pull(str(d), None)


def _frame(raw: bytes, **header) -> bytes:
    return encode_frame({"cursor": None, **header}, raw)


def test_the_decoder_bounds_inflated_bytes_and_lines_before_decoding(tmp_path: Path) -> None:
    # a zlib bomb: 1 GiB of zeros claimed; refused by its header before inflating
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    head = json.dumps({"cursor": None, "encoding": "zlib+base64", "events": 1,
                       "raw_bytes": 1 << 30}).encode()
    payload = base64.b64encode(bomb)
    data = (b"EDRFLEET-PULL 1 %d %d\n" % (len(head), len(payload)) + head + b"\n" + payload
            + b"\nEDRFLEET-PULL-END\n")
    with pytest.raises(FrameError, match="raw_bytes"):
        decode_frame(data, max_raw=16 << 20)
    with pytest.raises(FrameError, match="more than 10 lines"):
        decode_frame(_frame(b"{}\n" * 11), max_lines=10)
    assert len(decode_frame(_frame(b"{}\n" * 10), max_lines=10).lines) == 10
    bad = encode_frame({"cursor": None, "machine_id": "../../x"}, b"")
    with pytest.raises(FrameError, match="machine_id"):
        decode_frame(bad)
