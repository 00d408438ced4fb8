"""The syslog sink: RFC 5424 messages (:mod:`.rfc5424`) over UDP, TCP, TLS or a unix socket.

What "delivered" means, per transport (the shipper saves its cursor after it):

- ``tcp://`` and ``tls://`` (RFC 6587 octet counting; RFC 5425 for TLS): the batch's frames
  were handed to the kernel (``sendall`` returned).  Syslog over TCP has no acknowledgement, so
  frames in flight when the receiver dies can be lost; to narrow that, a connection the
  receiver has closed (a restarted rsyslog) is noticed before each batch and opened again
  rather than written into.  Failed connects back off 1 s doubling to 30 s.
- ``udp://``: best effort, as syslog over UDP always is: a datagram sent is counted delivered
  whether or not anything received it.
- unix datagram socket (``/dev/log``): the local daemon's socket took the message.

TLS: the server's certificate is checked against ``ca_file`` (else the system's CAs), and its
name against the address's host.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import ssl
import time
from typing import Any

from edrfleet.agent.outputs.rfc5424 import event_time, format_rfc5424, parse_syslog_address
from edrfleet.agent.outputs.shipper import Retry


class SyslogSink:
    """Args:
        address: ``udp://``, ``tcp://`` or ``tls://host:port``, ``host:port`` (UDP), a unix
            datagram socket path or ``unix:/path``.
        hostname: HOSTNAME for events without ``host.name``.
        ca_file: CA certificates (PEM) that ``tls://`` servers are checked against.
        timeout: seconds for a connect or a send.

    Raises:
        ValueError: an address this sink cannot parse, or a CA file for a non-TLS address.
        OSError, ssl.SSLError: the CA file cannot be read.
    """

    name = "syslog"
    label = "SyslogOutput"
    batch_events = 256

    def __init__(self, address: str, *, hostname: str | None = None,
                 ca_file: str | None = None, timeout: float = 5.0) -> None:
        self.transport, self.address = parse_syslog_address(address)
        if ca_file and self.transport != "tls":
            raise ValueError(f"--syslog-ca is for tls:// addresses, not {address!r}")
        self.target = address
        self.hostname = hostname or socket.gethostname()
        self.timeout = timeout
        self._tls = ssl.create_default_context(cafile=ca_file) if self.transport == "tls" \
            else None
        self._pid = os.getpid()
        self._sock: socket.socket | None = None
        self._udp_target: Any = None
        self.connects = 0

    # -- messages -----------------------------------------------------------------------------
    def _messages(self, lines: list[bytes]) -> list[bytes | None]:
        """One RFC 5424 message per line (None for a line that is not a JSON object)."""
        out: list[bytes | None] = []
        now = time.time()
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                out.append(None)
                continue
            out.append(format_rfc5424(event, hostname=self.hostname, procid=self._pid,
                                      timestamp=event_time(event, now)))
        return out

    def send(self, lines: list[bytes]) -> tuple[int, str]:
        msgs = self._messages(lines)
        bad = sum(m is None for m in msgs)
        why = "spool line is not a JSON object" if bad else ""
        try:
            sock = self._connected()
        except OSError as e:
            raise Retry(f"connect {self.target}: {type(e).__name__}: {e}") from None
        if self.transport in ("tcp", "tls"):
            frames = b"".join(b"%d %s" % (len(m), m) for m in msgs if m is not None)
            try:
                sock.sendall(frames)
            except OSError as e:
                raise Retry(f"send to {self.target}: {type(e).__name__}: {e}") from None
            return bad, why
        for i, msg in enumerate(msgs):
            if msg is None:
                continue
            try:
                if self.transport == "udp":
                    sock.sendto(msg, self._udp_target)
                else:
                    sock.send(msg)
            except OSError as e:
                if e.errno == errno.EMSGSIZE:  # this message never fits a datagram
                    bad += 1
                    why = f"message of {len(msg)} bytes too large for a datagram"
                    continue
                raise Retry(f"send to {self.target}: {type(e).__name__}: {e}", done=i) from None
        return bad, why

    # -- the connection -----------------------------------------------------------------------
    def _connected(self) -> socket.socket:
        if self._sock is not None and self.transport in ("tcp", "tls") and self._peer_closed():
            self.reset()
        if self._sock is None:
            self._sock = self._connect()
            self.connects += 1
        return self._sock

    def _connect(self) -> socket.socket:
        if self.transport == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target: Any = self.address
        else:
            host, port = self.address
            kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
            family, type_, proto, _, target = socket.getaddrinfo(host, port, type=kind)[0]
            sock = socket.socket(family, type_, proto)
        sock.settimeout(self.timeout)
        try:
            if self.transport == "udp":
                # Not connected: a connected UDP socket turns an ICMP "port unreachable" into
                # errors on later sends; syslog over UDP is fire-and-forget by design.
                self._udp_target = target
                return sock
            sock.connect(target)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.address[0])
            return sock
        except BaseException:
            sock.close()
            raise

    def _peer_closed(self) -> bool:
        """Whether the receiver closed the connection (it never sends us data otherwise)."""
        assert self._sock is not None
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return False
            self._sock.setblocking(False)
            try:
                return self._sock.recv(4096) == b""
            finally:
                self._sock.settimeout(self.timeout)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False  # only TLS housekeeping (a session ticket) was waiting
        except (OSError, ValueError):
            return True

    def reset(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def reload(self) -> None:
        """Nothing to read again (the CA file is read at start)."""

    def close(self) -> None:
        self.reset()

    def stats(self) -> dict[str, Any]:
        return {"transport": self.transport, "connected": self._sock is not None,
                "connects": self.connects}
