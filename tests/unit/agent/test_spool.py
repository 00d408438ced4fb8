"""edrfleet.agent.spool: lines, rotation, the cursor contract, partial lines."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from edrfleet.agent import spool as spool_mod
from edrfleet.agent.spool import CURRENT, Spool, read_since


def ev(i: int, pad: int = 0) -> dict:
    return {"event.id": i, "event.action": "logged", "pad": "x" * pad}


def ids(lines: list[str]) -> list[int]:
    return [json.loads(line)["event.id"] for line in lines]


def files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_each_event_is_one_compact_json_line_in_key_order(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    with Spool(str(d)) as s:
        s.append([{"z": 1, "a": "é ✓", "nl": "a\nb", "n": None}, {"event.id": 2}])
    raw = (d / CURRENT).read_bytes()
    assert raw == '{"z":1,"a":"é ✓","nl":"a\\nb","n":null}\n{"event.id":2}\n'.encode()


def test_directory_is_0700_and_files_0600_whatever_the_umask(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    d.mkdir(mode=0o755)
    old = os.umask(0o077)
    try:
        s = Spool(str(d), max_bytes=40, keep=2)
        s.append([ev(i) for i in range(5)])  # rotates: rotated files keep their mode
        s.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for p in d.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name


def test_rotation_keeps_files_under_max_bytes_and_drops_the_oldest(tmp_path: Path) -> None:
    line_len = len(json.dumps(ev(0), separators=(",", ":"))) + 1  # ids 0-9 only
    s = Spool(str(tmp_path), max_bytes=3 * line_len, keep=2)
    s.append([ev(i) for i in range(10)])  # 10 lines of 3 per file: 4 files, 3 kept
    assert files(tmp_path) == [CURRENT, CURRENT + ".1", CURRENT + ".2"]
    assert ids((tmp_path / (CURRENT + ".2")).read_text().splitlines()) == [3, 4, 5]
    assert ids((tmp_path / (CURRENT + ".1")).read_text().splitlines()) == [6, 7, 8]
    assert ids((tmp_path / CURRENT).read_text().splitlines()) == [9]
    assert s.rotations == 3 and s.events_written == 10
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 3 * line_len


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    s = Spool(str(tmp_path), max_bytes=100, keep=5)
    s.append([ev(1), ev(2, pad=500), ev(3)])
    assert ids((tmp_path / (CURRENT + ".2")).read_text().splitlines()) == [1]
    assert ids((tmp_path / (CURRENT + ".1")).read_text().splitlines()) == [2]
    assert ids((tmp_path / CURRENT).read_text().splitlines()) == [3]


def test_a_reader_polling_between_appends_sees_every_event_once_in_order(
    tmp_path: Path,
) -> None:
    s = Spool(str(tmp_path), max_bytes=2000, keep=2)
    seen: list[int] = []
    cursor = None
    n = 0
    for batch in range(300):
        size = 1 + batch % 13
        s.append([ev(n + i, pad=batch % 40) for i in range(size)])
        n += size
        if batch % 3 == 0:
            got = read_since(str(tmp_path), cursor)
            assert not got.lost
            seen += ids(got.lines)
            cursor = got.cursor
    got = read_since(str(tmp_path), cursor)
    seen += ids(got.lines)
    assert s.rotations > 50
    assert seen == list(range(n))


def test_a_cursor_survives_three_rotations(tmp_path: Path) -> None:
    s = Spool(str(tmp_path), max_bytes=500, keep=5)
    s.append([ev(i) for i in range(4)])
    first = read_since(str(tmp_path), None)
    assert ids(first.lines) == [0, 1, 2, 3] and not first.lost
    inode = first.cursor["inode"]
    assert inode == os.stat(tmp_path / CURRENT).st_ino
    s.append([ev(i) for i in range(4, 40)])
    assert s.rotations == 3
    # the cursor's file is now events.jsonl.3, with the same inode
    assert os.stat(tmp_path / (CURRENT + ".3")).st_ino == inode
    second = read_since(str(tmp_path), first.cursor)
    assert ids(second.lines) == list(range(4, 40)) and not second.lost
    assert second.cursor["inode"] == os.stat(tmp_path / CURRENT).st_ino
    assert read_since(str(tmp_path), second.cursor).lines == []


def test_a_cursor_whose_file_was_dropped_reads_everything_left_and_says_lost(
    tmp_path: Path,
) -> None:
    s = Spool(str(tmp_path), max_bytes=200, keep=2)
    s.append([ev(0)])
    cursor = read_since(str(tmp_path), None).cursor
    s.append([ev(i) for i in range(1, 60)])
    got = read_since(str(tmp_path), cursor)
    assert got.lost
    left = ids(got.lines)
    assert left == list(range(left[0], 60)) and left[0] > 1  # oldest first, a suffix
    again = read_since(str(tmp_path), got.cursor)
    assert again.lines == [] and not again.lost


def test_a_partial_line_is_not_consumed_until_completed(tmp_path: Path) -> None:
    s = Spool(str(tmp_path))
    s.append([ev(1)])
    # a writer caught mid-line (another process, or a crash): bytes without the newline
    with open(tmp_path / CURRENT, "ab") as f:
        f.write(b'{"event.id":2,"event.act')
    got = read_since(str(tmp_path), None)
    assert ids(got.lines) == [1]
    assert read_since(str(tmp_path), got.cursor).lines == []
    with open(tmp_path / CURRENT, "ab") as f:
        f.write(b'ion":"logged"}\n')
    assert ids(read_since(str(tmp_path), got.cursor).lines) == [2]


def test_reopening_after_a_crash_cuts_the_partial_tail(tmp_path: Path) -> None:
    s = Spool(str(tmp_path))
    s.append([ev(1)])
    s.close()
    with open(tmp_path / CURRENT, "ab") as f:
        f.write(b'{"event.id":2,"tru')
    s = Spool(str(tmp_path))
    s.append([ev(3)])
    assert ids((tmp_path / CURRENT).read_text().splitlines()) == [1, 3]


def test_reopening_a_file_with_no_newline_at_all_empties_it(tmp_path: Path) -> None:
    (tmp_path / CURRENT).write_bytes(b"x" * 100_000)
    Spool(str(tmp_path)).append([ev(1)])
    assert ids((tmp_path / CURRENT).read_text().splitlines()) == [1]


def test_a_failed_write_leaves_no_partial_line(tmp_path: Path, monkeypatch) -> None:
    s = Spool(str(tmp_path))
    s.append([ev(1)])
    real_write = os.write

    def half_then_enospc(fd: int, data) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_mod.os, "write", half_then_enospc)
    with pytest.raises(OSError):
        s.append([ev(2), ev(3)])
    monkeypatch.setattr(spool_mod.os, "write", real_write)
    s.append([ev(4)])
    assert ids((tmp_path / CURRENT).read_text().splitlines()) == [1, 4]


def test_short_writes_are_completed(tmp_path: Path, monkeypatch) -> None:
    real_write = os.write
    monkeypatch.setattr(spool_mod.os, "write", lambda fd, data: real_write(fd, data[:7]))
    s = Spool(str(tmp_path))
    s.append([ev(1), ev(2)])
    assert ids((tmp_path / CURRENT).read_text().splitlines()) == [1, 2]


def test_lone_surrogates_are_escaped_not_lost(tmp_path: Path) -> None:
    argv = b"rm -rf /tmp/\xff".decode(errors="surrogateescape")
    Spool(str(tmp_path)).append([{"process.command_line": argv}])
    line = (tmp_path / CURRENT).read_bytes()
    assert line == b'{"process.command_line":"rm -rf /tmp/\\udcff"}\n'
    assert json.loads(line)["process.command_line"] == argv


def test_read_since_on_an_empty_or_missing_spool(tmp_path: Path) -> None:
    assert read_since(str(tmp_path), None) == ([], None, False)
    got = read_since(str(tmp_path), {"inode": 12345, "offset": 10})
    assert got.lost and got.lines == [] and got.cursor is None
    with pytest.raises(OSError):
        read_since(str(tmp_path / "nope"), None)


def test_a_cursor_that_cannot_belong_to_the_file_counts_as_lost(tmp_path: Path) -> None:
    # An inode number reused by a newer file: the offset is past its end, or not at a line end.
    Spool(str(tmp_path)).append([ev(1), ev(2)])
    ino = os.stat(tmp_path / CURRENT).st_ino
    for offset in (10_000, 3):
        got = read_since(str(tmp_path), {"inode": ino, "offset": offset})
        assert got.lost and ids(got.lines) == [1, 2]


def test_max_bytes_reads_in_pieces_and_a_long_line_still_comes_through(
    tmp_path: Path,
) -> None:
    s = Spool(str(tmp_path), max_bytes=400, keep=10)
    s.append([ev(i) for i in range(20)] + [ev(20, pad=3000)] + [ev(i) for i in range(21, 30)])
    cursor, seen, calls = None, [], 0
    while True:
        got = read_since(str(tmp_path), cursor, max_bytes=100)
        calls += 1
        if not got.lines:
            break
        assert len("".join(got.lines)) <= 100 or len(got.lines) == 1
        seen += ids(got.lines)
        cursor = got.cursor
    assert seen == list(range(30))
    assert calls > 10


def test_a_writer_thread_and_a_reader_thread_race_without_loss_or_duplicates(
    tmp_path: Path,
) -> None:
    total = 6000
    s = Spool(str(tmp_path), max_bytes=3000, keep=400)
    done = threading.Event()

    def write() -> None:
        for start in range(0, total, 7):
            s.append([ev(i) for i in range(start, min(start + 7, total))])
        done.set()

    seen: list[int] = []
    cursor = None
    t = threading.Thread(target=write)
    t.start()
    while True:
        finished = done.is_set()
        got = read_since(str(tmp_path), cursor, max_bytes=5000)
        assert not got.lost
        seen += ids(got.lines)
        cursor = got.cursor
        if finished and not got.lines:
            break
    t.join()
    assert s.rotations > 50
    assert seen == list(range(total))


def test_a_symlinked_events_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """events.jsonl replaced by a link to a 0644 file: no fchmod, no append through it."""
    target = tmp_path / "target"
    target.write_text("precious\n")
    target.chmod(0o644)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "events.jsonl").symlink_to(target)
    with pytest.raises(OSError, match="is a symbolic link"):
        Spool(str(spool))
    assert target.read_text() == "precious\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_symlinked_spool_directory_is_not_chmodded(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    real.chmod(0o755)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OSError, match="is a symbolic link"):
        Spool(str(tmp_path / "link"))
    assert stat.S_IMODE(real.stat().st_mode) == 0o755


def test_a_file_planted_after_a_rotation_is_not_written_to(tmp_path: Path, monkeypatch) -> None:
    s = Spool(str(tmp_path), max_bytes=200, keep=2)
    real_rename = os.rename

    def rename_then_plant(a, b):  # someone races the rotation with a file of their own
        real_rename(a, b)
        if a.endswith("events.jsonl"):
            os.symlink(tmp_path / "elsewhere", a)

    monkeypatch.setattr(os, "rename", rename_then_plant)
    with pytest.raises(OSError):
        for i in range(20):
            s.append([{"i": i, "pad": "x" * 50}])
    assert not (tmp_path / "elsewhere").exists()


def _fixed(i: int) -> dict:
    # equal-length lines: the same offset falls on a line end in any file of them
    return {"event.id": f"{i:04d}", "event.action": "logged"}


def test_a_reused_inode_number_with_lines_of_the_same_length_is_not_taken_for_the_cursor_file(
    tmp_path: Path,
) -> None:
    # The old file (events 0, 1) was dropped and a newer file got its inode number; its lines
    # are as long, so size and the newline before the offset both look right.  The inode is
    # swapped into the cursor here: a filesystem reuses freed numbers when it likes.
    old, new = tmp_path / "old", tmp_path / "new"
    Spool(str(old)).append([_fixed(0), _fixed(1)])
    cursor = read_since(str(old), None).cursor
    Spool(str(new)).append([_fixed(i) for i in range(10, 14)])
    reused = dict(cursor, inode=os.stat(new / CURRENT).st_ino)
    got = read_since(str(new), reused)
    assert got.lost and ids(got.lines) == ["0010", "0011", "0012", "0013"]
    # the same cursor without its fingerprint (an earlier release's) is fooled, as before
    legacy = {"inode": reused["inode"], "offset": reused["offset"]}
    assert ids(read_since(str(new), legacy).lines) == ["0012", "0013"]


def test_the_cursor_fingerprint_covers_the_first_bytes_and_survives_rotation(
    tmp_path: Path,
) -> None:
    s = Spool(str(tmp_path), max_bytes=300, keep=5)
    s.append([_fixed(0)])
    first = read_since(str(tmp_path), None).cursor
    assert first["offset"] > 0 and "head" in first
    s.append([_fixed(i) for i in range(1, 20)])
    assert s.rotations >= 2
    got = read_since(str(tmp_path), first)  # its file is events.jsonl.N now, same bytes
    assert not got.lost and ids(got.lines) == [f"{i:04d}" for i in range(1, 20)]
    fd = os.open(tmp_path / CURRENT, os.O_RDONLY)
    try:
        assert got.cursor["head"] == spool_mod.head_print(fd, got.cursor["offset"])
        assert spool_mod.head_print(fd, 10**9) == spool_mod.head_print(fd, spool_mod.HEAD_BYTES)
    finally:
        os.close(fd)
