"""Text from a host made inert for a terminal: the one cleaning every report format starts from.

A command line or host name may carry ANSI escape sequences (colours, cursor moves, window
titles, hyperlinks) and invisible or reordering characters (C0, DEL, C1, zero-width, bidi
overrides, line separators, lone surrogates); printed as they are they could hide or forge
what an operator reads.  Escape sequences are removed and every other such character is shown as
a visible escape (``\\n``, ``\\x07``, ``\\u202e``).
"""

from __future__ import annotations

import re
from typing import Any

_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI ... final byte (colours, cursor moves, clears)
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC (titles, hyperlinks)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]"  # two- and three-byte escapes (charset switches, RIS)
)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def terminal_safe(value: Any, limit: int | None = None) -> str:
    """``value`` as text that cannot move the cursor, recolour or hide anything on a terminal."""
    s = "" if value is None else str(value)
    s = _UNSAFE.sub(_visible, _ANSI.sub("", s))
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s
