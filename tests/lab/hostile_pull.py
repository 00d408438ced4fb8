"""A compromised host's answer to the report's pull (issue 17), run on a lab host in place of
its python3: ``hostile_pull.py MODE ARGS…`` prints what MODE says instead of a true frame.

Modes: ``huge_frame`` (a frame line announcing ~1 TB, then endless payload), ``zlib_bomb``
(1 GiB of zeros in ~1 MB, announced as 1 GiB), ``small_bomb`` (the same payload, announced
as 1000 bytes), ``endless`` (junk on stdout forever), ``many_lines`` (5 M lines of ``{}``),
``long_line`` (one 50 MB event line), ``stderr_escapes`` (exit 1 with terminal escapes on
stderr), ``more_forever`` (one event a frame, always ``more``), ``hang`` (writes its pid to
``$HOSTILE_PIDFILE``, then sleeps).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import zlib

MiB = 1 << 20


def frame(raw: bytes, claimed: int | None = None, events: int | None = None, **head) -> bytes:
    payload = base64.b64encode(zlib.compress(raw, 1))
    return _frame(payload, len(raw) if claimed is None else claimed,
                  raw.count(b"\n") if events is None else events, **head)


def _frame(payload: bytes, raw_bytes: int, events: int, **head) -> bytes:
    h = json.dumps({"cursor": head.pop("cursor", None), "encoding": "zlib+base64",
                    "events": events, "raw_bytes": raw_bytes, **head}).encode()
    return (b"EDRFLEET-PULL 1 %d %d\n" % (len(h), len(payload)) + h + b"\n" + payload
            + b"\nEDRFLEET-PULL-END\n")


def bomb() -> bytes:
    z = zlib.compressobj(9)
    zeros = bytes(MiB)
    return b"".join([*(z.compress(zeros) for _ in range(1024)), z.flush()])


def arg(name: str) -> str:
    return sys.argv[sys.argv.index(name) + 1]


def main(mode: str) -> None:
    out = sys.stdout.buffer
    if mode in ("huge_frame", "endless"):
        if mode == "huge_frame":
            out.write(b"EDRFLEET-PULL 1 10 999999999999\n")
        junk = b"A" * MiB
        while True:
            out.write(junk)
    elif mode in ("zlib_bomb", "small_bomb"):
        payload = base64.b64encode(bomb())
        out.write(_frame(payload, 1 << 30 if mode == "zlib_bomb" else 1000, 1))
    elif mode == "many_lines":
        out.write(frame(b"{}\n" * 5_000_000))
    elif mode == "long_line":
        line = json.dumps({"event": {"id": "x"}, "pad": "x" * (50 * MiB)}).encode() + b"\n"
        out.write(frame(line))
    elif mode == "stderr_escapes":
        sys.stderr.write("\x1b]0;pwned\x07\x1b[2J\x1bc[blink]BLINK[/blink]\u202e\n")
        sys.exit(1)
    elif mode == "more_forever":
        cursor = json.loads(arg("--cursor")) or {"inode": 1, "offset": 0}
        cursor["offset"] += 1
        line = json.dumps({"event": {"id": f"e{cursor['offset']}"}}).encode() + b"\n"
        out.write(frame(line, cursor=cursor, more=True))
    elif mode == "hang":
        with open(os.environ.get("HOSTILE_PIDFILE", "/dev/null"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(3600)
    out.flush()


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except BrokenPipeError:  # the controller stopped reading: what it should do
        os._exit(0)
