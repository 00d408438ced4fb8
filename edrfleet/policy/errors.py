"""Errors of the policy package: each one names the file, line and column, and a fix.

>>> str(PolicyError("unknown key 'exectuable' in rule 'rm-root'", source="policy.yaml",
...                 line=12, col=5, fix="did you mean 'executable'?"))
"policy.yaml:12:5: unknown key 'exectuable' in rule 'rm-root' (fix: did you mean 'executable'?)"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from edrfleet.errors import InputError


def inert(text: str) -> str:
    """``text`` safe to echo on a terminal: control characters (bell, ESC sequences, line
    breaks inside a value) are written as escapes, ``\\x07``, ``\\x1b``, ``\\u2028``.

    >>> inert("a\\x07\\x1b[31mred")
    'a\\\\x07\\\\x1b[31mred'
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch.isprintable():
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


class PolicyError(InputError, ValueError):
    """A policy that cannot be loaded or compiled.

    Attributes:
        source: the file the policy came from (``"<string>"`` for text).
        line, col: 1-based position of the offending piece (0 when unknown).
        message: what is wrong, naming the rule and the piece.
        fix: what to write instead (may be ``None``).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "<string>",
        line: int = 0,
        col: int = 0,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.col = col
        self.fix = fix
        super().__init__(self.format())

    def format(self) -> str:
        """The one-line form ``file:line:col: message (fix: ...)``."""
        where = self.source
        if self.line:
            where += f":{self.line}"
            if self.col:
                where += f":{self.col}"
        text = f"{where}: {self.message}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return inert(text)

    def __str__(self) -> str:
        return self.format()

    def sort_key(self) -> tuple[str, int, int]:
        return (self.source, self.line, self.col)


class PolicyErrors(PolicyError):
    """Several errors found in one pass; ``errors`` lists them in file order."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        if not errors:
            raise ValueError("PolicyErrors needs at least one error")
        self.errors: list[PolicyError] = list(errors)
        first = self.errors[0]
        super().__init__(
            first.message, source=first.source, line=first.line, col=first.col, fix=first.fix
        )

    def format(self) -> str:
        text = self.errors[0].format()
        more = len(self.errors) - 1
        if more:
            text += f" (and {more} more)"
        return text


def raise_collected(errors: Sequence[PolicyError]) -> None:
    """Raise nothing, the single error, or a `PolicyErrors` holding them all (sorted)."""
    if not errors:
        return
    ordered = sorted(errors, key=PolicyError.sort_key)
    if len(ordered) == 1:
        raise ordered[0]
    raise PolicyErrors(ordered)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``"did you mean 'x'?"`` for the closest choice (difflib), or None."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
