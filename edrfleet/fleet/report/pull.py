"""Pull each host's new events over its Transport into the store, hosts in a bounded pool.

Per host: read its cursor from the store, run ``agent.pyz pull`` (edrfleet.agent.pull) with
it, decode the frame, store the events and the frame's cursor in one transaction, and repeat
while the host says ``more``.  The cursor only moves once the events before it are committed,
so an interrupted report (crash, ^C, a host dropping mid-pull) loses and repeats nothing.
The cursor moves by compare-and-set (``expected``): when another controller pulling the same
host into the same store moved it first, this one goes on from where that one got.
A host that fails is a value (:class:`HostPull` with ``ok=False``), never an exception that
stops the others.

Identity: the store keys a host by its machine id (in every frame) and inventory name.  The
first chunk is pulled from the cursor of the identity last pulled under the name; a frame
from another machine id is set aside unstored, and the host pulled again from that
identity's own cursor, with ``identity_changed`` saying what it was before (a reinstalled
host, another fleet's host of the same name): never a false "spool rotated".

Bounds, whatever a host sends (a compromised one included): the reply is read by a
program this controller ships (:mod:`edrfleet.fleet.report.reader`), run under the host's
``timeout`` so a hung pull ends there too; the transport keeps at most
``edrfleet.fleet.transport.ssh.MAX_STDOUT`` bytes of a reply; a frame inflates to at most
``max_bytes + MAX_LINE`` bytes and holds at most one line per 64 of them; event lines over
:data:`MAX_LINE` are dropped and counted (``dropped``), as are lines that cannot hold an
``event.id`` (``malformed``); a host gets at most ``max_chunks`` pulls and ``max_seconds``.
Past any of these the host is failed with the reason; the events stored before stay.

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

from edrfleet.agent.pull import DEFAULT_MAX_BYTES, MACHINE_ID_FILE, MAX_LINE, decode_frame
from edrfleet.errors import HostError
from edrfleet.fleet.report.reader import reader_argv, reader_input
from edrfleet.fleet.report.store import Ingested, ReportError, Store, host_key, split_key
from edrfleet.fleet.transport.base import Transport
from edrfleet.fleet.transport.connection import transport_for

DEFAULT_FORKS = 50
DEFAULT_TIMEOUT = 120.0  # seconds for one pull command (one chunk)
# A host's whole pull: a 1M-event backlog is ~60 chunks of 16 MiB and a few minutes; a host
# answering "more" forever must not keep the report from ever printing.
MAX_CHUNKS = 1000
MAX_SECONDS = 900.0
_KILL_AFTER = 5  # seconds the host's timeout waits after TERM before KILL
_MIN_LINE = 64  # bytes: no agent event is this short, so lines <= raw bytes / 64
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
    dropped: int = 0  # event lines longer than MAX_LINE, skipped (by the host or here)
    machine_id: str | None = None  # the host's, from its frames ("" unknown)
    identity_changed: str | None = None  # the machine id last pulled under this name, if other
    installed: bool | None = None  # False: the agent is gone (uninstalled, spool kept)


class PullLimit(HostError, RuntimeError):
    """A host went past one of the pull's bounds; the message names it."""


