"""Small builders for automaton ASTs over one argument (`edrfleet.policy.regex.parse` nodes)."""

from __future__ import annotations

from edrfleet.policy.regex.parse import ALL_BYTES, BIT_BOS, BIT_EOS, BIT_NUL, EMPTY, Node

BYTES = ALL_BYTES & ~BIT_NUL  # any byte of an argument
ARG_START: Node = ("assert", ((BIT_NUL, ()),))  # the previous symbol ended argv[i-1]
ARGV_START: Node = ("assert", ((BIT_BOS, ()),))  # nothing read but BOS
ARG_END: Node = ("assert", ((None, (BIT_NUL | BIT_EOS,)),))  # the argument ends here


def bits(chars: bytes) -> int:
    out = 0
    for b in chars:
        out |= 1 << b
    return out


def sym(mask: int) -> Node:
    return ("sym", mask)


def lit(text: bytes) -> Node:
    return cat(*(sym(1 << b) for b in text))


def cat(*parts: Node) -> Node:
    return parts[0] if len(parts) == 1 else ("cat", tuple(parts))


def alt(*parts: Node) -> Node:
    return parts[0] if len(parts) == 1 else ("alt", tuple(parts))


def star(node: Node) -> Node:
    return ("rep", node, 0, None)


def plus(node: Node) -> Node:
    return ("rep", node, 1, None)


def opt(node: Node) -> Node:
    return alt(EMPTY, node)


def prefixes(word: bytes, shortest: int) -> Node:
    """Every prefix of ``word`` at least ``shortest`` bytes long (linear size)."""
    shortest = max(1, min(shortest, len(word)))
    tail: Node = EMPTY
    for b in reversed(word[shortest:]):
        tail = opt(cat(sym(1 << b), tail))
    return cat(lit(word[:shortest]), tail)
