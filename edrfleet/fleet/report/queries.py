"""What the report asks of a store besides counts, in terms both backends implement alike:
which events (:class:`edrfleet.fleet.report.store.EventFilter`: the columns returned, the
search), and which command lines are one command (its pattern).

**Command patterns.**  The top lists group the variants of one command, as an analyst reads
them: ``/tmp/x1/rm -rf /`` and ``/tmp/x2/rm -rf /`` (a renamed or copied binary), or
``rm -rf /tmp/job-1`` … ``rm -rf /tmp/job-900`` (a script's loop), are one line with a count,
the number of variants and one example.  A pattern is the rule with the command line where

- the first word's directory is dropped (``/tmp/x1/rm`` -> ``rm``: the program, wherever it was
  copied; the rule and the example still show where it ran from), and
- every run of digits is ``#`` (counters, pids, dates, ports, addresses, temporary names).

Words are otherwise kept: which directory was wiped or which host was fetched from is what the
analyst triages, so ``rm -rf /home`` and ``rm -rf /etc`` stay apart.  Both regular expressions
are plain POSIX classes, so Python (SQLite calls :func:`command_pattern`) and PostgreSQL's
``regexp_replace`` give the same pattern.

**Search.**  ``--search`` is a substring of the command line, matched by the database:
``LIKE`` (SQLite) / ``ILIKE`` (PostgreSQL) with ``\\``, ``%`` and ``_`` escaped, so the text
is taken literally.  Case-insensitive for ASCII letters in both (PostgreSQL also folds other
letters, by the database's locale).
"""

from __future__ import annotations

import re

PROGRAM_DIR = r"^[^ ]*/"  # the first word up to its last slash
NUMBER = "[0-9]+"
MARK = "#"
_PROGRAM_DIR = re.compile(PROGRAM_DIR)
_NUMBER = re.compile(NUMBER)
LIKE_ESCAPE = "\\"


def command_pattern(cmdline: str | None) -> str | None:
    """The pattern grouping ``cmdline``'s variants: ``/tmp/x1/rm -rf /job-12`` ->
    ``rm -rf /job-#``."""
    if cmdline is None:
        return None
    return _NUMBER.sub(MARK, _PROGRAM_DIR.sub("", cmdline, count=1))


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, its ``\\ % _`` taken literally."""
    escaped = (text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
               .replace("_", LIKE_ESCAPE + "_"))
    return f"%{escaped}%"


# The columns every event query returns, in this order.
EVENT_COLUMNS = ("id", "host", "ts", "action", "rule", "severity", "cmdline", "raw")
EventRow = tuple  # (id, host, ts, action, rule, severity, cmdline, raw)
