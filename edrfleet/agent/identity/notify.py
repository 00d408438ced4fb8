"""inotify and fanotify through ctypes: the standard library has neither.

Values are those of <sys/inotify.h> and <linux/fanotify.h> (stable kernel ABI).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
IN_ONLYDIR = 0x01000000
# a named file appears, goes, or changes under its name (rename over = dpkg, cp, ln -sf)
DIR_EVENTS = (IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
              | IN_DELETE_SELF | IN_MOVE_SELF)

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_MARK_ADD = 0x1
FAN_MARK_FLUSH = 0x80
FAN_MARK_IGNORED_MASK = 0x20
FAN_MARK_FILESYSTEM = 0x100
FAN_OPEN_EXEC = 0x1000
FAN_Q_OVERFLOW = 0x4000
FAN_NOFD = -1
AT_FDCWD = -100

_EVENT = struct.Struct("=IBBHQii")  # struct fanotify_event_metadata
_INOTIFY = struct.Struct("=iIII")  # struct inotify_event (then len bytes of name)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                                ctypes.c_char_p]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


class Inotify:
    def __init__(self) -> None:
        self.fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self.watches: dict[int, str] = {}

    def watch(self, directory: str) -> bool:
        """Watch a directory; False when it does not exist (or is not a directory)."""
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(directory), DIR_EVENTS | IN_ONLYDIR)
        if wd < 0:
            return False
        self.watches[wd] = directory
        return True

    def drain(self) -> list[tuple[str, str]]:
        """(directory, name) of every pending event; [] when none."""
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            off = 0
            while off + _INOTIFY.size <= len(buf):
                wd, _mask, _cookie, length = _INOTIFY.unpack_from(buf, off)
                name = buf[off + _INOTIFY.size:off + _INOTIFY.size + length].rstrip(b"\0")
                out.append((self.watches.get(wd, ""), os.fsdecode(name)))
                off += _INOTIFY.size + length

    def close(self) -> None:
        os.close(self.fd)


class ExecOpens:
    """fanotify FAN_OPEN_EXEC notifications on whole filesystems: each exec open is reported
    after the fact; no exec ever waits for us (a stopped or dead reader holds nothing)."""

    def __init__(self) -> None:
        # a bounded queue (16384 events): a stopped reader must not pin memory and open files
        # without end; an overflow loses refinements only (the kernel judges by size anyway)
        self.fd = _check(_libc.fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK,
                                             os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC),
                         "fanotify_init")

    def mark_filesystem(self, path: str) -> None:
        """Every exec open on the filesystem holding ``path``; raises OSError."""
        _check(_libc.fanotify_mark(self.fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
                                   FAN_OPEN_EXEC, AT_FDCWD, os.fsencode(path)),
               f"fanotify_mark {path}")

    def ignore(self, fd: int) -> bool:
        """No more exec events for the file of ``fd`` until it is modified (the kernel clears
        an ignore mark without FAN_MARK_IGNORED_SURV_MODIFY on the first write): the host's
        known executables then cost no event.  False when the kernel refuses (too many
        marks): the file keeps being answered from the cache."""
        return _libc.fanotify_mark(self.fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK,
                                   FAN_OPEN_EXEC, fd, None) == 0

    def forget_ignored(self) -> None:
        """Drop every ignore mark (the filesystem marks stay): a new policy reclassifies."""
        _libc.fanotify_mark(self.fd, FAN_MARK_FLUSH, 0, AT_FDCWD, None)

    def events(self) -> Iterator[tuple[int, int]]:
        """(fd, pid) of each pending exec open; the caller closes each fd.  A queue overflow
        is (-1, -1)."""
        while True:
            try:
                buf = os.read(self.fd, 4096)
            except BlockingIOError:
                return
            off = 0
            while off + _EVENT.size <= len(buf):
                length, _vers, _res, _mlen, mask, fd, pid = _EVENT.unpack_from(buf, off)
                if fd != FAN_NOFD:
                    yield fd, pid
                elif mask & FAN_Q_OVERFLOW:
                    yield -1, -1
                off += max(length, _EVENT.size)

    def close(self) -> None:
        os.close(self.fd)
