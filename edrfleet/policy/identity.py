"""Which executable an exec runs, and which policy keys (names, paths) it answers to.

Shared by `simulate` (bundle) and `reference` (policy) so both resolve executables the same way
as the agent builds the kernel's tables:

- a *name* key ``rm`` matches when the basename of the file as executed or of its real path is
  ``rm``, or when the executed file is the same inode as ``<dir>/rm`` for a ``dir`` of the
  search path (the agent's inode table: hard links and symlinks land on the same inode);
- a *path* key ``/usr/bin/dd`` matches by inode only (``stat(path)`` has the same
  ``(st_dev, st_ino)``).
"""

from __future__ import annotations

import os
import pwd
import stat as stat_mod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from edrfleet.policy.limits import (
    EDR_APPLET_SCAN,
    EDR_SYM_BOS,
    EDR_SYM_EOS,
    NAME_BYTES_MAX,
    name_fits,
)

KEY_CHARS = NAME_BYTES_MAX + 1  # characters of a name the kernel's key holds (then its NUL)

StatFn = Callable[[bytes], os.stat_result]
Identity = tuple[int, int]


def encode_arg(arg: str | bytes) -> bytes:
    """argv item to bytes: str is encoded as UTF-8 with surrogateescape."""
    data = arg if isinstance(arg, bytes) else arg.encode("utf-8", "surrogateescape")
    if b"\0" in data:
        raise ValueError(f"argv strings cannot contain NUL: {data!r}")
    return data


def encode_argv(argv: Sequence[str | bytes]) -> list[bytes]:
    return [encode_arg(a) for a in argv]


def stream_symbols(argv: Sequence[bytes]) -> list[int]:
    """What a group DFA reads for one exec: BOS, argv joined by NUL, EOS."""
    return [EDR_SYM_BOS, *b"\0".join(argv), EDR_SYM_EOS]


@dataclass(frozen=True)
class ExecTarget:
    """The executable of one exec as the kernel sees it."""

    filename: bytes  # as executed (after PATH lookup when it had no '/')
    names: tuple[bytes, ...]  # basename as executed, basename of the real path
    identity: Identity | None  # (st_dev, st_ino) of the real file, None if unknown


class CachedStat:
    """``stat`` remembered per path for one decision; ``identity`` is None when it fails."""

    def __init__(self, stat: StatFn) -> None:
        self._stat = stat
        self._memo: dict[bytes, os.stat_result | None] = {}

    def result(self, path: bytes) -> os.stat_result | None:
        if path not in self._memo:
            try:
                self._memo[path] = self._stat(path)
            except (OSError, ValueError):
                self._memo[path] = None
        return self._memo[path]

    def identity(self, path: bytes) -> Identity | None:
        st = self.result(path)
        return None if st is None else (st.st_dev, st.st_ino)


def _which(name: bytes, path: str | bytes | None, st: CachedStat) -> bytes | None:
    """First ``dir/name`` on PATH that is an executable regular file (like execvp)."""
    if path is None:
        path = os.environ.get("PATH", os.defpath)
    dirs = os.fsencode(path).split(b":")
    for d in dirs:
        candidate = os.path.join(d or b".", name)
        res = st.result(candidate)
        if res is not None and stat_mod.S_ISREG(res.st_mode) and res.st_mode & 0o111:
            return candidate
    return None


def resolve_target(
    argv: Sequence[bytes],
    *,
    filename: str | bytes | None,
    identity: Identity | None,
    st: CachedStat,
    path: str | bytes | None = None,
) -> ExecTarget:
    """Resolve the as-executed file name, the names it answers to, and its identity.

    Raises:
        ValueError: no filename and an empty argv.
    """
    if filename is None:
        if not argv:
            raise ValueError("argv is empty: give the filename to execute")
        fname = argv[0]
    else:
        fname = encode_arg(filename)
    resolved = fname
    if b"/" not in fname:
        resolved = _which(fname, path, st) or fname
    names = [os.path.basename(resolved)]
    real = os.path.basename(os.path.realpath(resolved))
    if real not in names:
        names.append(real)
    if identity is None:
        identity = st.identity(resolved)
    return ExecTarget(resolved, tuple(names), identity)


