"""Relative path arguments joined to the working directory, by cwd classes.

A ``path:`` matcher's paths and their ancestors are its *anchors* (``/``, ``/etc``,
``/etc/shadow``, ...).  The policy's anchors, each at ``EDR_CWD_LEVELS`` levels, are its cwd
classes: the working directory *is* the anchor (level 0), a child of it (1) or a grandchild
(2) — an unknown one: ``..`` takes it back.  The nearest hit wins (``/etc/ssh`` is class
(``/etc/ssh``, 0), not (``/etc``, 1)).  The kernel finds the cwd's class before the scan (the
agent maps each anchor directory's inode to its classes) and feeds the class's symbol after
every NUL; a path condition reads it as "the argument is relative: read it as if the class's
directory came before it" (`word`, a left quotient of the absolute grammar taken in the
automaton: `edrfleet.policy.regex.nfa`).  An unknown child is written as a name no path has
(`UNKNOWN`).

Not joined, and why: a cwd more than 2 directories below its nearest anchor (class 0: no
symbol; a relative argument then needs 3 ``..`` to reach a path, which fails closed), so a
relative argument deep below a ``below: true`` path is not matched; ``/proc/self/cwd/...``
and ``/proc/<pid>/cwd/...`` are not joined but fail closed in block and log rules
(`paths._proc_cwd`): which process's cwd a ``<pid>`` means is unknown to the automaton.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from edrfleet.policy.limits import EDR_CWD_CLASSES, EDR_CWD_LEVELS, EDR_SYM_BOS, EDR_SYM_CWD
from edrfleet.policy.regex.dfa import build_dfa
from edrfleet.policy.spell.paths import exact_ast
from edrfleet.policy.spell.spec import PathSpec

UNKNOWN = b"\x01"  # the name of an unknown directory: no path component is this byte alone
CwdClass = tuple[str, int]  # (anchor directory, level)


def anchors(specs: Iterable[PathSpec]) -> list[str]:
    """Every path of the specs and every directory above one, ``/`` included, sorted."""
    found = {"/"}
    for spec in specs:
        for path in spec.paths:
            comps = [c for c in path.split("/") if c]
            found.update("/" + "/".join(comps[:n]) for n in range(1, len(comps) + 1))
    return sorted(found)


def cwd_classes(specs: Iterable[PathSpec]) -> list[CwdClass]:
    """The policy's classes in order: class ``k`` (from 1) is ``classes[k - 1]``.  More than
    the kernel takes (``EDR_CWD_CLASSES``): level 0 only, then the shallowest anchors (a
    deeper cwd is then joined from a class above it, or not at all: docs/policy.md)."""
    found = anchors(specs)
    every = [(a, level) for a in found for level in range(EDR_CWD_LEVELS)]
    if len(every) <= EDR_CWD_CLASSES:
        return every
    shallow = sorted(found, key=lambda a: (a.count("/") - (a == "/"), a))
    return sorted((a, 0) for a in shallow[:EDR_CWD_CLASSES])


def word(anchor: str, level: int) -> bytes:
    """What a relative argument is read after: the class's directory, ``/`` ended."""
    comps = [c.encode() for c in anchor.split("/") if c] + [UNKNOWN] * level
    return b"/" + b"".join(c + b"/" for c in comps)


def class_words(classes: Sequence[CwdClass]) -> tuple[tuple[int, bytes], ...]:
    """(symbol, word) of each class."""
    return tuple((EDR_SYM_CWD + k, word(a, level)) for k, (a, level) in enumerate(classes))


def joined_words(spec: PathSpec, words: Sequence[tuple[int, bytes]]
                 ) -> tuple[tuple[int, bytes], ...]:
    """The policy's cwd classes (`class_words`) merged where this spec cannot tell them
    apart (`merged_words`), judged by the spec's absolute grammar alone as one automaton."""
    if not words:
        return ()
    alone = build_dfa([(exact_ast(spec), 0)], [], max_states=1 << 20)

    def run(symbols: Sequence[int], state: int) -> int:
        for sym in symbols:
            state = alone.trans[state * alone.nclasses + alone.classes[sym]]
        return state

    head = run([EDR_SYM_BOS, ord("x"), 0], alone.start)
    return merged_words(words, lambda w: run(list(w), head))


