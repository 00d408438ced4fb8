"""What the kernel judges an exec as beyond its names and inode, for `simulate`:

- the **dynamic loader** run directly (``ld-linux*.so* [OPTION...] PROGRAM ARG...``) is judged
  as PROGRAM, by PROGRAM's basename, on the argv from PROGRAM on (bpf/loader.c);
- a **byte-identical copy** of a protected file (a file a policy path or name leads to) is that
  file: the agent's identity keeper hashes a new executable of a protected size at its first
  exec and gives its inode the protected file's groups (edrfleet/agent/identity);
- a file of a **protected file's size** is judged as that file too: a fileless exec on every
  kernel (bpf/identity.c, "fsizes"), and where the kernel judges unknown files by size, any file
  the agent has not classified yet.  Which files are protected, and their sizes, are the host's:
  simulate reads this machine's.

Each finding is a `Note` that `policy test` prints, so a decision that rests on something only
the host knows says so.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edrfleet.kernel_abi import head_hash
from edrfleet.policy.identity import CachedStat, ExecTarget, Identity
from edrfleet.policy.limits import (
    EDR_ARGS_MAX,
    EDR_FILENAME_MAX,
    EDR_GROUPS_PER_KEY,
    EDR_HEAD_BYTES,
)

# bpf/loader.c EDR_LOADER_ARGS: loader arguments (its own argv[0] included) read for PROGRAM
# (tests/unit/policy/test_simulate_identity.py reads the number from there)
LOADER_ARGS = 16
# glibc rtld's options (bpf/loader.c loader_option): 2 = takes the next argument as its value
LOADER_OPTIONS = {
    b"--library-path": 2, b"--inhibit-rpath": 2, b"--audit": 2, b"--preload": 2,
    b"--argv0": 2, b"--glibc-hwcaps-prepend": 2, b"--glibc-hwcaps-mask": 2,
    b"--list": 1, b"--verify": 1, b"--inhibit-cache": 1, b"--list-tunables": 1,
    b"--list-diagnostics": 1, b"--help": 1, b"--version": 1,
}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Note:
    """How the exec was judged beyond its own names: ``kind`` loader | applet | content | size |
    loader-unjudged | dropped | unscanned | prefilter-short; ``detail`` what (a name, a path);
    ``host``: the outcome depends on the host (its files, the agent's classification), not on
    the policy."""

    kind: str
    detail: str
    host: bool = False

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "detail": self.detail, "depends_on_host": self.host}


def is_loader(real_name: bytes) -> bool:
    """bpf/identity.c is_loader: the real executable's basename is a dynamic loader's."""
    return (real_name.startswith((b"ld-linux", b"ld-musl")) or real_name.startswith(b"ld64."))


@dataclass(frozen=True)
class LoaderRun:
    """Where PROGRAM is in the loader's argv (``index``; None: not found) and whether that
    leaves an argv the kernel did not judge (``unjudged``: it fails closed)."""

    index: int | None
    name: bytes = b""  # PROGRAM's basename, as the kernel reads it
    unjudged: bool = False


def loader_program(argv: Sequence[bytes]) -> LoaderRun:
    """bpf/loader.c loader_program on the event's argv copy (the first EDR_ARGS_MAX bytes):
    skip the loader's argv[0], then its options one by one (an option with a value skips the
    next argument too); the first other argument is PROGRAM.  At most LOADER_ARGS arguments
    are read; PROGRAM not found within them, or past the copy, while argv goes on: unjudged."""
    block = b"\0".join(argv) + b"\0"
    args_len = min(len(block), EDR_ARGS_MAX)
    pos, skip = 0, False
    for k in range(min(LOADER_ARGS, len(argv))):
        if pos >= args_len:
            break
        start, pos = pos, pos + len(argv[k]) + 1
        if k == 0:
            continue
        if skip:
            skip = False
            continue
        opt = LOADER_OPTIONS.get(argv[k], 0)
        if not opt:
            head = block[start:min(start + EDR_FILENAME_MAX, EDR_ARGS_MAX)].split(b"\0")[0]
            base = start + head.rfind(b"/") + 1
            return LoaderRun(k, block[base:block.index(b"\0", start)])
        skip = opt == 2
    return LoaderRun(None, unjudged=pos < len(block))


@dataclass(frozen=True)
class Protected:
    """A file the policy's names (through the search path) or paths lead to on this host."""

    path: bytes
    identity: Identity
    size: int
    groups: tuple[int, ...]
    left: tuple[int, ...] = ()  # groups its list could not hold (EDR_GROUPS_PER_KEY)


