"""``path``: every lexical spelling of an absolute path, as the kernel would resolve it if no
component were a symlink.

Accepted around the path's own components: repeated ``/``, a trailing ``/``, ``.``
components, ``..`` at the root (it stays there), detours ``NAME/..`` nested up to
`DETOUR_DEPTH` deep (``/tmp/../etc``, ``/etc/x/y/../../``, ``/a/b/../../etc``), and
``/proc/self/root``, ``/proc/thread-self/root`` or ``/proc/<pid>/root`` where the walk is
back at the root (``/proc/self/root/etc``; a process's root is ``/`` unless it is chrooted).

The language of "normalizes to P" is not regular for unbounded ``..`` nesting (it counts), so
the automaton places detours up to `DETOUR_DEPTH` deep and fails closed beyond: with
``deep`` (block and log rules), any argument with at least `DEEP_DOTDOT` ``..`` components
(``/a/b/c/../../../etc``, ``../../../etc``) is taken to name the path, whatever it resolves
to — its target is unknown, so it is treated as naming the root, which holds every path.
A symlink inside the argument (``/tmp/l/..`` with ``l -> /usr/lib``) cannot be resolved here;
docs/policy.md says how the default policy covers both.  Relative arguments are joined to the
working directory by cwd classes (`edrfleet.policy.spell.cwd`: ``classes`` of `path_ast`);
``/proc/self/cwd/...``, ``/proc/thread-self/cwd/...`` and ``/proc/<pid>/cwd/...`` are not
joined (the automaton does not know whose cwd a pid means) and, with ``deep``, fail closed:
they are taken to name the path, like 3 ``..``.
"""

from __future__ import annotations

import functools

from edrfleet.policy.regex.parse import EMPTY, Node
from edrfleet.policy.spell.ast import (
    ARG_END,
    ARG_START,
    BYTES,
    alt,
    bits,
    cat,
    lit,
    opt,
    plus,
    star,
    sym,
)
from edrfleet.policy.spell.spec import PathSpec

DETOUR_DEPTH = 2  # 3 made the rm group's automaton pass the state cap
DEEP_DOTDOT = DETOUR_DEPTH + 1  # this many ``..`` components: the target is taken as unknown
SLASH = bits(b"/")
DOT = bits(b".")
PART = BYTES & ~SLASH  # a byte of one component
DIGITS = bits(b"0123456789")
PID_WORDS = (b"self", b"thread-self")
LOOK_SLASH: Node = ("assert", ((None, (SLASH,)),))


def _comp(word: Node) -> Node:
    return cat(plus(sym(SLASH)), word)


def _name() -> Node:
    """One component that is neither ``.`` nor ``..``."""
    rest = star(sym(PART))
    return alt(cat(sym(PART & ~DOT), rest), cat(lit(b"."), sym(PART & ~DOT), rest),
               cat(lit(b".."), plus(sym(PART))))


@functools.cache
def _detours(depth: int, at_root: bool) -> Node:
    """Component sequences that come back where they started (D_depth; DR at the root)."""
    steps = [_comp(lit(b"."))]
    if at_root:
        steps.append(_comp(lit(b"..")))
    if depth > 0:
        steps.append(cat(_comp(_name()), _detours(depth - 1, False), _comp(lit(b".."))))
    return star(alt(*steps))


def _proc_root() -> Node:
    pid = alt(lit(PID_WORDS[0]), lit(PID_WORDS[1]), plus(sym(DIGITS)))
    return cat(_comp(lit(b"proc")), _comp(pid), _comp(lit(b"root")))


def _below() -> Node:
    deeper = alt(_comp(_name()), _comp(lit(b".")),
                 cat(_comp(_name()), _detours(DETOUR_DEPTH - 1, False), _comp(lit(b".."))))
    return cat(_comp(_name()), star(deeper))


def _trie(paths: tuple[str, ...]) -> dict[bytes, dict]:
    root: dict[bytes, dict] = {}
    for path in paths:
        node = root
        for comp in (c for c in path.encode().split(b"/") if c):
            node = node.setdefault(comp, {})
        node[b""] = {}  # a target ends here
    return root


def _from(node: dict[bytes, dict], below: bool) -> Node:
    """The spellings of the rest of the paths below one trie node, one shared automaton for
    all paths (separate copies per path made the subset construction explode)."""
    ways: list[Node] = []
    for comp, child in sorted(node.items()):
        if comp:
            ways.append(cat(_comp(lit(comp)), _detours(DETOUR_DEPTH, False), _from(child, below)))
        else:
            ways.append(opt(_below()) if below else EMPTY)
    return alt(*ways)


def _deep() -> Node:
    """One argument, absolute or relative, with at least `DEEP_DOTDOT` ``..`` components."""
    anything = star(sym(BYTES))
    lead = opt(cat(anything, sym(SLASH)))  # empty, or ends where a component starts
    more = cat(sym(SLASH), lead, lit(b".."))
    tail = opt(cat(sym(SLASH), anything))  # a ``..`` ends at '/' or at the argument's end
    return cat(ARG_START, lead, lit(b".."), *([more] * (DEEP_DOTDOT - 1)), tail, ARG_END)


