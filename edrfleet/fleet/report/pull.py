"""Pull each host's new events over its Transport into the store, hosts in a bounded pool.

Per host: read its cursor from the store, run ``agent.pyz pull`` (edrfleet.agent.pull) with
it, decode the frame, store the events and the frame's cursor in one transaction, and repeat
while the host says ``more``.  The cursor only moves once the events before it are committed,
so an interrupted report (crash, ^C, a host dropping mid-pull) loses and repeats nothing.
The cursor moves by compare-and-set (``expected``): when another controller pulling the same
host into the same store moved it first, this one goes on from where that one got.
A host that fails is a value (:class:`HostPull` with ``ok=False``), never an exception that
stops the others.

Example::

    >>> results = pull_hosts(inventory.select("web"), store, connect_for(inventory))
    >>> [r.host for r in results.values() if not r.ok]
    ['web3']
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edrfleet.agent.pull import DEFAULT_MAX_BYTES, decode_frame
from edrfleet.fleet.report.store import Ingested, ReportError, Store
from edrfleet.fleet.transport.base import Transport
from edrfleet.fleet.transport.connection import transport_for

DEFAULT_FORKS = 50
DEFAULT_TIMEOUT = 120.0  # seconds for one pull command (one chunk)
_STDERR_TAIL = 300


Connect = Callable[[Any], Transport]


@dataclass
class HostPull:
    """What pulling one host did."""

    host: str
    ok: bool = False
    error: str | None = None  # one line: why the host could not be (fully) pulled
    inserted: int = 0  # new events stored
    ignored: int = 0  # events already stored (or without an event.id)
    malformed: int = 0  # lines that were not JSON objects
    lines: int = 0  # event lines received
    chunks: int = 0  # pull commands run
    lost: bool = False  # the host's spool rotated past our cursor: a gap before these events
    seconds: float = 0.0


def pull_argv(host: Any, cursor: dict[str, int] | None, max_bytes: int) -> list[str]:
    """The command that pulls ``host`` (its paths from the docs/fleet.md host variables)."""
    v = host.vars
    python = str(v.get("edrfleet_python", "/usr/bin/python3"))
    install = str(v.get("edrfleet_install_dir", "/opt/edrfleet")).rstrip("/")
    spool = str(v.get("edrfleet_spool_dir", "/var/lib/edrfleet"))
    return [python, f"{install}/current/agent.pyz", "pull", "--spool", spool,
            "--cursor", json.dumps(cursor), "--max-bytes", str(max_bytes)]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _stdout_bytes(out: bytes | str) -> bytes:
    return out.encode("utf-8", "surrogateescape") if isinstance(out, str) else out


@dataclass(frozen=True)
class _Committed:
    lines: int
    cursor: dict[str, int] | None
    more: bool
    lost: bool
    got: Ingested


def _commit(store: Store, host: str, stdout: bytes,
            expected: dict[str, int] | None) -> _Committed:
    """Decode one reply (pulled from ``expected``) and store it: events + cursor + status in
    one transaction."""
    frame = decode_frame(stdout)
    got = store.ingest(host, frame.lines, cursor=frame.cursor, status=frame.status,
                       lost=frame.lost, expected=expected)
    return _Committed(len(frame.lines), frame.cursor, frame.more, frame.lost, got)


def pull_host(host: Any, store: Store, connect: Connect, *, max_bytes: int = DEFAULT_MAX_BYTES,
              timeout: float = DEFAULT_TIMEOUT, writer: Executor | None = None) -> HostPull:
    """Pull ``host`` until it has nothing more; errors end up in the result, not raised.

    ``writer``: the one thread that decodes and stores every host's chunks (see
    :func:`pull_hosts`); None does it in this thread.
    """
    res = HostPull(host.name)
    t0 = time.monotonic()
    try:
        with connect(host) as transport:
            cursor = store.cursor(host.name)
            while True:
                out = transport.run(pull_argv(host, cursor, max_bytes), timeout=timeout,
                                    check=False)
                res.chunks += 1
                if out.rc != 0:
                    tail = _stdout_bytes(out.stderr)[-_STDERR_TAIL:].decode("utf-8", "replace")
                    raise RuntimeError(f"pull exited {out.rc}: {_one_line(tail) or 'no stderr'}")
                data = _stdout_bytes(out.stdout)
                c = (writer.submit(_commit, store, host.name, data, cursor).result() if writer
                     else _commit(store, host.name, data, cursor))
                res.lines += c.lines
                res.inserted += c.got.inserted
                res.ignored += c.got.ignored
                res.malformed += c.got.malformed
                res.lost |= c.lost and c.got.moved
                # No progress (only a line still being written) ends the loop as well.
                if not c.more or not c.lines or c.cursor == cursor:
                    break
                # Another controller moved the cursor first: on from where it got.
                cursor = c.cursor if c.got.moved else store.cursor(host.name)
        res.ok = True
    except Exception as e:  # one host's failure is that host's result
        res.error = _one_line(f"{type(e).__name__}: {e}")
        try:
            store.record_error(host.name, res.error)
        except Exception:  # the store's own error is reported by the caller
            pass
    res.seconds = time.monotonic() - t0
    return res


def connect_for(inventory: Any, *, connect_timeout: float = 10) -> Connect:
    """Transports to ``inventory``'s hosts (edrfleet.fleet.transport.connection: SSH, or this
    machine for ``ansible_connection: local``)."""
    base = Path(inventory.path).parent

    def connect(host: Any) -> Transport:
        return transport_for(host, base, connect_timeout=connect_timeout)

    return connect


def pull_hosts(hosts: Sequence[Any], store: Store, connect: Connect, *,
               forks: int = DEFAULT_FORKS, max_bytes: int = DEFAULT_MAX_BYTES,
               timeout: float = DEFAULT_TIMEOUT,
               on_done: Callable[[HostPull], None] | None = None) -> dict[str, HostPull]:
    """Pull every host, at most ``forks`` at a time; results in the order of ``hosts``.
    ``on_done`` is called (from a worker thread) as each host finishes: a progress display."""
    if forks < 1:
        raise ReportError(f"--forks {forks}: must be at least 1")
    if not hosts:
        return {}

    def one(h: Any) -> HostPull:
        r = pull_host(h, store, connect, max_bytes=max_bytes, timeout=timeout, writer=writer)
        if on_done is not None:
            on_done(r)
        return r

    # One thread decodes and stores for all: SQLite takes one writer anyway, and the big
    # decoded chunks then come and go in one malloc arena (decoded in the 20 pulling
    # threads, bench/report.py peaked at 419 MiB for 200k events and 1158 MiB for 1M;
    # here 214 MiB for 200k).  A store taking several writers (PostgreSQL: a connection
    # each, the server parsing the lines) gets that many threads.
    with ThreadPoolExecutor(max_workers=store.writers,
                            thread_name_prefix="report-store") as writer, \
            ThreadPoolExecutor(max_workers=min(forks, len(hosts)),
                               thread_name_prefix="report-pull") as pool:
        futures = [pool.submit(one, h) for h in hosts]
        return {r.host: r for r in (f.result() for f in futures)}