def pull_argv(host: Any, cursor: dict[str, int] | None, max_bytes: int,
              timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """The command that pulls ``host`` (its paths from the docs/fleet.md host variables):
    the shipped reader (its program on stdin: :func:`reader_input`) under the host's
    ``timeout``, so a hung pull is ended there too."""
    v = host.vars
    python = str(v.get("edrfleet_python", "/usr/bin/python3"))
    install = str(v.get("edrfleet_install_dir", "/opt/edrfleet")).rstrip("/")
    spool = str(v.get("edrfleet_spool_dir", "/var/lib/edrfleet"))
    machine_id_file = str(v.get("edrfleet_machine_id_file", MACHINE_ID_FILE))
    args = ["--spool", spool, "--cursor", json.dumps(cursor), "--max-bytes", str(max_bytes),
            "--max-line", str(MAX_LINE), "--machine-id-file", machine_id_file,
            "--agent", f"{install}/current/agent.pyz"]
    return ["timeout", f"--kill-after={_KILL_AFTER}", f"{max(1, int(timeout))}",
            *reader_argv(python, args)]


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
    machine_id: str
    stored: bool = True  # False: the frame came from another identity, set aside
    dropped: int = 0
    no_id: int = 0  # lines that cannot hold an event.id
    installed: bool = True


def _sorted_lines(lines: list[str]) -> tuple[list[str], int, int]:
    """(lines to store, too long, without an event.id).  ``id"`` ends both the nested
    ``"id"`` and the flat ``"event.id"`` key: a line without it holds no id."""
    keep = [x for x in lines if len(x) <= MAX_LINE and 'id"' in x]
    if len(keep) == len(lines):
        return lines, 0, 0
    too_long = sum(len(x) > MAX_LINE for x in lines)
    return keep, too_long, len(lines) - len(keep) - too_long


def _status(frame: Any) -> dict[str, Any] | None:
    """The host's status.json, its state overridden when the agent is not installed."""
    if frame.installed:
        return frame.status
    state = "not installed" if frame.header.get("spool_missing") else "uninstalled"
    return {**(frame.status or {}), "state": state}


def _commit(store: Store, name: str, stdout: bytes, expected: dict[str, int] | None,
            machine_id: str | None, max_bytes: int) -> _Committed:
    """Decode one reply of host ``name`` (pulled from ``expected``) and store it: events +
    cursor + status in one transaction.  A frame whose machine id is not ``machine_id``
    (None: any, a host never pulled) is not stored."""
    max_raw = max_bytes + MAX_LINE
    frame = decode_frame(stdout, max_raw=max_raw, max_lines=max_raw // _MIN_LINE)
    if machine_id is not None and frame.machine_id != machine_id:
        return _Committed(0, None, True, False, Ingested(0, 0, 0, False), frame.machine_id,
                          stored=False)
    lines, too_long, no_id = _sorted_lines(frame.lines)
    got = store.ingest(host_key(name, frame.machine_id), lines, cursor=frame.cursor,
                       status=_status(frame), lost=frame.lost, expected=expected,
                       dropped=frame.dropped + too_long)
    return _Committed(len(frame.lines), frame.cursor, frame.more, frame.lost, got,
                      frame.machine_id, dropped=frame.dropped + too_long, no_id=no_id,
                      installed=frame.installed)


def _check_bounds(res: HostPull, t0: float, max_chunks: int, max_seconds: float) -> None:
    if res.chunks >= max_chunks:
        raise PullLimit(f"stopped after {res.chunks} chunks (at most {max_chunks} a report; "
                        "what was stored stays, the rest comes next report)")
    if time.monotonic() - t0 > max_seconds:
        raise PullLimit(f"stopped after {max_seconds:g} s (at most that a host a report; "
                        "what was stored stays, the rest comes next report)")


def _add(res: HostPull, c: _Committed) -> None:
    res.lines += c.lines
    res.inserted += c.got.inserted
    res.ignored += c.got.ignored
    res.malformed += c.got.malformed + c.no_id
    res.dropped += c.dropped
    res.lost |= c.lost and c.got.moved
    res.installed = c.installed


def pull_host(host: Any, store: Store, connect: Connect, *, max_bytes: int = DEFAULT_MAX_BYTES,
              timeout: float = DEFAULT_TIMEOUT, writer: Executor | None = None,
              max_chunks: int = MAX_CHUNKS, max_seconds: float = MAX_SECONDS) -> HostPull:
    """Pull ``host`` until it has nothing more; errors end up in the result, not raised.

    ``writer``: the one thread that decodes and stores every host's chunks (see
    :func:`pull_hosts`); None does it in this thread.
    """
    res = HostPull(host.name)
    t0 = time.monotonic()
    latest = store.latest_key(host.name)
    # None: never pulled, any identity will do
    machine_id = None if latest is None else split_key(latest)[1]
    key = latest or host_key(host.name, "")
    try:
        with connect(host) as transport:
            cursor = store.cursor(key) if machine_id is not None else None
            while True:
                _check_bounds(res, t0, max_chunks, max_seconds)
                out = transport.run(pull_argv(host, cursor, max_bytes, timeout),
                                    input=reader_input(), timeout=timeout + _KILL_AFTER,
                                    check=False)
                res.chunks += 1
                if out.rc != 0:
                    tail = _stdout_bytes(out.stderr)[-_STDERR_TAIL:].decode("utf-8", "replace")
                    why = "timed out on the host" if out.rc in (124, 137) else f"exited {out.rc}"
                    raise RuntimeError(f"pull {why}: {_one_line(tail) or 'no stderr'}")
                args = (store, host.name, _stdout_bytes(out.stdout), cursor, machine_id,
                        max_bytes)
                del out  # a chunk's reply is not kept while the next one arrives
                c = writer.submit(_commit, *args).result() if writer else _commit(*args)
                del args
                if not c.stored:  # another machine now answers to this name
                    if res.identity_changed is not None:
                        raise RuntimeError("host identity keeps changing between pulls")
                    res.identity_changed, machine_id = machine_id, c.machine_id
                    key = host_key(host.name, machine_id)
                    cursor = store.cursor(key)
                    continue
                res.machine_id = machine_id = c.machine_id
                key = host_key(host.name, machine_id)
                _add(res, c)
                # No progress (only a line still being written) ends the loop as well; a chunk
                # of dropped lines only is progress.
                if not c.more or not (c.lines or c.dropped) or c.cursor == cursor:
                    break
                # Another controller moved the cursor first: on from where it got.
                cursor = c.cursor if c.got.moved else store.cursor(key)
        res.ok = True
    except Exception as e:  # one host's failure is that host's result
        res.error = _one_line(f"{type(e).__name__}: {e}")
        try:
            store.record_error(key, res.error)
        except Exception:  # the store's own error is reported by the caller
            pass
    res.seconds = time.monotonic() - t0
    return res


def connect_for(inventory: Any, *, connect_timeout: float = 10) -> Connect:
    """Transports to ``inventory``'s hosts (edrfleet.fleet.transport.connection: SSH, or this
    machine for ``ansible_connection: local``)."""
    base = Path(inventory.base_dir)  # a directory inventory is its own base

    def connect(host: Any) -> Transport:
        return transport_for(host, base, connect_timeout=connect_timeout)

    return connect


def pull_hosts(hosts: Sequence[Any], store: Store, connect: Connect, *,
               forks: int = DEFAULT_FORKS, max_bytes: int = DEFAULT_MAX_BYTES,
               timeout: float = DEFAULT_TIMEOUT, max_chunks: int = MAX_CHUNKS,
               max_seconds: float = MAX_SECONDS,
               on_done: Callable[[HostPull], None] | None = None) -> dict[str, HostPull]:
    """Pull every host, at most ``forks`` at a time; results in the order of ``hosts``.
    ``on_done`` is called (from a worker thread) as each host finishes: a progress display."""
    if forks < 1:
        raise ReportError(f"--forks {forks}: must be at least 1")
    if not hosts:
        return {}

    def one(h: Any) -> HostPull:
        r = pull_host(h, store, connect, max_bytes=max_bytes, timeout=timeout, writer=writer,
                      max_chunks=max_chunks, max_seconds=max_seconds)
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
