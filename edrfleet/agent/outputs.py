"""Outputs besides the spool: syslog (RFC 5424) and a JSON webhook.  Stdlib only.

Both kinds have the same face: ``emit(event)`` never blocks the event loop (it formats, puts
on a bounded queue and returns; a full queue drops the event and counts it in ``.dropped``),
a background thread does the network I/O, ``close(deadline)`` flushes what it can within the
deadline, and ``stats()`` returns counters for status.json.  The spool stays the record of
truth: these outputs are best effort and say so in their counters.

Syslog message (RFC 5424 §6; facility authpriv = 10)::

    <PRI>1 TIMESTAMP HOSTNAME edrfleet PROCID - [edrfleet@32473 rule="…" action="…" …] BOM MSG

- PRI = 10 * 8 + severity, severity from ``edrfleet.severity`` (the rule's word): critical 2
  (crit), high 3 (err), medium 4 (warning), low 5 (notice); anything else 5.
- TIMESTAMP: the send time, UTC, microseconds (``2025-01-31T12:00:00.123456Z``).
- HOSTNAME: ``host.name`` of the event, else this host's name; characters outside printable
  US-ASCII become ``_``.  PROCID: the agent's pid.  MSGID: ``-``.
- SD-ID ``edrfleet@32473`` (32473 is the enterprise number RFC 5612 reserves for
  documentation); params ``rule`` and ``action`` always, ``severity``, ``pid`` and ``exe`` when
  the event has them.  In values ``"``, ``\\`` and ``]`` are backslash-escaped (§6.3.3), and
  control characters and non-UTF-8 argv bytes (surrogateescape) are written as ``\\n``,
  ``\\r``, ``\\t`` or ``\\xHH``, so a message is valid UTF-8 on one line whatever argv held.
- MSG: UTF-8 BOM, then the whole event as compact JSON (which escapes newlines itself).

Transports: ``udp://host:port`` (one datagram per message, RFC 5426), ``tcp://host:port``
(octet-counting framing ``LEN SP MSG``, RFC 6587 §3.4.1) and a unix datagram socket path such
as ``/dev/log``.  TCP and unix sockets reconnect after an error, at most once per second.

Webhook: POSTs JSON arrays of events (``Content-Type: application/json``) with urllib, batched
by ``batch_size`` or ``flush_interval``.  Connection errors, timeouts, 408, 429 and 5xx are
retried with exponential backoff (0.5 s doubling to 30 s) until they succeed or ``close``'s
deadline passes; any other HTTP error drops that batch (counted) rather than retry forever.

Example::

    >>> out = SyslogOutput("udp://127.0.0.1:514")
    >>> out.emit({"rule": {"id": "rm-recursive-root"}, "event": {"action": "blocked"}})
    >>> out.close(deadline=2.0)
    >>> out.stats()["sent"]
    1
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from edrfleet.agent import ecs

FACILITY_AUTHPRIV = 10
SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5}
DEFAULT_SEVERITY = 5
SD_ID = "edrfleet@32473"
APP_NAME = "edrfleet"
BOM = b"\xef\xbb\xbf"
_SD_EXTRA = (("severity", ecs.SEVERITY), ("pid", ecs.PID), ("exe", ecs.EXECUTABLE))
_RECONNECT_EVERY = 1.0  # seconds between reconnect attempts of a broken stream/unix socket


# --- RFC 5424 formatting (pure) --------------------------------------------------------------

_SD_ESCAPES = {'"': '\\"', "\\": "\\\\", "]": "\\]", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def sd_escape(value: object) -> str:
    """A PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped (RFC 5424 §6.3.3); control characters
    and bytes that are not UTF-8 (surrogateescape) spelled ``\\n``, ``\\xHH``, ...; so the value
    is valid UTF-8 on one line."""
    out = []
    for ch in str(value):
        esc = _SD_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a non-UTF-8 argv byte kept by surrogateescape
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:  # any other lone surrogate: not encodable as UTF-8
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _printusascii(text: str, limit: int) -> str:
    text = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in text)[:limit]
    return text or "-"


def format_rfc5424(
    event: dict[str, Any],
    *,
    hostname: str,
    procid: int,
    timestamp: float,
    facility: int = FACILITY_AUTHPRIV,
) -> bytes:
    """One RFC 5424 message for ``event`` (no framing, no trailing newline)."""
    sev = SEVERITY.get(str(ecs.get(event, ecs.SEVERITY, "")).lower(), DEFAULT_SEVERITY)
    ts = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    host = _printusascii(str(ecs.get(event, ecs.HOST) or hostname), 255)
    params = [
        f'rule="{sd_escape(ecs.get(event, ecs.RULE_ID, ""))}"',
        f'action="{sd_escape(ecs.get(event, ecs.ACTION, ""))}"',
    ]
    extra = ((name, ecs.get(event, field)) for name, field in _SD_EXTRA)
    params += [f'{name}="{sd_escape(value)}"' for name, value in extra if value is not None]
    head = f"<{facility * 8 + sev}>1 {stamp} {host} {APP_NAME} {procid} - [{SD_ID} "
    msg = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
    return (
        head.encode()
        + " ".join(params).encode()
        + b"] "
        + BOM
        + msg.encode("utf-8", "backslashreplace")
    )


def parse_syslog_address(address: str | tuple[str, int]) -> tuple[str, Any]:
    """("udp" | "tcp", (host, port)) or ("unix", path), from the forms the module docstring
    lists; a bare "host:port" means UDP, a bare host port 514.  Raises ValueError."""
    if isinstance(address, tuple):
        return "udp", (address[0], int(address[1]))
    if address.startswith("/"):
        return "unix", address
    if address.startswith("unix:"):
        path = address[len("unix:") :].lstrip("/")
        return "unix", "/" + path
    transport, sep, rest = address.partition("://")
    if not sep:
        transport, rest = "udp", address
    if transport not in ("udp", "tcp"):
        raise ValueError(f"syslog address {address!r}: transport must be udp, tcp or unix")
    if rest.startswith("["):  # [v6]:port
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    if not host:
        raise ValueError(f"syslog address {address!r} has no host")
    try:
        return transport, (host, int(port or 514))
    except ValueError:
        raise ValueError(f"syslog address {address!r}: bad port {port!r}") from None


# --- the shared queue + thread ----------------------------------------------------------------


class _QueuedOutput:
    """A bounded queue drained by one daemon thread; subclasses implement ``_run``."""

    name = "output"

    def __init__(self, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.max_queue = max_queue
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self._queue: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")  # monotonic time close() gives up at
        self._thread = threading.Thread(target=self._run, name=f"edrfleet-{self.name}",
                                        daemon=True)

    def _put(self, item: Any) -> None:
        with self._cond:
            if self._closing or len(self._queue) >= self.max_queue:
                self.dropped += 1  # never wait: the event loop must not stall on an output
                return
            self._queue.append(item)
            self._cond.notify()

    def _get(self, max_items: int, wait: float | None) -> list[Any]:
        """Up to ``max_items`` queued items; waits up to ``wait`` s for the first one (None:
        until close) and returns early, with what there is, on close."""
        with self._cond:
            if not self._queue and not self._closing:
                self._cond.wait(wait)
            n = min(max_items, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _drop(self, n: int) -> None:
        with self._cond:  # emit() counts drops too, from the event loop's thread
            self.dropped += n

    def _error(self, err: BaseException | str) -> None:
        self.errors += 1
        self.last_error = str(err) if isinstance(err, str) else f"{type(err).__name__}: {err}"

    def _pause(self, seconds: float) -> bool:
        """Sleep unless closing; False once close() was called (time to stop pausing)."""
        with self._cond:
            if not self._closing:
                self._cond.wait(seconds)
            return not self._closing

    def _expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self, deadline: float = 5.0) -> None:
        """Flush what can be sent within ``deadline`` seconds, then stop; the rest counts as
        dropped.  Returns within the deadline (plus a little thread scheduling)."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + max(0.0, deadline)
            self._cond.notify_all()
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 0.05)
        with self._cond:
            self.dropped += len(self._queue)
            self._queue.clear()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued = len(self._queue)
        return {
            "sent": self.sent,
            "dropped": self.dropped,
            "errors": self.errors,
            "queued": queued,
            "last_error": self.last_error,
        }

    def __enter__(self) -> _QueuedOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- syslog -----------------------------------------------------------------------------------