def protected_files(bundle: dict[str, Any], st: CachedStat) -> dict[Identity, Protected]:
    """Every file a name or path key leads to here, with the groups the agent gives its inode
    (edrfleet/agent/identity/keeper.py named_paths and _merge: block groups kept first)."""
    blocks = block_groups(bundle)
    found: dict[Identity, Protected] = {}
    named: list[tuple[bytes, list[int]]] = [
        (os.path.join(d, name).encode(), groups)
        for name, groups in bundle["executables"]["names"].items()
        for d in bundle["search_path"]]
    named += [(p.encode(), g) for p, g in bundle["executables"]["paths"].items()]
    for path, groups in named:
        res = st.result(path)
        if res is None:
            continue
        ident = (res.st_dev, res.st_ino)
        old = found.get(ident)
        merged, left = merge_lists([old.groups if old else (), groups], blocks)
        left += [g for g in (old.left if old else ()) if g not in left and g not in merged]
        found[ident] = Protected(old.path if old else path, ident, res.st_size, tuple(merged),
                                 tuple(left))
    return found


def block_groups(bundle: dict[str, Any]) -> set[int]:
    return {i for i, g in enumerate(bundle["groups"]) if g["has_block"]}


def merge_lists(lists: Iterable[Sequence[int]], blocks: set[int],
                limit: int = EDR_GROUPS_PER_KEY) -> tuple[list[int], list[int]]:
    """The agent's list for one key built from several (agent/maps.py _merge, one at a time):
    past ``limit`` block groups are kept first; returns (kept, left out)."""
    kept: list[int] = []
    left: list[int] = []
    for groups in lists:
        every = kept + [g for g in groups if g not in kept]
        if len(every) > limit:
            every.sort(key=lambda g: g not in blocks)
            left += [g for g in every[limit:] if g not in left]
        kept = every[:limit]
    return kept, [g for g in left if g not in kept]


def file_head(path: bytes) -> int | None:
    """The head hash the kernel keys a file's size with, or None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return head_hash(fh.read(EDR_HEAD_BYTES), EDR_HEAD_BYTES)
    except OSError:
        return None


def sha256_file(path: bytes) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            h = hashlib.sha256()
            while block := fh.read(CHUNK):
                h.update(block)
            return h.digest()
    except OSError:
        return None


@dataclass
class Likeness:
    """The protected files an exec's file is a copy of (``copies``, by content) or only the
    size of (``sizes``)."""

    copies: list[Protected]
    sizes: list[Protected]


def likeness(target: ExecTarget, protected: dict[Identity, Protected], st: CachedStat,
             hash_content: bool) -> Likeness:
    """Compare the exec's file (when it exists here) with the protected files of its size."""
    res = st.result(target.filename)
    if res is None or not res.st_size or target.identity in protected:
        return Likeness([], [])
    # the kernel's key is the size and a hash of the first EDR_HEAD_BYTES (bpf/identity.c)
    mine_head = file_head(target.filename)
    same = [p for p in protected.values() if p.size == res.st_size
            and mine_head is not None and file_head(p.path) == mine_head]
    if not same or not hash_content:
        return Likeness([], same)
    mine = sha256_file(target.filename)
    copies = [p for p in same if mine is not None and sha256_file(p.path) == mine]
    return Likeness(copies, same)