def key_matches(target: ExecTarget, key: str, search_path: Iterable[str], st: CachedStat) -> bool:
    """Does a policy executable (basename or absolute path) designate this exec's file?"""
    raw = key.encode()
    if raw.startswith(b"/"):
        return target.identity is not None and st.identity(raw) == target.identity
    if raw in target.names:
        return True
    if target.identity is None:
        return False
    return any(st.identity(os.path.join(d.encode(), raw)) == target.identity
               for d in search_path)


def is_multicall(target: ExecTarget, multicall: dict[str, list[str]],
                 search_path: Iterable[str], st: CachedStat) -> bool:
    """Is the executable one of the policy's multi-call binaries?  The kernel asks by the real
    basename ("mcnames") and by inode (the names through the search path, and the paths)."""
    names = multicall.get("names", [])
    if target.names[-1].decode("utf-8", "surrogateescape") in names:
        return True
    if target.identity is None:
        return False
    paths = [os.path.join(d, n).encode() for n in names for d in search_path]
    paths += [p.encode() for p in multicall.get("paths", [])]
    return any(st.identity(p) == target.identity for p in paths)


def _arg_at(block: bytes, start: int) -> bytes | None:
    """The argv item at ``start`` of the kernel's argv copy, if it ends within
    EDR_APPLET_SCAN bytes (else the kernel reads no applet name from it)."""
    end = block.find(b"\0", start, start + EDR_APPLET_SCAN)
    return None if end < 0 else block[start:end]


def applet_names(argv: Sequence[bytes], multicall: dict[str, list[str]], args_max: int,
                 own: bytes) -> list[bytes]:
    """The applet a multi-call binary runs, as bpf/candidates.c add_applet reads it from the
    first ``args_max`` bytes of argv: argv[0]'s basename, and argv[1]'s when argv[0]'s is a
    multi-call name or ``own`` (the binary's real basename: ``busybox rm``).  Only names that
    fit a name key."""
    block = (b"\0".join(argv) + b"\0")[:args_max]
    first = _arg_at(block, 0)
    if first is None:
        return []
    out = [os.path.basename(first)]
    if out[0] and (out[0][:KEY_CHARS] == own[:KEY_CHARS]
                   or out[0].decode("utf-8", "surrogateescape") in multicall.get("names", [])):
        second = _arg_at(block, len(first) + 1)
        if second is not None:
            out.append(os.path.basename(second))
    return [n for n in out if n and name_fits(n)]


def parent_target(parent: str | bytes | None, identity: Identity | None,
                  st: CachedStat) -> ExecTarget | None:
    """The parent's executable (``real_parent->mm->exe_file``): its real basename and inode.

    None when unknown (no parent given; in the kernel: a parent without an mm).
    """
    if parent is None:
        return None
    raw = encode_arg(parent)
    real = os.path.realpath(raw)
    if identity is None:
        identity = st.identity(raw)
    return ExecTarget(raw, (os.path.basename(real),), identity)


def cwd_ancestors(cwd: str | bytes, st: CachedStat, depth: int) -> list[Identity] | None:
    """Identities of the working directory and each directory above it, '/' last.

    The kernel walks the same chain (dentry -> d_parent, across mounts) for at most ``depth``
    directories; a deeper cwd is unknown (None).
    """
    real = os.path.realpath(encode_arg(cwd))
    parts = [p for p in real.split(b"/") if p]
    if len(parts) + 1 > depth:
        return None
    chain = [b"/" + b"/".join(parts[:n]) for n in range(len(parts), -1, -1)]
    return [i for i in (st.identity(p) for p in chain) if i is not None]


def user_uid(name: str) -> int | None:
    """The host's uid for a user name (what the agent does when it fills the maps)."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None