class SyslogOutput(_QueuedOutput):
    """Sends each event as one RFC 5424 message (see the module docstring).

    Args:
        address: ``udp://host:port``, ``tcp://host:port``, ``host:port`` (UDP), a unix
            datagram socket path (``/dev/log``) or ``unix:/path``; or a (host, port) tuple.
        hostname: HOSTNAME for events without ``host.name`` (default: this host's name).
        timeout: connect/send timeout of the TCP socket, seconds.
        max_queue: messages waiting to be sent before new ones are dropped.

    Raises:
        ValueError: an address this class cannot parse.
    """

    name = "syslog"

    def __init__(
        self,
        address: str | tuple[str, int],
        *,
        hostname: str | None = None,
        timeout: float = 5.0,
        max_queue: int = 10000,
    ) -> None:
        super().__init__(max_queue)
        self.transport, self.address = parse_syslog_address(address)
        self.hostname = hostname or socket.gethostname()
        self.timeout = timeout
        self._pid = os.getpid()
        self._sock: socket.socket | None = None
        self._target: Any = None
        self._next_connect = 0.0
        self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        """Format now (so TIMESTAMP is the emit time) and queue; never blocks."""
        msg = format_rfc5424(event, hostname=self.hostname, procid=self._pid,
                             timestamp=time.time())
        self._put(msg)

    def _connect(self) -> socket.socket:
        if self.transport == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target: Any = self.address
        else:
            host, port = self.address
            kind = socket.SOCK_STREAM if self.transport == "tcp" else socket.SOCK_DGRAM
            family, type_, proto, _, target = socket.getaddrinfo(host, port, type=kind)[0]
            sock = socket.socket(family, type_, proto)
        sock.settimeout(self.timeout)
        try:
            if self.transport == "udp":
                # Not connected: a connected UDP socket turns an ICMP "port unreachable" into
                # errors on later sends; syslog over UDP is fire-and-forget by design.
                self._target = target
            else:
                sock.connect(target)
        except OSError:
            sock.close()
            raise
        return sock

    def _send(self, msg: bytes) -> None:
        if self._sock is None:
            now = time.monotonic()
            if now < self._next_connect:
                raise ConnectionError("not connected (waiting to reconnect)")
            self._next_connect = now + _RECONNECT_EVERY
            self._sock = self._connect()
        try:
            if self.transport == "tcp":
                self._sock.sendall(f"{len(msg)} ".encode() + msg)  # RFC 6587 octet counting
            elif self.transport == "udp":
                self._sock.sendto(msg, self._target)
            else:
                self._sock.send(msg)
        except OSError:
            if self.transport != "udp":
                self._sock.close()
                self._sock = None
            raise

    def _run(self) -> None:
        while True:
            batch = self._get(256, None)
            if not batch:
                if self._closing:
                    break
                continue
            for i, msg in enumerate(batch):
                if self._closing and self._expired():
                    self._drop(len(batch) - i)
                    break
                try:
                    self._send(msg)
                    self.sent += 1
                except OSError as e:
                    # Syslog is fire-and-forget: one failed message is dropped, not retried,
                    # so a dead collector cannot pile work up behind it.
                    self._drop(1)
                    self._error(e)
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --- webhook ----------------------------------------------------------------------------------


