"""The event spool: JSON lines on the host's disk, rotated by size, read incrementally by cursor.

Files (``<dir>`` is 0700, every file 0600)::

    <dir>/events.jsonl       the file being written
    <dir>/events.jsonl.1     the previous one, ... up to events.jsonl.<keep> (the oldest)

Writer (:class:`Spool`, one per spool directory):

- One event = one line: ``json.dumps(event, ensure_ascii=False, separators=(",", ":"))`` in
  UTF-8, then ``\\n``.  JSON escapes newlines inside strings, so ``\\n`` only ends records.
  (U+2028/U+2029 stay raw: split on the byte ``\\n``, never with ``str.splitlines``.)
- A batch is written with one ``write`` per file it lands in, then ``fsync``-ed.  If a write
  fails half-way (ENOSPC, EIO) the file is truncated back to where that write began, and at
  open a crash-left tail without ``\\n`` is cut off: no file ever holds a partial line that a
  later write would glue to the next record.
- Rotation by size: a line that would take the file past ``max_bytes`` goes to a new file
  instead (a single line larger than ``max_bytes`` gets a file of its own).  Rotating renames
  ``.<keep-1>`` -> ``.<keep>`` (dropping the old ``.<keep>``), ..., ``.1`` -> ``.2``,
  ``events.jsonl`` -> ``.1``, then creates a new ``events.jsonl``.  Renames keep inodes, and a
  rotated file is never written again.

Cursor contract (what a reader keeps between pulls, e.g. ``edrfleet report``)::

    cursor = {"inode": <st_ino of the file last read>, "offset": <bytes of it consumed>,
              "head": <fingerprint of the file's first bytes>}

``offset`` always sits just after a ``\\n``.  ``head`` (present when ``offset`` > 0) is
:func:`head_print` of the file's first ``min(offset, HEAD_BYTES)`` bytes: bytes a spool file
never rewrites, and which hold its first event's time and id.  An inode number is reused once
its file is dropped (ext4 hands a freed one to the next file created), so a reader that held
no descriptor between two pulls could take a *newer* file with the old number for its cursor's
file and skip everything between; the fingerprint tells the two apart.  A cursor without
``head`` (from a reader of an earlier release) is matched by inode, size and the newline
before ``offset``, as before.  Because rotation renames but never rewrites, the
file with that inode is still one of ``events.jsonl``, ``events.jsonl.1`` ... ``.<keep>`` until
rotation drops it, and its bytes before ``offset`` are unchanged; reading on from ``offset``,
then every newer file from 0, yields each event exactly once and in order.  If the inode is no
longer there (the reader fell more than ``keep`` rotations behind), :func:`read_since` reads
every file present, oldest first, and says ``lost=True``.  Readers consume only up to the last
``\\n`` of a file, so a line still being written is left for the next pull.

Example::

    >>> spool = Spool("/var/lib/edrfleet/spool")
    >>> spool.append([{"event": {"action": "blocked"}, "process": {"pid": 4242}}])
    >>> got = read_since("/var/lib/edrfleet/spool", None)
    >>> got.lines, got.cursor, got.lost
    (['{"event":{"action":"blocked"},"process":{"pid":4242}}'],
     {'inode': 1234, 'offset': 54, 'head': 91343852333181}, False)
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import threading
import time
from typing import Any, NamedTuple

CURRENT = "events.jsonl"
MiB = 1 << 20
_ROTATED = re.compile(re.escape(CURRENT) + r"\.([1-9][0-9]*)")
_SNAPSHOT_TRIES = 40  # a rotation between two directory listings makes the reader retry
# The fingerprint covers the first event line's opening (its @timestamp and event.id come
# early in every line the agent writes); 256 bytes cost one short pread per pull.
HEAD_BYTES = 256


def _encode(event: dict[str, Any]) -> bytes:
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        # Lone surrogates (argv bytes decoded with surrogateescape) are not UTF-8: escape them
        # as \\udcXX rather than lose the event.
        return json.dumps(event, separators=(",", ":"), default=str).encode() + b"\n"


def _cut_partial_tail(fd: int) -> int:
    """Drop bytes after the last newline (left by a crash mid-write); return the new size."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        nl = os.pread(fd, end - start, start).rfind(b"\n")
        if nl != -1:
            end = start + nl + 1
            break
        end = start
    if end != size:
        os.ftruncate(fd, end)
        os.fsync(fd)
    return end


