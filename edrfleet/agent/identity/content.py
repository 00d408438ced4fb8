"""Content identity: a byte-identical copy of a protected executable is that executable.

A file can only be a copy of a protected file of the same size, so the size is checked first
(one ``fstat``, which every exec open pays) and the SHA-256 is computed only for a file of a
protected size - and for the protected files themselves the first time one of their size is
met, so the agent's start hashes nothing.
"""

from __future__ import annotations

import hashlib
import os
import struct

CHUNK = 1 << 20


def sha256_fd(fd: int) -> bytes:
    h = hashlib.sha256()
    off = 0
    while True:
        block = os.pread(fd, CHUNK, off)
        if not block:
            return h.digest()
        h.update(block)
        off += len(block)


def sha256_path(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return sha256_fd(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


HEAD_BYTES = 256  # EDR_HEAD_BYTES: linux_binprm.buf, what the kernel hashes (bpf/identity.c)
_FNV_OFFSET, _FNV_PRIME, _U64 = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1


def head_hash(fd: int) -> int:
    """FNV-1a 64 over the file's first HEAD_BYTES as little-endian 64-bit words, zero-padded:
    the "fsizes" key the kernel computes from linux_binprm.buf (bpf/identity.c)."""
    head = os.pread(fd, HEAD_BYTES, 0).ljust(HEAD_BYTES, b"\0")
    h = _FNV_OFFSET
    for (word,) in struct.iter_unpack("<Q", head):
        h = ((h ^ word) * _FNV_PRIME) & _U64
    return h


def head_hash_path(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return head_hash(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


class Protected:
    """The protected files of one policy generation: identity -> (path, size)."""

    def __init__(self, files: dict[tuple[int, int], tuple[str, int]]) -> None:
        self.by_size: dict[int, list[tuple[int, int]]] = {}
        self.paths = {ident: path for ident, (path, _size) in files.items()}
        for ident, (_path, size) in files.items():
            self.by_size.setdefault(size, []).append(ident)
        self.digests: dict[tuple[int, int], bytes | None] = {}
        self.hashed = 0  # files hashed (copies classified + protected files)

    def copy_of(self, fd: int, size: int) -> list[tuple[int, int]]:
        """The protected identities the open file ``fd`` (of ``size`` bytes) is a copy of."""
        same_size = self.by_size.get(size)
        if not same_size:
            return []
        digest = sha256_fd(fd)
        self.hashed += 1
        out = []
        for ident in same_size:
            if ident not in self.digests:
                self.digests[ident] = sha256_path(self.paths[ident])
                self.hashed += 1
            if self.digests[ident] == digest:
                out.append(ident)
        return out
