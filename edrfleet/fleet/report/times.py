"""Times in the report: ``--since`` read, epoch seconds written as ISO 8601 UTC."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from edrfleet.fleet.report.store import ReportError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhdw])")


def parse_since(text: str, now: float | None = None) -> float:
    """``--since`` as epoch seconds: a duration back from now (``90s``, ``15m``, ``1h``,
    ``7d``, ``2w``) or an ISO 8601 time (``2026-12-01``, ``2026-12-01T05:00``, with ``Z`` or an
    offset; without one it is UTC, like the events).

    Raises:
        ReportError: neither; the message names the fix.
    """
    text = text.strip()
    m = _RELATIVE.fullmatch(text)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--since {text!r}: not a duration or an ISO time (fix: e.g. 1h, 7d, "
                         "2026-12-01T05:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        when = datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, OSError, ValueError):  # a hostile @timestamp far out of range
        return None
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")