def _open_nofollow(path: str, flags: int, mode: int = 0o600) -> int:
    """os.open that refuses a symbolic link as the last component, saying so."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            raise OSError(exc.errno, f"{path} is a symbolic link: the agent writes only files "
                          "of its own (fix: remove the link)") from None
        raise


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Appends events to ``<directory>/events.jsonl`` with size rotation.  Not for use by two
    processes at once; one lock serialises threads of this one.

    Args:
        directory: the spool directory, created 0700 if missing.
        max_bytes: size a file may reach before the next line starts a new one.
        keep: rotated files kept (``events.jsonl.1`` .. ``.<keep>``), at least 1.

    Raises:
        OSError: the directory or file cannot be created or written.
    """

    def __init__(self, directory: str, max_bytes: int = 64 * MiB, keep: int = 5) -> None:
        if max_bytes < 1 or keep < 1:
            raise ValueError("max_bytes and keep must be >= 1")
        self.directory = os.fspath(directory)
        self.max_bytes = max_bytes
        self.keep = keep
        self.path = os.path.join(self.directory, CURRENT)
        self.events_written = 0
        self.rotations = 0
        self._lock = threading.Lock()
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        # exist_ok keeps a pre-existing dir's mode; O_NOFOLLOW: never chmod through a link
        dfd = _open_nofollow(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fchmod(dfd, 0o700)
        finally:
            os.close(dfd)
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self, exclusive: bool = False) -> None:
        """Open events.jsonl, never through a link (one planted there would have the agent
        fchmod and append to its target); ``exclusive`` right after a rotation renamed it away:
        whatever appeared there since is not ours."""
        # O_RDWR, not O_WRONLY: the crash-tail check at open reads the file back.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | (os.O_EXCL if exclusive else 0)
        fd = _open_nofollow(self.path, flags, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, f"{self.path} is not a regular file (fix: remove "
                              "it)")
            os.fchmod(fd, 0o600)  # the umask may have narrowed it; a reused file may be wider
            self._size = _cut_partial_tail(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _fsync_dir(self.directory)

    @property
    def size(self) -> int:
        """Bytes in the current file."""
        return self._size

    def append(self, events: list[dict[str, Any]]) -> None:
        """Write ``events`` as lines, rotating as needed; returns once they are fsync-ed."""
        if not events:
            return
        lines = [_encode(e) for e in events]
        with self._lock:
            if self._fd < 0:
                raise ValueError("spool is closed")
            chunk: list[bytes] = []
            used = self._size  # bytes the current file will hold once chunk is written
            for line in lines:
                if used and used + len(line) > self.max_bytes:
                    self._write(b"".join(chunk))
                    chunk = []
                    self._rotate()
                    used = self._size
                chunk.append(line)
                used += len(line)
            self._write(b"".join(chunk))
            os.fsync(self._fd)
            self.events_written += len(lines)

    def _write(self, buf: bytes) -> None:
        if not buf:
            return
        view = memoryview(buf)
        start = self._size
        try:
            while view:  # a regular file writes all at once, short of ENOSPC or a signal
                n = os.write(self._fd, view)
                view = view[n:]
        except BaseException:
            try:
                os.ftruncate(self._fd, start)  # never leave a partial line behind
            except OSError:
                pass
            raise
        self._size = start + len(buf)

    def _rotate(self) -> None:
        os.fsync(self._fd)  # durable before it is renamed into the past
        os.close(self._fd)
        self._fd = -1
        base = self.path
        renamed = False
        try:
            try:
                os.unlink(f"{base}.{self.keep}")
            except FileNotFoundError:
                pass
            for k in range(self.keep - 1, 0, -1):
                try:
                    os.rename(f"{base}.{k}", f"{base}.{k + 1}")
                except FileNotFoundError:
                    pass
            os.rename(base, f"{base}.1")
            renamed = True
            self.rotations += 1
        finally:
            # Even if a rename failed, keep a file open: the next batch then retries the
            # rotation instead of finding the spool closed.
            self._open(exclusive=renamed)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the reader side -------------------------------------------------------------------------


class SpoolRead(NamedTuple):
    """What :func:`read_since` returns."""

    lines: list[str]  # complete JSON lines, oldest first, without the "\n"
    cursor: dict[str, int] | None  # pass it to the next call; None only if the spool is empty
    lost: bool  # the cursor's file was dropped by rotation: events between may be missing


class SpoolBytes(NamedTuple):
    """What :func:`read_since_bytes` returns: the lines as the spool holds them."""

    data: bytes  # complete lines, each ending in b"\n", oldest first, undecoded
    cursor: dict[str, int] | None
    lost: bool


def _listing(directory: str) -> list[tuple[int, str, int]]:
    """(age rank, name, inode) of the spool's files, oldest first."""
    out = []
    with os.scandir(directory) as it:
        for entry in it:
            if entry.name == CURRENT:
                rank = 0
            else:
                m = _ROTATED.fullmatch(entry.name)
                if not m:
                    continue
                rank = int(m.group(1))
            try:
                out.append((rank, entry.name, entry.inode()))
            except FileNotFoundError:  # rotated away between readdir and stat
                continue
    out.sort(reverse=True)
    return out


def _snapshot(directory: str) -> list[tuple[int, int]]:
    """Open every spool file at one consistent moment: [(fd, inode)], oldest first.

    The writer may rotate while we open names one by one, which could show us one inode twice
    or none of a file; so list, open, list again, and retry unless nothing moved.  Rotation
    renames keep+1 files in microseconds, so a short, growing pause lets it finish.
    """
    for attempt in range(_SNAPSHOT_TRIES):
        if attempt:
            time.sleep(0.001 * (1 << min(attempt, 6)))
        before = _listing(directory)
        opened: list[tuple[int, int]] = []
        try:
            for _rank, name, _ino in before:
                # A symlink in the spool is not ours: refused by name, never followed (its
                # inode would differ from the listing's, which reads as endless rotation).
                fd = os.open(os.path.join(directory, name),
                             os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                opened.append((fd, os.fstat(fd).st_ino))
        except FileNotFoundError:
            pass
        except OSError as e:
            for fd, _ in opened:
                os.close(fd)
            if e.errno == errno.ELOOP:
                raise OSError(e.errno, f"{e.filename}: a symlink in the spool: not read"
                              ) from None
            raise
        if [ino for _, _, ino in before] == [ino for _, ino in opened] and before == _listing(
            directory
        ):
            return opened
        for fd, _ in opened:
            os.close(fd)
    raise OSError(f"{directory}: the spool kept rotating while being read")


def _read_lines(
    fd: int, offset: int, budget: int | None, first: bool
) -> tuple[bytes, int, bool]:
    """Complete lines from ``offset`` on, at most ``budget`` bytes of them; but if ``first``
    (nothing taken yet by this pull), a first line however long, so no line stalls a reader.

    Returns (the lines with their newlines, the offset after them, whether no complete line is
    left after that offset).
    """
    avail = os.fstat(fd).st_size - offset
    if avail <= 0:
        return b"", offset, True
    want = avail if budget is None else min(avail, max(budget, 1))
    data = os.pread(fd, want, offset)
    nl = data.rfind(b"\n")
    if nl != -1:
        return data[: nl + 1], offset + nl + 1, want == avail
    if want == avail:
        return b"", offset, True  # only a line still being written
    if not first:
        return b"", offset, False
    # The budget ended inside the first line: read on until that line ends.
    buf = bytearray(data)
    while True:
        more = os.pread(fd, MiB, offset + len(buf))
        if not more:
            return b"", offset, True
        nl = more.find(b"\n")
        if nl != -1:
            buf += more[: nl + 1]
            end = offset + len(buf)
            return bytes(buf), end, end == offset + avail
        buf += more


def read_since(
    directory: str, cursor: dict[str, int] | None, max_bytes: int | None = None
) -> SpoolRead:
    """Complete lines written after ``cursor`` (all lines if it is None), oldest first,
    decoded (bytes that are not UTF-8 become U+FFFD).  See :func:`read_since_bytes`.
    """
    got = read_since_bytes(directory, cursor, max_bytes)
    lines = got.data.decode(errors="replace").split("\n")[:-1]
    return SpoolRead(lines, got.cursor, got.lost)


def read_since_bytes(
    directory: str, cursor: dict[str, int] | None, max_bytes: int | None = None
) -> SpoolBytes:
    """Complete lines written after ``cursor`` (all lines if it is None), oldest first, as the
    bytes the spool holds: what ``pull`` ships without decoding a line of it.

    Args:
        directory: the spool directory.
        cursor: ``{"inode": int, "offset": int}`` from the previous call, or None.
        max_bytes: stop after about this many bytes of lines (None: no limit); call again with
            the returned cursor for the rest.

    Returns:
        SpoolBytes(data, cursor, lost).  ``lost`` is True when the cursor's file has been
        dropped by rotation, so everything still present was read from the oldest file on.

    Raises:
        OSError: the directory cannot be read.
    """
    got = read_segments(directory, cursor, max_bytes)
    return SpoolBytes(b"".join(s.data for s in got.segments), got.cursor, got.lost)


class Segment(NamedTuple):
    """Lines read from one spool file: a cursor after any of them is (inode, offset + bytes)."""

    inode: int
    offset: int  # where ``data`` starts in that file
    data: bytes  # complete lines, each ending in b"\n"


class SpoolSegments(NamedTuple):
    """What :func:`read_segments` returns."""

    segments: list[Segment]
    cursor: dict[str, int] | None
    lost: bool


def spool_inodes(directory: str) -> list[int]:
    """Inodes of the spool's files now, oldest first (a reader's cursor is alive while its
    inode is here)."""
    return [ino for _rank, _name, ino in _listing(directory)]


def open_inode(directory: str, inode: int) -> int | None:
    """A read-only descriptor of the spool file with this inode (None: no such file).  A
    reader that holds it keeps the inode number from being reused by a newer spool file,
    which would make an old cursor look alive."""
    for _rank, name, ino in _listing(directory):
        if ino == inode:
            try:
                fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            if os.fstat(fd).st_ino == inode:
                return fd
            os.close(fd)
    return None


def head_print(fd: int, offset: int) -> int:
    """The fingerprint of the file's first ``min(offset, HEAD_BYTES)`` bytes: 48 bits of their
    SHA-256, as an integer (cursors hold integers only; JSON keeps 48 bits exact)."""
    data = os.pread(fd, min(offset, HEAD_BYTES), 0)
    return int.from_bytes(hashlib.sha256(data).digest()[:6], "big")


def _cursor(fd: int, inode: int, offset: int) -> dict[str, int]:
    cursor = {"inode": inode, "offset": offset}
    if offset > 0:
        cursor["head"] = head_print(fd, offset)
    return cursor


def _same_file(fd: int, cursor: dict[str, int]) -> bool:
    """Whether the open spool file (whose inode is the cursor's) is the cursor's file."""
    off = int(cursor["offset"])
    if off > os.fstat(fd).st_size:
        return False
    if off == 0:
        return True
    if "head" in cursor:
        return head_print(fd, off) == int(cursor["head"])
    # An old cursor without a fingerprint: a reused inode number belongs to another file, and
    # its size or the byte before the offset usually gives that away.
    return os.pread(fd, 1, off - 1) == b"\n"


def read_segments(
    directory: str, cursor: dict[str, int] | None, max_bytes: int | None = None
) -> SpoolSegments:
    """As :func:`read_since_bytes`, with the lines kept per file, so that a reader that
    consumes only some of them (an output shipping a batch) can place its cursor after any
    line."""
    files = _snapshot(directory)
    try:
        start, offset, lost = 0, 0, False
        if cursor is not None:
            ino, off = int(cursor["inode"]), int(cursor["offset"])
            for k, (fd, fino) in enumerate(files):
                if fino == ino and _same_file(fd, cursor):
                    start, offset = k, off
                    break
            else:
                lost = True
        if not files:
            return SpoolSegments([], cursor if cursor is not None and not lost else None, lost)
        segments: list[Segment] = []
        budget = max_bytes
        new_cursor = _cursor(files[start][0], files[start][1], offset)
        for k in range(start, len(files)):
            fd, fino = files[k]
            begin = offset if k == start else 0
            data, end, drained = _read_lines(
                fd, begin, budget, first=not any(s.data for s in segments)
            )
            if data:
                segments.append(Segment(fino, begin, data))
            new_cursor = _cursor(fd, fino, end)
            if budget is not None:
                budget -= len(data)
            if not drained or (budget is not None and budget <= 0):
                break
            # Drained: a rotated file is never written again, and whatever follows its last
            # newline is a crash fragment, so moving on to the next file skips nothing whole.
        return SpoolSegments(segments, new_cursor, lost)
    finally:
        for fd, _ in files:
            os.close(fd)
