"""One deterministic automaton per group: subset construction, minimization, byte classes.

Input: the group's conditions as ASTs (``regex_parse``) with their condition bit.  Output: a
`Dfa` whose tables are exactly the bundle's ``dfas[i]`` entry (docs/policy-bundle.md): the
kernel feeds ``BOS``, the argv joined by NUL, ``EOS``; after every symbol it ORs the mask of
the state it entered.

How lookahead works without lookahead: an NFA *item* is ``(node, ahead)`` where ``ahead`` is a
tuple of class sets the next symbols must belong to (``$`` is "next is EOS, or next is a newline
and then EOS").  An item that reaches its MATCH node with ``ahead`` still pending stays in the
state and sets its bit one or two symbols later, once the stream has shown those symbols; since
the stream always ends in EOS, every pending match is settled.  Lookbehind (``^``, ``\\b``) only
needs the symbol just read, which is known when the epsilon closure is computed.

Cwd-class symbols (``EDR_SYM_CWD`` on, fed after every NUL when the working directory is in
a class: `edrfleet.policy.spell.cwd`) are *transparent* to every item that does not read one:
such an item stays where it is, with the context it had (its lookbehind saw the NUL), so
``^``, ARG_START and the other conditions read an argument the same with or without the
symbol in front.  Only the items of a ``cwdjoin`` node move on them (`Nfa._cwdjoin`).  A
class symbol's state keeps the condition bits of the state before it.

Symbols are grouped into classes twice: first the coarsest partition refining every set the NFA
tests (so the construction loops over classes, not 258 symbols), then, after minimization,
classes whose columns are identical are merged (the coarsest partition for the final table).
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edrfleet.errors import InputError
from edrfleet.policy.limits import COND_BITS, EDR_SYM_CWD, MAX_DFA_STATES
from edrfleet.policy.regex.nfa import ASSERT, EPS, JUMP, MATCH, SYM, Nfa, group_nfa
from edrfleet.policy.regex.parse import BIT_NUL, NSYM, Node

ALL_SYMS = (1 << NSYM) - 1
ALL_CLASSES = (1 << 1024) - 1  # "every class" for a pending match (classes < 1024)
LOW_MASK = (1 << COND_BITS) - 1  # item ids reserved for condition bits


class DfaTooLarge(InputError, ValueError):
    """The subset construction passed ``limit`` states."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the automaton needs more than {limit} states")


@dataclass
class Dfa:
    """Tables of one group automaton, in the bundle's layout."""

    nclasses: int
    classes: list[int]  # 258 entries: symbol -> class
    start: int
    trans: list[int]  # nstates * nclasses, row-major
    accept: list[tuple[int, int]] = field(default_factory=list)  # (state, mask), by state

    @property
    def nstates(self) -> int:
        return len(self.trans) // self.nclasses

    def to_json(self) -> dict[str, Any]:
        return {
            "nclasses": self.nclasses,
            "classes": list(self.classes),
            "start": self.start,
            "trans": list(self.trans),
            "accept": [[s, m] for s, m in self.accept],
        }


def symbol_partition(sets: set[int], nsym: int = NSYM) -> list[int]:
    """Coarsest partition of the ``nsym`` symbols that refines every set; blocks by lowest
    symbol."""
    universe = (1 << nsym) - 1
    blocks = [universe]
    for x in sorted(sets):
        x &= universe
        if not x or x == universe:
            continue
        split: list[int] = []
        for b in blocks:
            inside = b & x
            if inside and inside != b:
                split.append(inside)
                split.append(b & ~x)
            else:
                split.append(b)
        blocks = split
    blocks.sort(key=lambda b: (b & -b).bit_length())
    return blocks


def _iter_bits(bits: int):
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low


