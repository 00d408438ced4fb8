"""Text from a host made inert for a terminal: the one cleaning every report format starts from.

A command line or host name may carry ANSI escape sequences (colours, cursor moves, window
titles, hyperlinks) and invisible or reordering characters (C0, DEL, C1, zero-width, bidi
overrides, line separators, lone surrogates); printed as they are they could hide or forge
what an operator reads.  Escape sequences are removed and every other such character is shown as
a visible escape (``\\n``, ``\\x07``, ``\\u202e``).

Every command printing text a host supplied (deploy recap, status, report, errors carrying
remote stderr) goes through :func:`terminal_safe` (or :func:`terminal_lines` for a message
whose own line breaks are ours).  Where rich would parse the text as markup (``[blink]``),
it goes in a ``rich.text.Text`` (tables) or through :func:`markup_safe` (progress lines).
"""

from __future__ import annotations

import os
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


def terminal_lines(value: Any) -> str:
    """Like :func:`terminal_safe`, each line alone: the message's own line breaks kept."""
    text = "" if value is None else str(value)
    return "\n".join(terminal_safe(line) for line in text.split("\n"))


def markup_safe(value: Any, limit: int | None = None) -> str:
    """:func:`terminal_safe`, with rich's markup escaped: for a string rich parses."""
    from rich.markup import escape

    return escape(terminal_safe(value, limit))


def terminal_width(fd: int = 1, fallback: int = 120) -> int:
    """Columns of the terminal on ``fd``, or ``fallback`` when there is none or it reports 0
    (a pty nobody sized: printing 0 columns wide would print nothing)."""
    try:
        columns = os.get_terminal_size(fd).columns
    except OSError:
        return fallback
    return columns if columns > 0 else fallback