def _proc_cwd() -> Node:
    """``/proc/self/cwd``, ``/proc/thread-self/cwd`` or ``/proc/<pid>/cwd``, alone or with
    anything after a ``/`` (``.``/``..`` at the root before it)."""
    pid = alt(lit(PID_WORDS[0]), lit(PID_WORDS[1]), plus(sym(DIGITS)))
    return cat(ARG_START, LOOK_SLASH, _detours(0, True), _comp(lit(b"proc")), _comp(pid),
               _comp(lit(b"cwd")), opt(cat(sym(SLASH), star(sym(BYTES)))), ARG_END)


def exact_ast(spec: PathSpec) -> Node:
    """The absolute spellings alone (`path_ast` without what fails closed or joins)."""
    root = _detours(DETOUR_DEPTH, True)
    head = cat(star(cat(root, _proc_root())), root)
    return cat(ARG_START, LOOK_SLASH, head, _from(_trie(spec.paths), spec.below),
               star(sym(SLASH)), ARG_END)


def path_ast(spec: PathSpec, classes: tuple[tuple[int, bytes], ...] = ()) -> Node:
    """One argument that is one of the paths (or below one, with ``below``), spelled any way
    the module docstring lists; with ``classes`` (`cwd.merged_words`: cwd-class symbol sets
    and the word each stands for), relative arguments after a cwd-class symbol too."""
    exact = exact_ast(spec)
    if classes:
        exact = ("cwdjoin", exact, classes)
    return alt(exact, _deep(), _proc_cwd()) if spec.deep else exact


# --- the oracle: the same grammar read over components, without automata -----------------

def _is_name(c: bytes) -> bool:
    return c not in (b".", b"..")


def _ends(comps: tuple[bytes, ...], i: int, depth: int, at_root: bool) -> set[int]:
    """Indices j such that comps[i:j] is a sequence of detours (see `_detours`)."""
    out = {i}
    todo = [i]
    while todo:
        k = todo.pop()
        nxt: set[int] = set()
        if k < len(comps) and (comps[k] == b"." or (at_root and comps[k] == b"..")):
            nxt.add(k + 1)
        if depth > 0 and k < len(comps) and _is_name(comps[k]):
            for j in _ends(comps, k + 1, depth - 1, False):
                if j < len(comps) and comps[j] == b"..":
                    nxt.add(j + 1)
        for j in nxt - out:
            out.add(j)
            todo.append(j)
    return out


def _root_ends(comps: tuple[bytes, ...]) -> set[int]:
    """After any number of (detours, /proc/<pid>/root) and detours."""
    seen: set[int] = set()
    todo = [0]
    while todo:
        i = todo.pop()
        for j in _ends(comps, i, DETOUR_DEPTH, True):
            if j in seen:
                continue
            seen.add(j)
            pid = comps[j + 1] if j + 1 < len(comps) else b""
            if (comps[j:j + 1] == (b"proc",) and j + 2 < len(comps) and comps[j + 2] == b"root"
                    and (pid in PID_WORDS or pid.isdigit())):
                todo.append(j + 3)
    return seen


def _below_ok(comps: tuple[bytes, ...], i: int) -> bool:
    """comps[i:] is a name followed by names, ``.`` and detours (`_one_path` with below)."""
    if i >= len(comps) or not _is_name(comps[i]):
        return False
    reach = {i + 1}
    todo = [i + 1]
    while todo:
        k = todo.pop()
        nxt: set[int] = set()
        if k < len(comps) and (comps[k] == b"." or _is_name(comps[k])):
            nxt.add(k + 1)
        if k < len(comps) and _is_name(comps[k]):
            nxt |= {j + 1 for j in _ends(comps, k + 1, DETOUR_DEPTH - 1, False)
                    if j < len(comps) and comps[j] == b".."}
        for j in nxt - reach:
            reach.add(j)
            todo.append(j)
    return len(comps) in reach


def _is_proc_cwd(arg: bytes) -> bool:
    if not arg.startswith(b"/"):
        return False
    comps = [c for c in arg.split(b"/") if c]
    while comps and comps[0] in (b".", b".."):
        comps.pop(0)
    return (len(comps) >= 3 and comps[0] == b"proc" and comps[2] == b"cwd"
            and (comps[1] in PID_WORDS or comps[1].isdigit()))


def path_holds(spec: PathSpec, arg: bytes) -> bool:
    """The absolute grammar (and, with ``deep``, what fails closed) on one argument."""
    if spec.deep and (arg.split(b"/").count(b"..") >= DEEP_DOTDOT or _is_proc_cwd(arg)):
        return True
    if not arg.startswith(b"/"):
        return False
    comps = tuple(c for c in arg.split(b"/") if c)
    start = _root_ends(comps)  # the same for every path
    for path in spec.paths:
        want = [c for c in path.encode().split(b"/") if c]
        ends = start
        for name in want:
            ends = {j for i in ends if comps[i:i + 1] == (name,)
                    for j in _ends(comps, i + 1, DETOUR_DEPTH, False)}
        if len(comps) in ends or (spec.below and any(_below_ok(comps, i) for i in ends)):
            return True
    return False