class _Builder:
    """Subset construction over classes, with memoized closures and moves.

    A DFA state is a Python int used as a bitset of item ids.  Item ids below ``COND_BITS``
    are reserved: id ``b`` means "condition bit b was set by the symbol just read", so the
    accept mask of a state is simply ``bits & LOW_MASK`` and needs no second accumulator.
    """

    def __init__(self, nfa: Nfa, max_states: int, nsym: int = NSYM) -> None:
        self.nfa = nfa
        self.max_states = max_states
        cwd_all = ((1 << nsym) - 1) & ~((1 << EDR_SYM_CWD) - 1)
        sets = nfa.sets() | ({cwd_all} if cwd_all else set())
        self.blocks = symbol_partition(sets, nsym)
        self.ncls = len(self.blocks)
        # classes of cwd symbols only: transparent to the items that do not read them
        self.cwd_cls = [k for k, b in enumerate(self.blocks) if b and not b & ~cwd_all]
        self.cwd_items = 0  # items that read some cwd symbol (they move, the rest stay)
        self._cls_memo: dict[int, int] = {}
        self.nul_cls = self.to_cls(BIT_NUL).bit_length() - 1
        self.sym_cls = [self.to_cls(s) if k == SYM else 0 for k, s in zip(nfa.kind, nfa.sym,
                                                                              strict=True)]
        self.look_cls: list[Any] = []
        for k, look in zip(nfa.kind, nfa.look, strict=True):
            if k == ASSERT and look is not None:
                prev, ahead = look
                self.look_cls.append((None if prev is None else self.to_cls(prev),
                                      tuple(self.to_cls(a) for a in ahead)))
            else:
                self.look_cls.append(None)
        # classes that every lookbehind treats alike share their closures
        prev_sets = sorted({lc[0] for lc in self.look_cls if lc is not None and lc[0] is not None})
        sigs: dict[tuple[int, ...], int] = {}
        self.prev_group = [sigs.setdefault(tuple((p >> c) & 1 for p in prev_sets), len(sigs))
                           for c in range(self.ncls)]
        self.items: dict[tuple[int, tuple[int, ...]], int] = {}
        self.item_list: list[tuple[int, tuple[int, ...]]] = [(-1, ())] * COND_BITS
        self.moves: list[list[tuple[int, int]] | None] = [[] for _ in range(COND_BITS)]
        self.closures: dict[tuple[int, tuple[int, ...], int], int] = {}
        self.quotients: dict[tuple[int, bytes], int] = {}
        self.jumps: dict[tuple[int, tuple[int, ...]], int] = {}

    def to_cls(self, symbols: int) -> int:
        got = self._cls_memo.get(symbols)
        if got is None:
            got = 0
            for k, block in enumerate(self.blocks):
                if block & symbols:
                    got |= 1 << k
            self._cls_memo[symbols] = got
        return got

    def item(self, node: int, ahead: tuple[int, ...]) -> int:
        key = (node, ahead)
        got = self.items.get(key)
        if got is None:
            got = len(self.item_list)
            self.items[key] = got
            self.item_list.append(key)
            self.moves.append(None)
            if self.nfa.kind[node] == SYM and self.nfa.sym[node] >> EDR_SYM_CWD:
                self.cwd_items |= 1 << got
        return got

    def quotient(self, entry: int, word: bytes) -> int:
        """The items (no condition bits) of the condition entered at ``entry`` after an
        argument start and ``word``."""
        key = (entry, word)
        got = self.quotients.get(key)
        if got is None:
            bits = self.closure(entry, (), self.nul_cls) & ~LOW_MASK
            for b in word:
                k = self.to_cls(1 << b).bit_length() - 1
                nxt = 0
                for it in _iter_bits(bits):
                    for c, moved in self.item_moves(it):
                        if c == k:
                            nxt |= moved
                bits = nxt & ~LOW_MASK
            got = self.quotients[key] = bits
        return got

    def jump(self, node: int, ahead: tuple[int, ...]) -> int:
        """A JUMP node's items, each with the lookahead ``ahead`` pending as well."""
        key = (node, ahead)
        got = self.jumps.get(key)
        if got is None:
            got = 0
            for it in _iter_bits(self.quotient(*self.nfa.jump[node])):
                n, a = self.item_list[it]
                merged = _merge(a, ahead) if ahead else a
                if merged is not None:
                    got |= 1 << self.item(n, merged)
            self.jumps[key] = got
        return got

    def closure(self, node: int, ahead: tuple[int, ...], prev: int) -> int:
        """Items reachable without reading, right after reading class ``prev``."""
        key = (node, ahead, self.prev_group[prev])
        got = self.closures.get(key)
        if got is not None:
            return got
        kind, out, look_cls, bit = self.nfa.kind, self.nfa.out, self.look_cls, self.nfa.bit
        bits = 0
        stack = [(node, ahead)]
        seen: set[tuple[int, tuple[int, ...]]] = set()
        while stack:
            pair = stack.pop()
            if pair in seen:
                continue
            seen.add(pair)
            n, a = pair
            k = kind[n]
            if k == SYM:
                bits |= 1 << self.item(n, a)
            elif k == EPS:
                stack.extend((m, a) for m in out[n])
            elif k == ASSERT:
                p, more = look_cls[n]
                if p is not None and not (p >> prev) & 1:
                    continue
                if more:
                    merged = _merge(a, more)
                    if merged is None:
                        continue
                    a = merged
                stack.append((out[n][0], a))
            elif k == MATCH:
                bits |= 1 << (self.item(n, a) if a else bit[n])
            elif k == JUMP:
                bits |= self.jump(n, a)
        self.closures[key] = bits
        return bits

    def item_moves(self, it: int) -> list[tuple[int, int]]:
        got = self.moves[it]
        if got is not None:
            return got
        node, ahead = self.item_list[it]
        kind = self.nfa.kind[node]
        classes = self.sym_cls[node] if kind == SYM else ALL_CLASSES
        if ahead:
            classes &= ahead[0]
        rest = ahead[1:]
        got = []
        for c in _iter_bits(classes):
            if kind == SYM:
                bits = self.closure(self.nfa.out[node][0], rest, c)
            elif rest:  # pending MATCH, more lookahead to check
                bits = 1 << self.item(node, rest)
            else:  # pending MATCH settled by this symbol
                bits = 1 << self.nfa.bit[node]
            if bits:
                got.append((c, bits))
        self.moves[it] = got
        return got

    def run(self) -> tuple[list[list[int]], list[int]]:
        ncls = self.ncls
        start = 1 << self.item(self.nfa.start, ())
        states = [start]
        index = {start: 0}
        rows: list[list[int]] = []
        item_moves = self.item_moves
        while len(rows) < len(states):
            acc = [0] * ncls
            here = states[len(rows)] & ~LOW_MASK
            for it in _iter_bits(here):
                for c, bits in item_moves(it):
                    acc[c] |= bits
            if self.cwd_cls:
                # the bits the state set stay set: the kernel feeds NUL and the class symbol
                # as one step (agent/maps.py), which ORs only the second state's mask
                stay = states[len(rows)] & ~self.cwd_items
                for c in self.cwd_cls:
                    acc[c] |= stay
            row = list(map(index.get, acc))
            if None in row:
                for c, key in enumerate(acc):
                    if row[c] is None:
                        target = index.get(key)
                        if target is None:
                            target = len(states)
                            if target >= self.max_states:
                                raise DfaTooLarge(self.max_states)
                            index[key] = target
                            states.append(key)
                        row[c] = target
            rows.append(row)  # type: ignore[arg-type]
        return rows, [s & LOW_MASK for s in states]


