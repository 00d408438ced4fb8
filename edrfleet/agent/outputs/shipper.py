"""One output's shipping thread: spool -> receiver, with a persisted cursor.

The event loop only writes the spool and calls :meth:`Shipper.wake`.  The thread reads the
spool from the output's cursor (:mod:`.cursor`), hands batches to its sink (syslog or webhook),
and saves the cursor after each batch the receiver acknowledged.  So events made while the
receiver is down, or while the agent is down, wait in the spool and go out, in order, once it
is back: at least once (a batch in flight at a crash is sent again), never reordered.

A failed batch is retried with exponential backoff (``backoff_first`` doubling up to
``backoff_max``), the same batch again, for as long as it takes.  Events are dropped only

- when rotation outruns the output: the cursor's file was rotated out of the spool (the
  receiver was unreachable for longer than the spool's rotated files last); the events of the
  files that went are counted (the thread counts the lines of every spool file it has not
  shipped yet, so it knows what each file held);
- when the receiver refuses a batch or an event for good (:class:`Rejected`, e.g. a webhook's
  HTTP 400), or a spool line is not JSON.

Counters (``stats()``, status.json's ``outputs``): ``delivered``, ``dropped``, ``pending``
(events in the spool not yet delivered), ``errors``, ``retries``, ``last_error`` (the last
failure, cleared once a batch is delivered again), ``last_ok`` (epoch of the last delivery),
``last_drop`` (``{"at", "events", "reason"}``), plus the sink's own.  They count from the agent's
start, as status.json's other counters do.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Protocol

from edrfleet.agent.outputs.cursor import Record, end_cursor, load_cursor, records, save_cursor
from edrfleet.agent.spool import open_inode, read_segments, spool_inodes

READ_BYTES = 1 << 20  # spool bytes read at a time for shipping
SCAN_BYTES = 4 << 20  # ... and for counting what is pending
IDLE_POLL = 1.0  # seconds between looks at the spool when nobody wakes the thread


class Retry(Exception):
    """The batch did not go (receiver down, timeout, 5xx): send it again after a pause.
    ``done`` events at its head did go (datagrams sent before the failure)."""

    def __init__(self, reason: str, done: int = 0) -> None:
        super().__init__(reason)
        self.done = done


class Rejected(Exception):
    """The receiver refused this whole batch for good: it is dropped, with this reason."""


class Sink(Protocol):
    name: str  # the cursor file's name
    label: str  # the key in status.json's outputs
    target: str  # where it sends, credentials left out
    batch_events: int

    def send(self, lines: list[bytes]) -> tuple[int, str]:
        """Deliver the events (spool lines); return (events refused one by one, why)."""
        ...

    def reset(self) -> None: ...  # forget a connection after a failure

    def reload(self) -> None: ...  # SIGHUP: read credentials again

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class Shipper:
    """Ships the spool at ``spool_dir`` to ``sink`` from a daemon thread (see the module doc).

    Raises:
        ValueError: the saved cursor file is unreadable.
        OSError: the cursor cannot be written.
    """

    def __init__(self, spool_dir: str, sink: Sink) -> None:
        self.spool_dir = str(spool_dir)
        self.sink = sink
        self.backoff_first: float = getattr(sink, "backoff_first", 1.0)
        self.backoff_max: float = getattr(sink, "backoff_max", 30.0)
        cursor = load_cursor(self.spool_dir, sink.name)
        if cursor is None:
            cursor = end_cursor(self.spool_dir)
            if cursor is not None:
                save_cursor(self.spool_dir, sink.name, cursor, sink.target)
        self.committed = cursor  # after the last acknowledged event
        self._read_at = cursor  # after the last buffered event
        self._frontier = cursor  # after the last counted event
        self._ahead: dict[int, int] = {}  # inode -> events not yet delivered, as counted
        self._buffer: deque[Record] = deque()
        self._uncounted = False  # files left the spool before this thread counted their lines
        self._pin: tuple[int, int] | None = None  # (inode, fd) of the committed cursor's file
        self.delivered = self.dropped = self.errors = self.retries = 0
        self.last_error: str | None = None
        self.last_ok: float | None = None
        self.last_drop: dict[str, Any] | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()  # counters and errors, against stats() from the loop
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._retry_at = 0.0
        self._backoff = 0.0
        self._thread = threading.Thread(target=self._run, name=f"edrfleet-{sink.name}",
                                        daemon=True)

    def start(self) -> Shipper:
        self._thread.start()
        return self

    def wake(self) -> None:
        """New events are in the spool (called by the event loop; never blocks)."""
        self._wake.set()

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        if self.committed is not None:
            self._hold(self.committed["inode"])
        try:
            while True:
                self._count_pending()
                if self._stop.is_set() and (self.pending() == 0 and not self._buffer
                                            or time.monotonic() >= self._deadline):
                    break
                wait = self._retry_at - time.monotonic()
                if self._stop.is_set() and wait > 0:
                    break  # the last try failed: the rest waits in the spool for next start
                if wait <= 0:
                    if self._ship_one_batch():
                        continue
                    wait = self._retry_at - time.monotonic()
                    if wait <= 0:
                        wait = IDLE_POLL
                if self._stop.is_set():
                    wait = min(wait, 0.05)
                self._wake.wait(wait)
                self._wake.clear()
        except Exception as e:  # never let the thread die silently: say why in status.json
            self._error(f"output thread stopped: {type(e).__name__}: {e}")
        finally:
            self._release()
            self.sink.close()

    def _ship_one_batch(self) -> bool:
        """Send the next batch; False when there was nothing to send."""
        if not self._buffer and not self._refill():
            return False
        batch = [self._buffer[i] for i in range(min(self.sink.batch_events, len(self._buffer)))]
        try:
            refused, why = self.sink.send([r.line for r in batch])
        except Retry as e:
            self._acknowledge(batch[: e.done], 0, "")
            self.sink.reset()
            self._error(str(e))
            self.retries += 1
            self._backoff = min(max(self._backoff * 2, self.backoff_first), self.backoff_max)
            self._retry_at = time.monotonic() + self._backoff
            return False
        except Rejected as e:
            self._error(f"{e}; batch of {len(batch)} events dropped")
            self._acknowledge(batch, len(batch), str(e))
            return True
        self._acknowledge(batch, refused, why, ok=True)
        self._backoff = 0.0
        self._retry_at = 0.0
        return True

    def _acknowledge(self, batch: list[Record], refused: int, why: str,
                     ok: bool = False) -> None:
        """The receiver is done with ``batch``: move and save the cursor, count it (and if
        ``ok``, it took a batch: the last error is over)."""
        if not batch:
            return
        for _ in batch:
            self._buffer.popleft()
        self._commit(batch[-1].cursor)  # first: a count in status.json is a saved cursor
        with self._lock:  # one step for stats(): pending, counts and error agree
            for rec in batch:
                left = self._ahead.get(rec.inode, 0) - 1
                if left or rec.inode == (self._frontier or {}).get("inode"):
                    self._ahead[rec.inode] = left
                else:
                    self._ahead.pop(rec.inode, None)  # a file shipped whole: forget it
            self.delivered += len(batch) - refused
            if refused:
                self._count_drop(refused, why)
            if ok:
                self.last_error = None
                self.last_ok = time.time()

    def _commit(self, cursor: dict[str, int]) -> None:
        self.committed = cursor
        save_cursor(self.spool_dir, self.sink.name, cursor, self.sink.target)
        self._hold(cursor["inode"])

    def _hold(self, inode: int) -> None:
        """Keep the committed file open: rotation may unlink it, but while it is open its
        inode number cannot come back as a new file's and pass for it."""
        if self._pin is not None and self._pin[0] == inode:
            return
        self._release()
        fd = open_inode(self.spool_dir, inode)
        if fd is not None:
            self._pin = (inode, fd)

    def _release(self) -> None:
        if self._pin is not None:
            os.close(self._pin[1])
            self._pin = None

    def _refill(self) -> bool:
        got = read_segments(self.spool_dir, self._read_at, READ_BYTES)
        if got.lost:  # rotated away since the last look: count, move on, read again
            self._rotated_past()
            self._read_at = self.committed  # nothing is buffered: read on from the cursor
            got = read_segments(self.spool_dir, self._read_at, READ_BYTES)
        self._buffer.extend(records(got.segments))
        self._read_at = got.cursor
        return bool(self._buffer)

    def _rotated_past(self) -> None:
        """If the cursor's file left the spool, count the events that went with it (what the
        files gone held past the cursor) and start again at the oldest file there is."""
        present = spool_inodes(self.spool_dir)
        if self.committed is None or not present or self.committed["inode"] in present:
            return
        with self._lock:
            gone = [ino for ino in self._ahead if ino not in present]
            lost = sum(max(0, self._ahead.pop(ino)) for ino in gone)
        self._buffer.clear()  # re-read from the oldest file: what is buffered is there or gone
        self._read_at = {"inode": present[0], "offset": 0}
        self._commit(self._read_at)
        if not lost and not self._uncounted:
            return  # everything in the files that went had been delivered
        reason = "the spool rotated past this output's cursor (receiver unreachable too long)"
        if self._uncounted:
            self._uncounted = False
            reason += "; events lost before this agent could count them are not in the number"
        with self._lock:
            self._count_drop(lost, reason)
        self._error(f"{reason}: {lost} events dropped")

    def _count_pending(self) -> None:
        """Count the spool's lines past the frontier (new ones only: a cheap look)."""
        while True:
            got = read_segments(self.spool_dir, self._frontier, SCAN_BYTES)
            if got.lost:  # files went before they were counted (or before this start)
                self._uncounted = True
            for seg in got.segments:
                self._ahead[seg.inode] = self._ahead.get(seg.inode, 0) + seg.data.count(b"\n")
            self._frontier = got.cursor
            if sum(len(s.data) for s in got.segments) < SCAN_BYTES:
                break
        self._rotated_past()

    def _count_drop(self, events: int, reason: str) -> None:
        self.dropped += events
        self.last_drop = {"at": round(time.time(), 3), "events": events, "reason": reason}

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = message

    # -- the agent's side ---------------------------------------------------------------------
    def pending(self) -> int:
        """Events in the spool not delivered yet (as far as this thread has counted)."""
        return max(0, sum(list(self._ahead.values())))  # list(): one step under the GIL

    def close(self, deadline: float = 5.0) -> None:
        """Ship what can go within ``deadline`` seconds, then stop.  What is left stays in the
        spool, after the saved cursor, for the next start: closing drops nothing."""
        self.stop_by(time.monotonic() + max(0.0, deadline))
        self.join()

    def stop_by(self, deadline: float) -> None:
        """Start the last round: ship until nothing is pending or ``time.monotonic()`` passes
        ``deadline``, then stop (without waiting: :meth:`join` waits)."""
        self._deadline = deadline
        self._retry_at = 0.0  # one more try now rather than sleep out a backoff
        self._stop.set()
        self._wake.set()

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join(max(0.0, self._deadline - time.monotonic()) + 0.2)
        else:
            self.sink.close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats()

    def carry(self, previous: dict[str, Any]) -> None:
        """Add the counters of ``previous`` (this output's stats before a hand-over)."""
        with self._lock:
            for name in ("delivered", "dropped", "errors", "retries"):
                value = previous.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    setattr(self, name, getattr(self, name) + value)

    def _stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "delivered": self.delivered,
            "sent": self.delivered,  # the name status.json used before the spool cursor
            "dropped": self.dropped,
            "pending": self.pending(),
            "errors": self.errors,
            "retries": self.retries,
            "last_error": self.last_error,
            "last_ok": self.last_ok,
            "last_drop": self.last_drop,
            "target": self.sink.target,
        }
        out.update(self.sink.stats())
        return out
