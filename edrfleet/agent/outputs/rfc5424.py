"""RFC 5424 syslog messages: the exact bytes the syslog output sends, and its addresses.  Pure.

Message (RFC 5424 §6; facility authpriv = 10)::

    <PRI>1 TIMESTAMP HOSTNAME edrfleet PROCID - [edrfleet@32473 rule="…" action="…" …] BOM MSG

- PRI = 10 * 8 + severity, severity from ``edrfleet.severity`` (the rule's word): critical 2
  (crit), high 3 (err), medium 4 (warning), low 5 (notice); anything else 5.
- TIMESTAMP: UTC, microseconds (``2025-01-31T12:00:00.123456Z``); the syslog output passes the
  event's ``@timestamp`` (when the exec happened, also for events sent late after an outage).
- HOSTNAME: ``host.name`` of the event, else this host's name; characters outside printable
  US-ASCII become ``_``.  PROCID: the agent's pid.  MSGID: ``-``.
- SD-ID ``edrfleet@32473`` (32473 is the enterprise number RFC 5612 reserves for
  documentation); params ``rule`` and ``action`` always, ``severity``, ``pid`` and ``exe`` when
  the event has them.  In values ``"``, ``\\`` and ``]`` are backslash-escaped (§6.3.3), and
  control characters and non-UTF-8 argv bytes (surrogateescape) are written as ``\\n``,
  ``\\r``, ``\\t`` or ``\\xHH``, so a message is valid UTF-8 on one line whatever argv held.
- MSG: UTF-8 BOM (§6.4: MSG is UTF-8), then the whole event as compact JSON (which escapes
  newlines itself).  A receiver that parses the JSON skips the 3 BOM bytes first
  (docs/events.md, "Sending events to a SIEM", has the rsyslog configuration).

Addresses: ``udp://host:port`` (one datagram per message, RFC 5426), ``tcp://host:port``
(octet-counting framing ``LEN SP MSG``, RFC 6587 §3.4.1), ``tls://host:port`` (the same framing
inside TLS, RFC 5425; default port 6514) and a unix datagram socket path such as ``/dev/log``.

Example::

    >>> format_rfc5424({"rule": {"id": "r"}, "event": {"action": "blocked"}},
    ...                hostname="web1", procid=7, timestamp=0)[:40]
    b'<85>1 1970-01-01T00:00:00.000000Z web1 e'
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from edrfleet.agent import ecs

FACILITY_AUTHPRIV = 10
SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5}
DEFAULT_SEVERITY = 5
SD_ID = "edrfleet@32473"
APP_NAME = "edrfleet"
BOM = b"\xef\xbb\xbf"
_SD_EXTRA = (("severity", ecs.SEVERITY), ("pid", ecs.PID), ("exe", ecs.EXECUTABLE))


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


def event_time(event: dict[str, Any], default: float) -> float:
    """The event's ``@timestamp`` as epoch seconds (``default`` if it has none or a bad one)."""
    stamp = ecs.get(event, ecs.TIMESTAMP)
    try:
        return datetime.datetime.fromisoformat(str(stamp)).timestamp() if stamp else default
    except ValueError:
        return default


def parse_syslog_address(address: str | tuple[str, int]) -> tuple[str, Any]:
    """("udp" | "tcp" | "tls", (host, port)) or ("unix", path), from the forms the module
    docstring lists; a bare "host:port" means UDP, a bare host port 514 (6514 for TLS).
    Raises ValueError."""
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
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"syslog address {address!r}: transport must be udp, tcp, tls or unix")
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
        return transport, (host, int(port or (6514 if transport == "tls" else 514)))
    except ValueError:
        raise ValueError(f"syslog address {address!r}: bad port {port!r}") from None