def _merge(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(a) < len(b):
        a, b = b, a
    out = list(a)
    for i, x in enumerate(b):
        out[i] &= x
        if not out[i]:
            return None
    return tuple(out)


def minimize(rows: list[list[int]], masks: list[int], ncls: int,
             moore_rounds: int = 24) -> tuple[list[int], int]:
    """Coarsest partition of the states compatible with masks and transitions.

    A few rounds of Moore's refinement (fast in Python: tuples built by ``map``) settle the
    usual automata; if it has not converged by then, Hopcroft's algorithm finishes from the
    current partition (every Moore partition is coarser than the result, so it is a valid
    start).  Returns (block of each state, number of blocks).
    """
    ids: dict[Any, int] = {}
    part = [ids.setdefault(m, len(ids)) for m in masks]
    count = len(ids)
    flat = [t for row in rows for t in row]
    width = 4 * ncls
    for _ in range(moore_rounds):
        succ = array("I", map(part.__getitem__, flat)).tobytes()
        sigs: dict[tuple[int, bytes], int] = {}
        new = [sigs.setdefault((p, succ[i:i + width]), len(sigs))
               for p, i in zip(part, range(0, len(succ), width), strict=True)]
        if len(sigs) == count:
            return part, count
        part, count = new, len(sigs)
    return _hopcroft(rows, part, count, ncls)


def _hopcroft(rows: list[list[int]], part: list[int], count: int,
              ncls: int) -> tuple[list[int], int]:
    n = len(rows)
    inv: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(ncls)]
    for s, row in enumerate(rows):
        for c, t in enumerate(row):
            inv[c][t].append(s)
    blocks: list[set[int]] = [set() for _ in range(count)]
    for s in range(n):
        blocks[part[s]].add(s)
    block_of = list(part)
    work = set(range(count))
    while work:
        a = work.pop()
        splitter = list(blocks[a])
        for c in range(ncls):
            inv_c = inv[c]
            touched: dict[int, list[int]] = {}
            for t in splitter:
                for s in inv_c.get(t, ()):
                    touched.setdefault(block_of[s], []).append(s)
            for b, members in touched.items():
                if len(members) == len(blocks[b]):
                    continue
                new = len(blocks)
                moved = set(members)
                blocks.append(moved)
                blocks[b] -= moved
                for s in moved:
                    block_of[s] = new
                if b in work or len(moved) <= len(blocks[b]):
                    work.add(new)
                else:
                    work.add(b)
    return block_of, len(blocks)


