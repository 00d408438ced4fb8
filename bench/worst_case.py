"""The most expensive exec a compiled policy allows: 4 KiB of argv through the most automata.

The kernel's cost per exec is one table step per argv byte per candidate group with a DFA
(at most EDR_CAND_MAX groups), plus cache misses on the rows it touches.  So the worst exec
names the executable with the most DFA groups (their largest automata breaking ties), and
its argv (4 096 bytes, NULs included) walks the largest of them through as many distinct
states as it can: from where it is, the shortest byte path to the nearest state not yet
visited, again and again.  The exec must still be allowed (a block would measure the kill
instead), so the walk never enters a state that sets a condition bit, and a walk the
simulator says matches anyway (through another group) is retried with another seed.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edrfleet.policy import simulate  # noqa: E402
from edrfleet.policy.identity import stream_symbols  # noqa: E402

ARGV_BYTES = 4096
BYTES = [0, *range(0x20, 0x7F)]  # printable, and NUL: the walk may start a new argument


@dataclass
class WorstExec:
    name: str  # executable basename to copy /bin/true to
    args: list[str]  # the arguments (argv block of ARGV_BYTES with the copy's path)
    groups: int  # candidate groups with a DFA for this exec
    states: int  # states of the automaton walked
    visited: int  # distinct states the argument visits
    action: str  # the simulator's decision (allow)


def _states(dfa: dict) -> int:
    return len(dfa["trans"]) // dfa["nclasses"]


def heaviest_name(bundle: dict) -> tuple[str, list[int]]:
    """The executable name whose exec runs the most DFAs (then the biggest); its DFA list."""
    exes = bundle["executables"]
    groups = bundle["groups"]
    best: tuple[tuple[int, int], str, list[int]] | None = None
    for name, glist in sorted(exes["names"].items()):
        dfas = sorted({groups[g]["dfa"] for g in [*glist, *exes["wildcard"]]
                       if groups[g]["dfa"] is not None})
        key = (len(dfas), max((_states(bundle["dfas"][d]) for d in dfas), default=0))
        if best is None or key > best[0]:
            best = (key, name, dfas)
    if best is None:
        raise ValueError("the policy names no executable")
    return best[1], best[2]


def _path_to_new(dfa: dict, state: int, seen: set[int], banned: set[int],
                 byte_of: list[int]) -> list[int] | None:
    """Bytes of a shortest path from ``state`` to a state not in ``seen`` (BFS)."""
    ncls, trans = dfa["nclasses"], dfa["trans"]
    back: dict[int, tuple[int, int]] = {state: (-1, -1)}
    queue = [state]
    for cur in queue:
        for c, byte in enumerate(byte_of):
            if byte < 0:
                continue
            nxt = trans[cur * ncls + c]
            if nxt in back or nxt in banned:
                continue
            back[nxt] = (cur, byte)
            if nxt not in seen:
                path = []
                while back[nxt][0] >= 0:
                    nxt, byte = back[nxt]
                    path.append(byte)
                return path[::-1]
            queue.append(nxt)
    return None


def _walk(dfa: dict, prefix: list[int], length: int, rnd: random.Random) -> tuple[bytes, int]:
    ncls, cls, trans = dfa["nclasses"], dfa["classes"], dfa["trans"]
    banned = {s for s, mask in dfa["accept"] if mask}
    byte_of = [-1] * ncls  # one printable byte per class, picked at random
    for b in rnd.sample(BYTES, len(BYTES)):
        if byte_of[cls[b]] < 0:
            byte_of[cls[b]] = b
    state = dfa["start"]
    for sym in prefix:
        state = trans[state * ncls + cls[sym]]
    seen = {state}
    out = bytearray()
    while len(out) < length:
        path = _path_to_new(dfa, state, seen, banned, byte_of)
        if path is None:  # everything reachable seen: wander on harmless bytes
            options = [b for b in byte_of if b >= 0 and trans[state * ncls + cls[b]]
                       not in banned] or [0x20]
            path = [rnd.choice(options)]
        for byte in path[: length - len(out)]:
            state = trans[state * ncls + cls[byte]]
            seen.add(state)
            out.append(byte)
    return bytes(out), len(seen)


def worst_exec(bundle: dict, copy_dir: Path, tries: int = 30) -> WorstExec:
    """Pick the executable and build the argument; the copy will be ``copy_dir/name``."""
    name, dfas = heaviest_name(bundle)
    biggest = max(dfas, key=lambda d: _states(bundle["dfas"][d]))
    dfa = bundle["dfas"][biggest]
    path = str(copy_dir / name)
    length = ARGV_BYTES - len(path.encode()) - 2  # two NULs: after the path, after the arg
    prefix = stream_symbols([path.encode()])[:-1] + [0]  # BOS, path, NUL
    for seed in range(tries):
        block, visited = _walk(dfa, prefix, length, random.Random(seed))
        args = block.split(b"\0")
        decision = simulate(bundle, [path.encode(), *args], identity=(0, seed + 1))
        if decision.action == "allow" and not decision.rules:
            return WorstExec(name, [a.decode() for a in args], len(dfas), _states(dfa),
                             visited, "allow")
    raise ValueError(f"no allowed 4 KiB walk for {name!r} in {tries} tries")
