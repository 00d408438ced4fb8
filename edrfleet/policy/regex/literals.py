"""Literals a condition requires: a set of them at least one of which occurs in every match.

This is the prefilter's input (``edrfleet/policy/regex/prefilter.py``), computed on the AST of
``parse.py`` the way RE2's prefilter and Hyperscan's literal extraction do it.  A *literal* is a
tuple of symbol sets (stream bits, as in ``("sym", bits)``): ``(?i)rm`` is two positions of two
bytes each, and a space in a ``cmdline`` pattern also holds NUL (the argv separator), so one
literal stands for every spelling the automaton would accept.

Per node two facts are derived:

``exact``  every text the node can match, when that is a few short literals (else None);
``need``   literals one of which occurs in every match (None: nothing is required).

Soundness is all that matters (a literal that is not really required would let the prefilter
skip a group whose regex matches); the choice between sound sets only changes how often a
group runs.  A prefix of a required literal is required too, so long literals are cut.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edrfleet.policy.regex.parse import ALL_BYTES, BIT_NUL, Node

Lit = tuple[int, ...]
LitSet = frozenset[Lit]

MAX_SET = 16  # literals in one set: more are no longer a cheap filter
MAX_LEN = 16  # positions kept of a literal
MIN_LEN = 3  # a usable set has no literal shorter than this (one or two bytes hit always)
NARROW = 4  # bytes one position may allow and still count as literal (a case pair, [0-3])

EMPTY_LIT: Lit = ()


@dataclass(frozen=True)
class Info:
    exact: LitSet | None
    need: LitSet | None


def _narrow(bits: int) -> bool:
    return 0 < bin(bits & ALL_BYTES & ~BIT_NUL).count("1") <= NARROW


def _need_of(lits: LitSet | None) -> LitSet | None:
    """A set of exact texts as a requirement: None when one of them may be empty."""
    if lits is None or EMPTY_LIT in lits:
        return None
    return frozenset(lit[:MAX_LEN] for lit in lits)


def score(lits: LitSet | None) -> tuple[int, int]:
    """Higher is a better filter: the shortest literal first, then fewer literals."""
    if lits is None:
        return (-1, 0)
    if not lits:  # the node never matches: nothing needs to run it
        return (MAX_LEN + 1, 0)
    return (min(len(lit) for lit in lits), -len(lits))


def better(a: LitSet | None, b: LitSet | None) -> LitSet | None:
    return b if score(b) > score(a) else a


def _product(a: LitSet, b: LitSet) -> LitSet | None:
    if len(a) * len(b) > MAX_SET:
        return None
    out = frozenset(x + y for x in a for y in b)
    return out if all(len(lit) <= MAX_LEN for lit in out) else None


def _cat(parts: Iterable[Info]) -> Info:
    acc: LitSet | None = frozenset({EMPTY_LIT})
    best: LitSet | None = None
    all_exact = True
    for part in parts:
        joined = _product(acc, part.exact) if acc is not None and part.exact is not None \
            else None
        if joined is not None:
            acc = joined
            continue
        all_exact = False
        best = better(best, _need_of(acc))
        if part.exact is not None and len(part.exact) <= MAX_SET:
            acc = part.exact
        else:
            best = better(best, part.need)
            acc = frozenset({EMPTY_LIT})
    if all_exact:
        return Info(acc, _need_of(acc))
    return Info(None, better(best, _need_of(acc)))


def _alt(alts: list[Info]) -> Info:
    exact: LitSet | None = None
    if all(a.exact is not None for a in alts):
        union = frozenset().union(*(a.exact for a in alts))  # type: ignore[arg-type]
        exact = union if len(union) <= MAX_SET else None
    need: LitSet | None = None
    if all(a.need is not None for a in alts):
        union = frozenset().union(*(a.need for a in alts))  # type: ignore[arg-type]
        need = union if len(union) <= MAX_SET else None
    return Info(exact, better(need, _need_of(exact)))


def _rep(sub: Info, lo: int, hi: int | None) -> Info:
    if hi == 0:
        return Info(frozenset({EMPTY_LIT}), None)
    if lo == 0:
        if hi == 1 and sub.exact is not None:  # x? is x or nothing
            return _alt([sub, Info(frozenset({EMPTY_LIT}), None)])
        return Info(None, None)
    if lo == hi and sub.exact is not None:
        return _cat([sub] * lo)
    return Info(None, sub.need)


OPAQUE = Info(None, None)
MAX_COPIES = 4  # copies of a repeated piece spliced into its neighbours


def _cat_with_repeats(nodes: tuple[Node, ...]) -> Info:
    """A concatenation; a repeat x{m,n} (m >= 1, n != m) in it is spliced both as
    x^m followed by anything and as anything followed by x^m (both hold for every match), so
    its copies join the text before it (``nc +`` needs ``nc ``) or after it; the better wins."""
    left: list[Info] = []
    right: list[Info] = []
    spliced = False
    for part in nodes:
        if part[0] == "rep" and part[2] >= 1 and part[3] != part[2]:
            sub = info(part[1])
            if sub.exact is not None:
                copies = [sub] * min(part[2], MAX_COPIES)
                left += [*copies, OPAQUE]
                right += [OPAQUE, *copies]
                spliced = True
                continue
        one = info(part)
        left.append(one)
        right.append(one)
    if not spliced:
        return _cat(left)
    a, b = _cat(left), _cat(right)
    return Info(None, better(a.need, b.need))


def info(node: Node) -> Info:
    """``exact`` and ``need`` of one AST node (see the module docstring)."""
    tag = node[0]
    if tag == "sym":
        if node[1] == 0:  # never matches
            return Info(frozenset(), frozenset())
        if _narrow(node[1]):
            one = frozenset({(node[1],)})
            return Info(one, one)
        return Info(None, None)
    if tag == "assert":  # zero width: constrains neighbours, adds no text
        return Info(frozenset({EMPTY_LIT}), None)
    if tag == "cat":
        return _cat_with_repeats(node[1])
    if tag == "alt":
        return _alt([info(alt) for alt in node[1]])
    if tag == "rep":
        return _rep(info(node[1]), node[2], node[3])
    raise ValueError(f"unknown AST node {tag!r}")  # pragma: no cover


def required(node: Node) -> LitSet | None:
    """Literals one of which occurs in every match of ``node``, or None when no usable set
    (every literal at least ``MIN_LEN`` positions) exists."""
    need = info(node).need
    if need is None or any(len(lit) < MIN_LEN for lit in need):
        return None
    return frozenset(lit for lit in need if not any(
        other != lit and _implies(lit, other) for other in need))


def _implies(lit: Lit, other: Lit) -> bool:
    """Every text holding ``lit`` holds ``other``: other occurs in lit with wider sets."""
    n = len(other)
    return any(all(lit[i + j] & ~other[j] == 0 for j in range(n))
               for i in range(len(lit) - n + 1))


def literal_ast(lits: Iterable[Lit]) -> Node:
    """An AST matching any of the literals, for the prefilter's automaton."""
    alts = tuple(("cat", tuple(("sym", bits) for bits in lit)) for lit in sorted(lits))
    return ("alt", alts)


def show(lit: Lit) -> str:
    """A literal as text, for messages: the lowest byte of each position."""
    out = []
    for bits in lit:
        low = (bits & ALL_BYTES & ~BIT_NUL) or bits
        b = (low & -low).bit_length() - 1
        out.append(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}")
    return "".join(out)
