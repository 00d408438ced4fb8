"""Sigma string values as regexes in the subset the kernel's automaton runs.

A Sigma string (after its modifiers: ``contains`` = ``*x*``, ``startswith`` = ``x*``,
``endswith`` = ``*x``) is a full match of literal pieces and the wildcards ``*`` (any run) and
``?`` (one character), case-insensitive unless ``cased``.  `TextPattern` keeps that shape, so a
value can be turned into

- a ``cmdline`` regex over the whole command line (`cmdline_regex`),
- a regex for one positional argument of an auditd EXECVE record (`argv_regex`),
- the regex of its *complement* (`complement_regex`): "the command line does NOT match".  The
  kernel has no negation and no look-around, so the complement is built as an automaton
  (subset construction over the pattern, accepting states flipped) and written back as a regex
  by state elimination.  This is how ``selection and not filter`` stays one rule whose
  conditions all must hold, instead of an ``allow`` exception (which would win over every
  other rule of the policy, see docs/sigma.md).

Emitted regexes use only literals, ``\\xNN`` escapes, classes, ``(?is:...)``, ``*``, ``|``,
``\\A`` and ``\\Z``: no look-around, no back-references, no ``\\b``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigma.types import SigmaString, SpecialChars

from edrfleet.errors import InputError

STAR = "*"
ONE = "?"
_SPECIAL = frozenset(b".^$*+?{}[]\\|()")
MAX_COMPLEMENT = 12000  # characters of a complement regex; beyond, the rule is refused
MAX_COMPLEMENT_STATES = 200  # states of the automaton it is built from


class PatternUnsupported(InputError, ValueError):
    """A Sigma value this importer cannot express; the message says why."""


@dataclass(frozen=True)
class TextPattern:
    """``items``: literal bytes, `STAR` or `ONE`; ``start``/``end``: anchored there."""

    items: tuple[bytes | str, ...]
    start: bool
    end: bool
    icase: bool = True

    @property
    def literal(self) -> bytes | None:
        """The text when the pattern is one literal without wildcards, else None."""
        if len(self.items) == 1 and isinstance(self.items[0], bytes):
            return self.items[0]
        return b"" if not self.items else None


def from_sigma(value: SigmaString, icase: bool = True) -> TextPattern:
    """The pattern of a pySigma string (placeholders are refused)."""
    items: list[bytes | str] = []
    for part in value.s:
        if isinstance(part, str):
            if items and isinstance(items[-1], bytes):
                items[-1] += part.encode()
            else:
                items.append(part.encode())
        elif part is SpecialChars.WILDCARD_MULTI:
            if not items or items[-1] != STAR:
                items.append(STAR)
        elif part is SpecialChars.WILDCARD_SINGLE:
            items.append(ONE)
        else:
            raise PatternUnsupported(f"placeholder {part} in {value!s}: expand it first")
    start = not (items and items[0] == STAR)
    end = not (items and items[-1] == STAR)
    core = items[(0 if start else 1):(len(items) if end else -1)] if items != [STAR] else []
    return TextPattern(tuple(core), start, end, icase)


def contains(text: str, icase: bool = True) -> TextPattern:
    return TextPattern((text.encode(),), False, False, icase)


def escape(data: bytes) -> str:
    """Bytes as regex text: printable ASCII as is (specials backslashed), the rest ``\\xNN``."""
    out = []
    for b in data:
        if b in _SPECIAL:
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def _body(p: TextPattern, star: str, one: str) -> str:
    return "".join(escape(i) if isinstance(i, bytes) else star if i == STAR else one
                   for i in p.items)


def cmdline_regex(p: TextPattern) -> str:
    """``re.search`` over the command line holds iff the Sigma value matches it."""
    flags = "is" if p.icase else "s"
    head = "\\A" if p.start else ""
    tail = "\\Z" if p.end else ""
    return f"(?{flags}:{head}{_body(p, '.*', '.')}{tail})"


def argv_regex(index: int, p: TextPattern) -> str:
    """argv[index] matches the value, on the space-joined command line.

    Exact while no argument before it contains a space (the kernel reads the separator of
    arguments and a space alike in a ``cmdline`` regex).
    """
    flags = "i" if p.icase else ""
    head = "" if p.start else "[^ ]*"
    tail = "" if p.end else "[^ ]*"
    skip = f"(?:[^ ]* ){{{index}}}" if index else ""
    inner = f"{head}{_body(p, '[^ ]*', '[^ ]')}{tail}"
    return f"\\A{skip}(?{flags}:{inner})(?: |\\Z)" if flags else f"\\A{skip}{inner}(?: |\\Z)"


def arg_regex(p: TextPattern) -> str:
    """An ``args`` regex: one whole argument matches the value (``\\A``/``\\Z`` are the
    argument's ends there)."""
    flags = "is" if p.icase else "s"
    head = "\\A" if p.start else ""
    tail = "\\Z" if p.end else ""
    return f"(?{flags}:{head}{_body(p, '.*', '.')}{tail})"


# --- the complement --------------------------------------------------------------------------
def _fold(b: int, icase: bool) -> frozenset[int]:
    if icase and (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A):
        return frozenset({b | 0x20, b & ~0x20})
    return frozenset({b})


def _steps(p: TextPattern) -> tuple[list[frozenset[int]], list[bool]]:
    """One byte set per consumed character; ``loops[i]``: any byte may repeat at position i."""
    sets: list[frozenset[int]] = []
    loops = [not p.start]
    everything = frozenset(range(256))
    for item in p.items:
        if item == STAR:
            loops[-1] = True
            continue
        for b in (item if isinstance(item, bytes) else [None]):
            sets.append(everything if b is None else _fold(b, p.icase))
            loops.append(False)
    loops[-1] = loops[-1] or not p.end
    return sets, loops


def _classes(sets: list[frozenset[int]]) -> list[frozenset[int]]:
    """The coarsest partition of the 256 bytes that every step set is a union of."""
    blocks = [frozenset(range(256))]
    for s in set(sets):
        blocks = [part for blk in blocks for part in (blk & s, blk - s) if part]
    return blocks


def _dfa(patterns: list[TextPattern]
         ) -> tuple[list[dict[int, int]], list[frozenset[int]], set[int]]:
    """Complete DFA of "one of the patterns matches the whole text": (transitions by class,
    classes, accepting states).  NFA states are (pattern, position) pairs."""
    steps = [_steps(p) for p in patterns]
    classes = _classes([s for sets, _ in steps for s in sets])
    first = frozenset((k, 0) for k in range(len(patterns)))
    states: dict[frozenset[tuple[int, int]], int] = {first: 0}
    order = [first]
    trans: list[dict[int, int]] = []
    done = frozenset({(-1, 0)})  # a value without an end anchor matched: every text does
    while len(trans) < len(order):
        cur = order[len(trans)]
        row = {}
        for c, cls in enumerate(classes):
            b = next(iter(cls))
            nxt = done if cur == done else frozenset(
                {(k, i + 1) for k, i in cur if i < len(steps[k][0]) and b in steps[k][0][i]}
                | {(k, i) for k, i in cur if steps[k][1][i]})
            if any(i == len(steps[k][0]) and steps[k][1][i] for k, i in nxt if k >= 0):
                nxt = done
            if nxt not in states:
                states[nxt] = len(order)
                order.append(nxt)
            row[c] = states[nxt]
        trans.append(row)
        if len(order) > MAX_COMPLEMENT_STATES:
            raise PatternUnsupported(f"its negation needs more than {MAX_COMPLEMENT_STATES} "
                                     "automaton states")
    accept = {n for st, n in states.items()
              if st == done or any(k >= 0 and i == len(steps[k][0]) for k, i in st)}
    return trans, classes, accept


_CLASS_SPECIAL = frozenset(b"]\\^-[")


def _class_char(b: int) -> str:
    if 0x20 < b < 0x7F and b not in _CLASS_SPECIAL:
        return chr(b)
    return f"\\x{b:02x}"


def _class_text(byteset: frozenset[int]) -> str:
    if len(byteset) == 1:
        return escape(bytes(byteset))
    runs = []
    values = sorted(byteset)
    lo = prev = values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        runs.append(_class_char(lo) if lo == prev else
                    _class_char(lo) + _class_char(prev) if prev == lo + 1 else
                    f"{_class_char(lo)}-{_class_char(prev)}")
        if v is not None:
            lo = prev = v
    return "[" + "".join(runs) + "]"


class _Builder:
    """Regex fragments for state elimination; alternations are kept flat (one group)."""

    def __init__(self) -> None:
        self.members: dict[str, list[str]] = {}

    def alt(self, a: str | None, b: str | None) -> str | None:
        if a is None:
            return b
        if b is None or a == b:
            return a
        items = list(self.members.get(a, [a]))
        items += [x for x in self.members.get(b, [b]) if x not in items]
        out = "(?:" + "|".join(items) + ")"
        self.members[out] = items
        return out

    @staticmethod
    def cat(*parts: str | None) -> str | None:
        if any(x is None for x in parts):
            return None
        return "".join(x for x in parts if x)  # type: ignore[misc]

    def star(self, x: str | None) -> str:
        if not x:
            return ""
        simple = len(x) == 1 or (x.startswith("[") and x.endswith("]") and x.count("[") == 1
                                 ) or (x.startswith("\\") and len(x) in (2, 4))
        return f"{x}*" if simple else (f"{x}*" if x in self.members else f"(?:{x})*")


def complement_regex(p: TextPattern | list[TextPattern]) -> str | None:
    """A regex (``re.search``) that holds iff the Sigma value (none of the values, for a
    list) matches the whole text.

    Returns None when the complement is empty (the values match every text).

    Raises:
        PatternUnsupported: the regex would be longer than `MAX_COMPLEMENT` characters.
    """
    trans, classes, accept = _dfa(p if isinstance(p, list) else [p])
    rx = _Builder()
    n = len(trans)
    start, final = n, n + 1  # new start and final states for state elimination
    edges: dict[tuple[int, int], str | None] = {}
    for s, row in enumerate(trans):
        by_target: dict[int, set[int]] = {}
        for c, t in row.items():
            by_target.setdefault(t, set()).update(classes[c])
        for t, bs in by_target.items():
            edges[(s, t)] = _class_text(frozenset(bs))
    edges[(start, 0)] = ""
    for s in range(n):
        if s not in accept:
            edges[(s, final)] = ""
    for x in sorted(range(n), key=lambda v: sum(1 for k in edges if v in k)):
        loop = rx.star(edges.pop((x, x), None))
        ins = [(a, r) for (a, b), r in edges.items() if b == x]
        outs = [(b, r) for (a, b), r in edges.items() if a == x]
        for a, _ in ins:
            edges.pop((a, x))
        for b, _ in outs:
            edges.pop((x, b))
        for a, ra in ins:
            for b, rb in outs:
                edges[(a, b)] = rx.alt(edges.get((a, b)), rx.cat(ra, loop, rb))
        if sum(len(r or "") for r in edges.values()) > 4 * MAX_COMPLEMENT:
            raise PatternUnsupported("its negation needs too large a regex")
    body = edges.get((start, final))
    if body is None:
        return None
    out = "\\A" + body + "\\Z"
    if len(out) > MAX_COMPLEMENT:
        raise PatternUnsupported(f"its negation needs a regex of {len(out)} characters "
                                 f"(at most {MAX_COMPLEMENT})")
    return out