class _Permanent(Exception):
    """An HTTP answer that retrying will not change."""


class WebhookOutput(_QueuedOutput):
    """POSTs events as JSON arrays to ``url`` from a background thread.

    Args:
        url: http(s) endpoint.
        batch_size: events per POST at most.
        flush_interval: seconds a partial batch waits for more events.
        timeout: seconds for one HTTP request.
        max_queue: events waiting (not counting the batch in flight) before new ones drop.
        headers: extra request headers (e.g. ``{"Authorization": "Bearer …"}``).

    Environment proxies (``https_proxy``, ``no_proxy``) apply, as for any urllib client.
    """

    name = "webhook"
    BACKOFF_FIRST = 0.5
    BACKOFF_MAX = 30.0

    def __init__(
        self,
        url: str,
        batch_size: int = 100,
        flush_interval: float = 2.0,
        timeout: float = 5.0,
        max_queue: int = 10000,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {url!r} must be http:// or https://")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        super().__init__(max_queue)
        self.url = url
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", "User-Agent": "edrfleet-agent"}
        self.headers.update(headers or {})
        self.batches = 0
        self.retries = 0
        self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event; never blocks (a full queue counts it in ``.dropped``)."""
        self._put(event)

    def _collect(self) -> list[Any]:
        """A batch: up to batch_size events, waiting at most flush_interval after the first."""
        batch = self._get(self.batch_size, None)
        flush_at = time.monotonic() + self.flush_interval
        while batch and len(batch) < self.batch_size and not self._closing:
            left = flush_at - time.monotonic()
            if left <= 0:
                break
            batch += self._get(self.batch_size - len(batch), left)
        return batch

    def _post(self, body: bytes) -> None:
        timeout = self.timeout
        if self._closing:
            timeout = min(timeout, max(0.05, self._deadline - time.monotonic()))
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            e.close()
            if e.code in (408, 429) or e.code >= 500:
                raise ConnectionError(f"HTTP {e.code}") from None
            raise _Permanent(f"HTTP {e.code} {e.reason}") from None

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if not batch:
                if self._closing:
                    return
                continue
            body = json.dumps(batch, ensure_ascii=False, separators=(",", ":"),
                              default=str).encode("utf-8", "backslashreplace")
            backoff = self.BACKOFF_FIRST
            while True:
                if self._closing and self._expired():
                    self._drop(len(batch))
                    break
                try:
                    self._post(body)
                    self.sent += len(batch)
                    self.batches += 1
                    break
                except _Permanent as e:
                    self._drop(len(batch))
                    self._error(e)
                    break
                except (OSError, ValueError) as e:  # URLError, timeouts, refused, 5xx
                    self._error(e)
                    self.retries += 1
                    # While closing, retry right away until the deadline instead of sleeping.
                    if not self._pause(backoff):
                        time.sleep(min(0.05, max(0.0, self._deadline - time.monotonic())))
                    backoff = min(backoff * 2, self.BACKOFF_MAX)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(batches=self.batches, retries=self.retries)
        return out
