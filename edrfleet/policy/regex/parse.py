"""Python ``re`` patterns (bytes) to a small AST over the symbols a group DFA reads.

The DFA reads one stream per exec: ``BOS``, the argv strings joined by NUL, ``EOS``
(docs/policy-bundle.md).  A pattern is translated for one of two *contexts*:

``arg``  (``args`` entries): the text is one argv[i], i >= 1.  A class never contains NUL,
         BOS or EOS; "start of text" is "the previous symbol was NUL"; "end of text" is "the
         next symbol is NUL or EOS".
``cmd``  (``cmdline``): the text is ``b" ".join(argv)``, and NUL *is* the space: every class
         containing ``b" "`` also contains NUL; start = "previous symbol was BOS", end = "next
         symbol is EOS".

Patterns are parsed by the stdlib's own parser (``re._parser``), so the syntax is exactly
Python's.  AST nodes are tuples; symbol sets are Python ints used as bitsets over 0..257:

``("sym", bits)``                  consume one symbol in ``bits``
``("cat", (node, ...))``           concatenation
``("alt", (node, ...))``           alternation
``("rep", node, lo, hi)``          repetition, ``hi`` None = unbounded
``("assert", ((prev, look), ...))`` zero width: holds when for some alternative the symbol
                                   just read is in ``prev`` (None = anything) and the next
                                   symbols are in ``look[0]``, ``look[1]``, ...
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from re import _constants as C  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from edrfleet.errors import InputError
from edrfleet.policy.limits import EDR_NSYM, EDR_SYM_BOS, EDR_SYM_EOS, MAX_REPEAT_BOUND

SYM_BOS = EDR_SYM_BOS
SYM_EOS = EDR_SYM_EOS
NSYM = EDR_NSYM
BIT_NUL = 1
BIT_BOS = 1 << SYM_BOS
BIT_EOS = 1 << SYM_EOS
ALL_BYTES = (1 << 256) - 1
BIT_NL = 1 << 0x0A
BIT_SPACE = 1 << 0x20

Node = tuple[Any, ...]
EMPTY: Node = ("cat", ())
FAIL: Node = ("sym", 0)


_LOCALE_HINT = "remove the L flag: the kernel matches bytes with ASCII rules, not a locale"


class RegexUnsupported(InputError, ValueError):
    """A valid Python pattern that the kernel's automaton cannot run exactly.

    Attributes:
        piece: the offending construct as written (``"(?=...)"``, ``"\\1"``, ...).
        hint: how to express the intent differently.
        pos: 0-based offset of the piece in the pattern, when it could be located.
    """

    def __init__(self, piece: str, hint: str, pos: int | None = None) -> None:
        self.piece = piece
        self.hint = hint
        self.pos = pos
        super().__init__(f"{piece} is not supported: {hint}")


@dataclass(frozen=True)
class Context:
    """Where a pattern is evaluated: ``"arg"`` or ``"cmd"`` (see the module docstring)."""

    kind: str

    def to_stream(self, text_bits: int) -> int:
        """Map a set of text bytes to the set of stream symbols that stand for them."""
        bits = text_bits & ALL_BYTES & ~BIT_NUL
        if self.kind == "cmd" and text_bits & BIT_SPACE:
            bits |= BIT_NUL
        return bits

    @property
    def start(self) -> int:  # previous symbol at the start of the text
        return BIT_NUL if self.kind == "arg" else BIT_BOS

    @property
    def end(self) -> int:  # next symbol at the end of the text
        return (BIT_NUL | BIT_EOS) if self.kind == "arg" else BIT_EOS


ARG = Context("arg")
CMD = Context("cmd")


def bits_of(values: Any) -> int:
    out = 0
    for v in values:
        out |= 1 << v
    return out


@functools.cache
def category_bits(name: str) -> int:
    """Bytes matched by ``\\d \\D \\s \\S \\w \\W`` on bytes, asked of ``re`` itself."""
    rx = re.compile(b"\\" + name.encode())
    return bits_of(b for b in range(256) if rx.match(bytes([b])))


_CATEGORIES = {
    C.CATEGORY_DIGIT: "d",
    C.CATEGORY_NOT_DIGIT: "D",
    C.CATEGORY_SPACE: "s",
    C.CATEGORY_NOT_SPACE: "S",
    C.CATEGORY_WORD: "w",
    C.CATEGORY_NOT_WORD: "W",
}


def fold_case(bits: int) -> int:
    """ASCII case folding, as ``re`` does for bytes with IGNORECASE."""
    for upper in range(0x41, 0x5B):
        pair = (1 << upper) | (1 << (upper + 0x20))
        if bits & pair:
            bits |= pair
    return bits


def _assertion(at: Any, flags: int, ctx: Context) -> Node:
    multiline = bool(flags & C.SRE_FLAG_MULTILINE)
    word = ctx.to_stream(category_bits("w"))
    nonword = ctx.to_stream(ALL_BYTES & ~category_bits("w"))
    if at == C.AT_BEGINNING_STRING or (at == C.AT_BEGINNING and not multiline):
        alts: tuple[Any, ...] = ((ctx.start, ()),)
    elif at == C.AT_BEGINNING:
        alts = ((ctx.start | BIT_NL, ()),)
    elif at == C.AT_END_STRING:
        alts = ((None, (ctx.end,)),)
    elif at == C.AT_END and multiline:
        alts = ((None, (ctx.end | BIT_NL,)),)
    elif at == C.AT_END:
        alts = ((None, (ctx.end,)), (None, (BIT_NL, ctx.end)))
    elif at == C.AT_BOUNDARY:
        alts = ((word, (nonword | ctx.end,)), (nonword | ctx.start, (word,)))
    elif at == C.AT_NON_BOUNDARY:
        # re never matches \B inside an empty text: start-then-end is excluded.
        alts = ((word, (word,)), (nonword, (nonword | ctx.end,)), (ctx.start, (nonword,)))
    else:  # pragma: no cover - the bytes parser emits nothing else
        raise RegexUnsupported(str(at), "this anchor is not supported")
    return ("assert", alts)


def _class_bits(items: list[Any], flags: int) -> int:
    negate = False
    bits = 0
    for op, av in items:
        if op == C.NEGATE:
            negate = True
        elif op == C.LITERAL:
            bits |= 1 << av
        elif op == C.RANGE:
            lo, hi = av
            bits |= ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)
        elif op == C.CATEGORY and av in _CATEGORIES:
            bits |= category_bits(_CATEGORIES[av])
        else:  # pragma: no cover - not produced for bytes patterns
            raise RegexUnsupported(str(op), "this class item is not supported")
    if flags & C.SRE_FLAG_IGNORECASE:
        bits = fold_case(bits)
    if negate:
        bits = ALL_BYTES & ~bits
    return bits


def _repeat_piece(lo: int, hi: Any) -> str:
    short = {(0, C.MAXREPEAT): "*", (1, C.MAXREPEAT): "+", (0, 1): "?"}
    for (a, b), text in short.items():
        if lo == a and hi is b or (lo, hi) == (a, b):
            return text
    if hi is C.MAXREPEAT:
        return f"{{{lo},}}"
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


class _Converter:
    def __init__(self, ctx: Context, glob: bool) -> None:
        self.ctx = ctx
        self.glob = glob

    def seq(self, items: Any, flags: int) -> Node:
        parts = [self.item(op, av, flags) for op, av in items]
        return parts[0] if len(parts) == 1 else ("cat", tuple(parts))

    def item(self, op: Any, av: Any, flags: int) -> Node:  # noqa: C901 - one branch per opcode
        ctx = self.ctx
        icase = flags & C.SRE_FLAG_IGNORECASE
        if op == C.LITERAL:
            bits = 1 << av
            return ("sym", ctx.to_stream(fold_case(bits) if icase else bits))
        if op == C.NOT_LITERAL:
            bits = 1 << av
            return ("sym", ctx.to_stream(ALL_BYTES & ~(fold_case(bits) if icase else bits)))
        if op == C.ANY:
            dotall = flags & C.SRE_FLAG_DOTALL
            return ("sym", ctx.to_stream(ALL_BYTES if dotall else ALL_BYTES & ~BIT_NL))
        if op == C.IN:
            return ("sym", ctx.to_stream(_class_bits(av, flags)))
        if op == C.BRANCH:
            return ("alt", tuple(self.seq(alt, flags) for alt in av[1]))
        if op == C.SUBPATTERN:
            _group, add, remove, sub = av
            if add & C.SRE_FLAG_LOCALE:
                raise RegexUnsupported("(?L)", _LOCALE_HINT)
            return self.seq(sub, (flags | add) & ~remove)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            bound = lo if hi is C.MAXREPEAT else max(lo, hi)
            if bound > MAX_REPEAT_BOUND:
                raise RegexUnsupported(
                    _repeat_piece(lo, hi),
                    f"repeat counts above {MAX_REPEAT_BOUND} are too large for the automaton; "
                    "use a smaller bound or '*'/'+'",
                )
            return ("rep", self.seq(sub, flags), lo, None if hi is C.MAXREPEAT else hi)
        if op == C.AT:
            return _assertion(av, flags, ctx)
        if self.glob and op == C.ATOMIC_GROUP:
            # fnmatch.translate's (?>.*?FIXED): same language as .*?FIXED for a full match.
            return self.seq(av, flags)
        if self.glob and op == C.ASSERT_NOT and not av[1]:
            return FAIL  # fnmatch's "(?!)" for an empty bracket: never matches
        raise _unsupported(op, av)

    def convert(self, tree: Any) -> Node:
        return self.seq(tree, tree.state.flags)


def _unsupported(op: Any, av: Any) -> RegexUnsupported:
    if op == C.GROUPREF:
        return RegexUnsupported(
            f"back-reference \\{av}",
            "an automaton cannot remember captured text; spell out the alternatives",
        )
    if op in (C.ASSERT, C.ASSERT_NOT):
        direction, _ = av
        kind = ("look-ahead", "(?=...)", "(?!...)") if direction == 1 else (
            "look-behind", "(?<=...)", "(?<!...)")
        piece = kind[1] if op == C.ASSERT else kind[2]
        return RegexUnsupported(
            f"{kind[0]} {piece}",
            "match the text itself instead, or split the condition into several 'args' "
            "entries (each entry must hold)",
        )
    if op == C.GROUPREF_EXISTS:
        return RegexUnsupported(
            f"conditional group (?({av[0]})...)",
            "write the alternatives with '|' instead",
        )
    if op == C.ATOMIC_GROUP:
        return RegexUnsupported("atomic group (?>...)", "use a plain group (?:...)")
    if op == C.POSSESSIVE_REPEAT:
        lo, hi, _ = av
        return RegexUnsupported(
            f"possessive repeat {_repeat_piece(lo, hi)}+", "drop the trailing '+' (greedy repeat)"
        )
    return RegexUnsupported(str(op), "this construct is not supported")  # pragma: no cover


_PIECE_FINDERS = {
    "back-reference": r"\\[1-9]|\(\?P=",
    "look-ahead": r"\(\?[=!]",
    "look-behind": r"\(\?<[=!]",
    "conditional": r"\(\?\(",
    "atomic": r"\(\?>",
    "possessive": r"[*+?}]\+",
    "(?L)": r"\(\?[aimsx]*L",
    "{": r"\{\d*,?\d*\}",
}


def _locate(pattern: bytes, exc: RegexUnsupported) -> int | None:
    text = pattern.decode("latin-1")
    for word, finder in _PIECE_FINDERS.items():
        if exc.piece.startswith(word):
            m = re.search(finder, text)
            return m.start() if m else None
    return None


def parse_regex(pattern: bytes, ctx: Context, *, glob: bool = False) -> Node:
    """Parse a bytes pattern into an AST for ``ctx``.

    Raises:
        re.error: the pattern is not valid Python syntax (``.pos`` says where).
        RegexUnsupported: valid, but cannot be run by a DFA exactly.
    """
    compiled = re.compile(pattern)  # raises re.error with the position
    if compiled.flags & C.SRE_FLAG_LOCALE:
        raise RegexUnsupported(
            "(?L)", _LOCALE_HINT, _locate_flag(pattern)
        )
    tree = _parser.parse(pattern, 0)
    try:
        return _Converter(ctx, glob).convert(tree)
    except RegexUnsupported as exc:
        if exc.pos is None:
            exc.pos = _locate(pattern, exc)
        raise


def _locate_flag(pattern: bytes) -> int | None:
    m = re.search(rb"\(\?[aimsx]*L", pattern)
    return m.start() if m else None


def regex_ast(pattern: bytes, ctx: Context) -> Node:
    """AST of a ``regex`` (ctx ARG) or ``cmdline`` (ctx CMD) condition: ``re.search``."""
    return parse_regex(pattern, ctx)


def glob_ast(glob: bytes) -> Node:
    """AST of a ``glob`` condition: ``fnmatch.fnmatchcase`` on one whole argument.

    Uses fnmatch's own translation (on latin-1, like fnmatch does for bytes), so brackets,
    ``[!...]`` and unclosed ``[`` behave exactly as in the stdlib.
    """
    translated = fnmatch.translate(glob.decode("latin-1")).encode("latin-1")
    body = parse_regex(translated, ARG, glob=True)
    return ("cat", (("assert", ((ARG.start, ()),)), body))


def any_ast(literals: tuple[bytes, ...]) -> Node:
    """AST of an ``any`` condition: one whole argument equals one of the literals."""
    alts = tuple(("cat", tuple(("sym", ARG.to_stream(1 << b)) for b in lit)) for lit in literals)
    return (
        "cat",
        (("assert", ((ARG.start, ()),)), ("alt", alts), ("assert", ((None, (ARG.end,)),))),
    )
