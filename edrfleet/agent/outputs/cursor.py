"""Each output's place in the spool: ``<spool>/outputs/<name>.cursor``, like a log shipper's
registry.

The file holds the spool's reader cursor (``{"inode", "offset"}``, the contract in
:mod:`edrfleet.agent.spool`) just after the last event the output's receiver acknowledged, and
the receiver it was acknowledged by (for a person reading it; it is not checked)::

    {"inode": 1234, "offset": 56789, "target": "tcp://logs:601", "updated_at": 1738324800.1}

It is written to a temporary file, fsync-ed and renamed over the old one, so a crash leaves the
old cursor or the new one, never a torn one: after a crash the events after the old cursor are
sent again (at least once, never lost).  An output with no cursor file yet (just configured)
starts at the end of the spool: the spool's history stays for ``edrfleet report`` rather than
flooding a new receiver.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, NamedTuple

from edrfleet.agent.spool import CURRENT, Segment

CURSOR_DIR = "outputs"


class Record(NamedTuple):
    """One spool line and where a reader stands once it is delivered."""

    line: bytes  # without its b"\n"
    inode: int
    offset: int  # just after the line's b"\n"

    @property
    def cursor(self) -> dict[str, int]:
        return {"inode": self.inode, "offset": self.offset}


def records(segments: list[Segment]) -> list[Record]:
    """The lines of :func:`edrfleet.agent.spool.read_segments`, each with its cursor."""
    out = []
    for seg in segments:
        pos = seg.offset
        for line in seg.data.split(b"\n")[:-1]:
            pos += len(line) + 1
            out.append(Record(line, seg.inode, pos))
    return out


def cursor_path(spool_dir: str, name: str) -> str:
    return os.path.join(os.fspath(spool_dir), CURSOR_DIR, f"{name}.cursor")


def load_cursor(spool_dir: str, name: str) -> dict[str, int] | None:
    """The saved cursor, or None if there is none.

    Raises:
        ValueError: the file is not a cursor (say so rather than resend or skip silently).
    """
    path = cursor_path(spool_dir, name)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
        return {"inode": int(data["inode"]), "offset": int(data["offset"])}
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not an output cursor ({e}); remove it to start at the "
                         f"spool's end") from None


def end_cursor(spool_dir: str) -> dict[str, int] | None:
    """A cursor after the last complete line of the spool (None: no spool file yet)."""
    try:
        st = os.stat(os.path.join(os.fspath(spool_dir), CURRENT))
    except FileNotFoundError:
        return None
    # The writer cuts a crash-left partial line at open and writes whole lines only, so the
    # size is a line boundary.
    return {"inode": st.st_ino, "offset": st.st_size}


def save_cursor(spool_dir: str, name: str, cursor: dict[str, int], target: str = "") -> None:
    """Atomically replace the output's cursor file (directory 0700, file 0600)."""
    directory = os.path.join(os.fspath(spool_dir), CURSOR_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    data: dict[str, Any] = {"inode": cursor["inode"], "offset": cursor["offset"],
                            "target": target, "updated_at": round(time.time(), 3)}
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(data, sort_keys=True).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        # No fsync of the directory: a rename lost in a crash only means a batch sent twice.
        os.rename(tmp, cursor_path(spool_dir, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