def merged_words(words: Sequence[tuple[int, bytes]],
                 state_after: Callable[[bytes], int]) -> tuple[tuple[int, bytes], ...]:
    """(symbol bitset, word) for `paths.path_ast`: the classes whose words lead one path
    condition's own minimal automaton (``state_after``: its state after an argument start
    and the word) to the same state are one for that condition — their relative arguments
    name its paths alike (``/usr/bin/x`` and ``/usr/sbin/x`` for ``[/usr/bin, /usr/sbin]``).
    One jump per state, not per class, keeps the group's subset construction small."""
    by_state: dict[int, list[int]] = {}
    first: dict[int, bytes] = {}
    for symbol, w in words:
        state = state_after(w)
        by_state.setdefault(state, []).append(symbol)
        first.setdefault(state, w)
    return tuple((sum(1 << s for s in syms), first[state]) for state, syms in by_state.items())


def _comps(path: bytes) -> list[bytes]:
    return [c for c in path.split(b"/") if c]


def nearest_class(classes: Sequence[CwdClass], cwd: bytes,
                  same: Callable[[bytes, str], bool] | None = None) -> int:
    """The class id (0: none) of a canonical cwd: the nearest of the cwd, its parent and its
    grandparent that is an anchor.  ``same(directory, anchor)`` says whether they are one
    directory (the kernel compares inodes; default: equal paths)."""
    index = {c: k + 1 for k, c in enumerate(classes)}
    comps = _comps(cwd)
    for level in range(min(EDR_CWD_LEVELS, len(comps) + 1)):
        here = b"/" + b"/".join(comps[:len(comps) - level])
        for (anchor, lvl), k in index.items():
            if lvl == level and (same(here, anchor) if same else here == anchor.encode()):
                return k
    return 0


def canonical_anchor(anchor: str) -> bool:
    """Only a directory the kernel can be in counts: not one reached through a symlink
    (``/bin`` -> ``usr/bin`` on merged-/usr systems is the cwd ``/usr/bin``)."""
    return os.path.realpath(anchor) == anchor


def class_by_inode(classes: Sequence[CwdClass], cwd: str | bytes | None,
                   identity: Callable[[bytes], object]) -> tuple[int, bytes | None]:
    """(class id, canonical cwd) as the kernel finds the class (bpf/context.c): directories
    compared by ``identity`` (st_dev, st_ino), anchors reached through a symlink skipped.
    (0, None) when the cwd is unknown or has no class."""
    if cwd is None or not classes:
        return 0, None
    real = os.path.realpath(cwd.encode() if isinstance(cwd, str) else cwd)
    known = {a: identity(a.encode()) for a, _ in classes if canonical_anchor(a)}

    def same(here: bytes, anchor: str) -> bool:
        got = known.get(anchor)
        return got is not None and identity(here) == got

    k = nearest_class(classes, real, same)
    return k, (real if k else None)


# --- the oracle: join, normalize, compare ---------------------------------------------------

def joined_holds(spec: PathSpec, arg: bytes, cwd: bytes | None) -> bool:
    """A relative ``arg`` run from the canonical ``cwd`` (None: the cwd has no class) names
    one of the spec's paths (or one below, with ``below``): joined and normalized by
    components, as the kernel would resolve it without symlinks.  (3 or more ``..`` fail
    closed in `paths.path_holds` instead.)"""
    if cwd is None or not arg or arg.startswith(b"/"):
        return False
    out: list[bytes] = []
    for c in _comps(cwd) + _comps(arg):
        if c == b"..":
            if out:
                out.pop()
        elif c != b".":
            out.append(c)
    for path in spec.paths:
        want = _comps(path.encode())
        if out == want or (spec.below and out[:len(want)] == want and len(out) > len(want)):
            return True
    return False
