"""Thompson NFA for one group: a scanner plus every condition of the group's rules.

Node kinds (parallel lists, node ids are ints):

``SYM``     reads one symbol of ``sym[n]`` (a bitset over the 258 stream symbols), goes to
            ``out[n][0]``;
``EPS``     goes to every node of ``out[n]`` without reading;
``ASSERT``  zero width: ``look[n] = (prev, ahead)``: passable when the symbol just read is in
            ``prev`` (None = any); ``ahead`` constrains the symbols still to come;
``MATCH``   the condition ``bit[n]`` holds;
``JUMP``    goes without reading to where the condition entered at ``jump[n] = (entry, word)``
            would be after reading ``word`` (a left quotient: ``("cwdjoin", ...)`` below).

``("cwdjoin", exact, classes)`` is a path condition ``exact`` (it starts at an argument start)
joined to the working directory: for each ``(symbols, word)`` of ``classes``, after an argument
start, a cwd-class symbol of ``symbols`` (a bitset) then a relative argument (first byte not
``/``) read as if ``word`` (the class's directory, ``/`` ended) came before it.  The
quotients continue in ``exact``'s own nodes, so the automaton's states after a class symbol
are states the absolute spellings reach (no copy of the path grammar per class).

The scanner implements search semantics for every condition at once::

    S --BOS--> P0 ; P0 --byte--> P0 ; P0 --NUL--> P1 ; P1 --byte|NUL--> P1
    P0, P1 --eps--> every cmdline condition (it may start after any symbol but EOS)
    P1     --eps--> every args condition (argv[i], i >= 1, starts after the first NUL)
"""

from __future__ import annotations

from collections.abc import Sequence

from edrfleet.policy.limits import MAX_NFA_NODES
from edrfleet.policy.regex.parse import (
    ALL_BYTES,
    BIT_BOS,
    BIT_NUL,
    Node,
    RegexUnsupported,
)

SYM, EPS, ASSERT, MATCH, JUMP = 0, 1, 2, 3, 4
BIT_SLASH = 1 << ord("/")


class NfaTooLarge(RegexUnsupported):
    pass


class Nfa:
    """A growable NFA; see the module docstring for the node kinds."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.sym: list[int] = []
        self.out: list[list[int]] = []
        self.look: list[tuple[int | None, tuple[int, ...]] | None] = []
        self.bit: list[int] = []
        self.jump: dict[int, tuple[int, bytes]] = {}
        self.cwd_syms = 0  # the cwd-class symbols some node reads
        self.start = -1
        self._budget = 0

    def add(self, kind: int, *, sym: int = 0, out: Sequence[int] = (), look=None, bit=-1) -> int:
        self._budget -= 1
        if self._budget < 0:
            raise NfaTooLarge(
                "pattern size",
                f"the pattern expands to more than {MAX_NFA_NODES} automaton nodes; "
                "use smaller {m,n} bounds or fewer alternatives",
            )
        self.kind.append(kind)
        self.sym.append(sym)
        self.out.append(list(out))
        self.look.append(look)
        self.bit.append(bit)
        return len(self.kind) - 1

    def sets(self) -> set[int]:
        """Every symbol set a transition or an assertion of this NFA tests."""
        found: set[int] = set()
        for k, sym, look in zip(self.kind, self.sym, self.look, strict=True):
            if k == SYM:
                found.add(sym)
            elif k == ASSERT and look is not None:
                prev, ahead = look
                if prev is not None:
                    found.add(prev)
                found.update(ahead)
        return found

    # --- Thompson construction, built backwards from the continuation ---------------------
    def build(self, node: Node, nxt: int) -> int:
        """Add ``node`` so that it continues to ``nxt``; return its entry node."""
        tag = node[0]
        if tag == "sym":
            return self.add(SYM, sym=node[1], out=[nxt])
        if tag == "cat":
            entry = nxt
            for part in reversed(node[1]):
                entry = self.build(part, entry)
            return entry
        if tag == "alt":
            return self.add(EPS, out=[self.build(alt, nxt) for alt in node[1]])
        if tag == "rep":
            _, sub, lo, hi = node
            if hi is None:
                loop = self.add(EPS)
                self.out[loop] = [self.build(sub, loop), nxt]
                tail = loop
            else:
                tail = nxt
                for _ in range(hi - lo):
                    tail = self.add(EPS, out=[self.build(sub, tail), nxt])
            for _ in range(lo):
                tail = self.build(sub, tail)
            return tail
        if tag == "assert":
            alts = node[1]
            entries = [self.add(ASSERT, look=alt, out=[nxt]) for alt in alts]
            return entries[0] if len(entries) == 1 else self.add(EPS, out=entries)
        if tag == "cwdjoin":
            return self._cwdjoin(node, nxt)
        raise ValueError(f"unknown AST node {tag!r}")  # pragma: no cover

    def _cwdjoin(self, node: Node, nxt: int) -> int:
        _, exact, classes = node
        entry = self.build(exact, nxt)
        ways = [entry]
        for symbols, word in classes:
            jump = self.add(JUMP)
            self.jump[jump] = (entry, word)
            rel = self.add(ASSERT, look=(None, (ALL_BYTES & ~BIT_NUL & ~BIT_SLASH,)), out=[jump])
            read = self.add(SYM, sym=symbols, out=[rel])
            self.cwd_syms |= symbols
            ways.append(self.add(ASSERT, look=(BIT_NUL, ()), out=[read]))
        return self.add(EPS, out=ways)

    def add_condition(self, node: Node, bit: int) -> int:
        """Add one condition ending in a MATCH node for ``bit``; return its entry."""
        self._budget = MAX_NFA_NODES
        match = self.add(MATCH, bit=bit)
        entry = self.build(node, match)
        self._budget = 1 << 62
        return entry


def group_nfa(arg_conditions: Sequence[tuple[Node, int]],
              cmd_conditions: Sequence[tuple[Node, int]]) -> Nfa:
    """The NFA of one group: the scanner plus its conditions, each ``(ast, bit)``.

    Raises:
        NfaTooLarge: one condition expands past ``MAX_NFA_NODES`` nodes.
    """
    nfa = Nfa()
    nfa._budget = 1 << 62
    arg_entries = [nfa.add_condition(ast, bit) for ast, bit in arg_conditions]
    cmd_entries = [nfa.add_condition(ast, bit) for ast, bit in cmd_conditions]
    p0 = nfa.add(EPS)
    if arg_entries:
        p1 = nfa.add(EPS)
        stay1 = nfa.add(SYM, sym=ALL_BYTES, out=[p1])
        nfa.out[p1] = [stay1, *cmd_entries, *arg_entries]
        stay0 = nfa.add(SYM, sym=ALL_BYTES & ~BIT_NUL, out=[p0])
        to1 = nfa.add(SYM, sym=BIT_NUL, out=[p1])
        nfa.out[p0] = [stay0, to1, *cmd_entries]
    else:
        stay0 = nfa.add(SYM, sym=ALL_BYTES, out=[p0])
        nfa.out[p0] = [stay0, *cmd_entries]
    nfa.start = nfa.add(SYM, sym=BIT_BOS, out=[p0])
    return nfa