def finish(rows: list[list[int]], masks: list[int], blocks: list[int], nsym: int = NSYM) -> Dfa:
    """Minimize, merge identical class columns, number states canonically (BFS from 0)."""
    ncls = len(blocks)
    block_of, nblocks = minimize(rows, masks, ncls)
    q_rows: list[list[int] | None] = [None] * nblocks
    q_mask = [0] * nblocks
    for s, row in enumerate(rows):
        b = block_of[s]
        if q_rows[b] is None:
            q_rows[b] = [block_of[t] for t in row]
            q_mask[b] = masks[s]
    # merge classes with identical columns (order: lowest symbol first)
    col_id: dict[tuple[int, ...], int] = {}
    class_map = []
    keep = []
    for c, col in enumerate(zip(*q_rows, strict=True)):  # type: ignore[misc]
        got = col_id.get(col)
        if got is None:
            got = col_id[col] = len(keep)
            keep.append(c)
        class_map.append(got)
    # canonical numbering: BFS from the start state, classes in order
    start = block_of[0]
    order = {start: 0}
    queue = [start]
    for b in queue:
        for c in keep:
            t = q_rows[b][c]  # type: ignore[index]
            if t not in order:
                order[t] = len(order)
                queue.append(t)
    trans: list[int] = []
    accept = []
    for b in queue:
        row = q_rows[b]
        trans.extend(order[row[c]] for c in keep)  # type: ignore[index]
        if q_mask[b]:
            accept.append((order[b], q_mask[b]))
    classes = [0] * nsym
    for c, block in enumerate(blocks):
        for sym in _iter_bits(block):
            classes[sym] = class_map[c]
    return Dfa(nclasses=len(keep), classes=classes, start=0, trans=trans, accept=accept)


PREMIN_FACTOR = 4  # subset-construction states allowed per final state of the cap
# with relative path arguments joined: a class symbol's jump lands on items of the absolute
# grammar that other spellings reach through other items (``/etc/x/..`` vs ``/``), which only
# minimization merges
PREMIN_FACTOR_CWD = 8


def build_dfa(
    arg_conditions: Sequence[tuple[Node, int]],
    cmd_conditions: Sequence[tuple[Node, int]],
    *,
    max_states: int = MAX_DFA_STATES,
    cwd_classes: int = 0,
) -> Dfa:
    """Compile conditions ``(ast, bit)`` into one search DFA.

    ``arg_conditions`` hold in one argv[i] (i >= 1); ``cmd_conditions`` over the whole stream.
    ``cwd_classes``: the policy's cwd classes; a DFA whose conditions read cwd-class symbols
    gets a classes table of ``EDR_SYM_CWD + cwd_classes`` entries, the others of ``NSYM``.

    Raises:
        DfaTooLarge: more than ``max_states`` states after minimization, or more than
            ``PREMIN_FACTOR`` times that before (path matchers make many subsets that
            minimization merges).
        NfaTooLarge: one condition expands to too many NFA nodes.
    """
    nfa = group_nfa(arg_conditions, cmd_conditions)
    nsym = EDR_SYM_CWD + cwd_classes if nfa.cwd_syms else NSYM
    factor = PREMIN_FACTOR_CWD if nfa.cwd_syms else PREMIN_FACTOR
    builder = _Builder(nfa, max_states * factor, nsym)
    rows, masks = builder.run()
    dfa = finish(rows, masks, builder.blocks, nsym)
    if len(dfa.trans) > max_states * dfa.nclasses:
        raise DfaTooLarge(max_states)
    return dfa
