"""The agent's reader of the BPF ring buffer: mmap of the (pinned) map, standard library only.

Layout (kernel/bpf/ringbuf.c, include/uapi/linux/bpf.h): mapping the ring buffer map's fd gives
at offset 0 one page holding ``consumer_pos`` (the only page user space may write), then one
page holding ``producer_pos`` and the data area, mapped twice in a row so a record that wraps
is contiguous.  Each record starts with an 8-byte header: ``u32 len`` (bit 31
``BPF_RINGBUF_BUSY_BIT``: still being written; bit 30 ``BPF_RINGBUF_DISCARD_BIT``: skip it),
``u32 pg_off``; records are 8-byte aligned.  Positions grow without wrapping; offsets into the
data area are ``pos & (size - 1)``.

Only what is read is mapped: the consumer and producer pages stay mapped, and each read maps
the pages that hold ``[consumer, producer)`` (through the second copy when it wraps) and
unmaps them after.  The kernel maps a ring buffer's pages in full as soon as they are
mmapped, so mapping the data area for good would put both copies (2 × 20 MiB for the agent's
two rings) into the agent's resident set for nothing: an idle agent maps none of it.

Why not libbpf's consumer (BCC's ``ring_buffer_poll``): it moves ``consumer_pos`` past each
record as its callback returns, so an agent killed between reading records and writing them
to the spool loses them.  Here ``consumer_pos`` moves only on :meth:`RingReader.commit`, which
the agent calls after the spool write: a ``kill -9`` at any moment loses no record (at worst
the next agent writes a few again, with the same ``event.id``, which the report stores once).
Wakeups: the map fd is pollable (``EPOLLIN`` when the kernel woke readers).
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Callable

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8
PAGE = mmap.PAGESIZE


class RingReader:
    def __init__(self, map_fd: int, size: int) -> None:
        """``size``: the map's max_entries (data bytes, a power of two, a page multiple)."""
        self.fd = map_fd
        self.size = size
        self.mask = size - 1
        self.cons_page = mmap.mmap(map_fd, PAGE, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.prod_page = mmap.mmap(map_fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ, offset=PAGE)
        self.poller = select.poll()
        self.poller.register(map_fd, select.POLLIN)
        self.pos = self._consumer()  # read so far (committed or not)

    def _consumer(self) -> int:
        return struct.unpack_from("<Q", self.cons_page, 0)[0]

    def _producer(self) -> int:
        return struct.unpack_from("<Q", self.prod_page, 0)[0]

    def pending(self) -> int:
        """Bytes the kernel has written that were not read yet."""
        return self._producer() - self.pos

    def _window(self, prod: int) -> mmap.mmap:
        """Map the pages holding ``[pos, prod)``: ``pos`` is at offset ``pos % PAGE`` in the
        mapping, and a record that wraps runs on into the data area's second copy.  Every
        record, busy ones included, lies in that range: the kernel moves ``producer_pos`` when
        it reserves."""
        start = (self.pos & self.mask) & ~(PAGE - 1)
        end = (self.pos & self.mask) + (prod - self.pos)  # past ``size`` only into the copy
        return mmap.mmap(self.fd, end - start, mmap.MAP_SHARED, mmap.PROT_READ,
                         offset=2 * PAGE + start)

    def read(self, on_record: Callable[[bytes], None]) -> int:
        """Hand every complete record after what was read to ``on_record``; returns how many.
        Does not move ``consumer_pos``: :meth:`commit` does."""
        prod = self._producer()
        if self.pos >= prod:
            return 0
        data = self._window(prod)
        off = self.pos & (PAGE - 1)  # in the window's terms, never ``pos & mask`` again
        count = 0
        try:
            while self.pos < prod:
                length, = struct.unpack_from("<I", data, off)
                if length & BUSY_BIT:
                    break  # reserved, not submitted yet: later records wait behind it
                size = length & ~(BUSY_BIT | DISCARD_BIT)
                if not length & DISCARD_BIT:
                    on_record(data[off + HDR_SIZE:off + HDR_SIZE + size])
                    count += 1
                step = (size + HDR_SIZE + 7) & ~7
                self.pos += step
                off += step
        finally:
            data.close()
        return count

    def poll(self, timeout_ms: int, on_record: Callable[[bytes], None]) -> int:
        """Wait up to ``timeout_ms`` for a wakeup unless records wait already, then read.
        Records submitted without a wakeup are read on the next call either way."""
        if self._producer() == self.pos:
            self.poller.poll(timeout_ms)
        return self.read(on_record)

    def commit(self) -> None:
        """Give the space of what was read back to the kernel (after it is safe in the spool)."""
        struct.pack_into("<Q", self.cons_page, 0, self.pos)

    def close(self) -> None:
        self.cons_page.close()
        self.prod_page.close()


class Rings:
    """Several ring buffers read in one poll (the agent's: blocks and logged execs).  Their
    consumer positions move together on :meth:`commit`, after the spool write."""

    def __init__(self, readers: list[RingReader]) -> None:
        self.readers = readers
        self.poller = select.poll()
        for r in readers:
            self.poller.register(r.fd, select.POLLIN)

    def poll(self, timeout_ms: int, on_record: Callable[[bytes], None]) -> int:
        """Wait up to ``timeout_ms`` for a wakeup of any of them unless records wait already,
        then read every one."""
        if not any(r.pending() for r in self.readers):
            self.poller.poll(timeout_ms)
        return sum(r.read(on_record) for r in self.readers)

    def commit(self) -> None:
        for r in self.readers:
            r.commit()

    def close(self) -> None:
        for r in self.readers:
            r.close()


def ring_rss_kib(pid: int) -> int:
    """Resident KiB of the process's BPF map mappings, from /proc/PID/smaps: the ring buffer
    pages mapped at that moment (the consumer and producer pages, and a read's window while it
    lasts).  The kernel counts a mapped ring buffer page in VmRSS; the memory itself is the
    kernel's and exists as long as the map does."""
    total, in_map = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
                in_map = line.rstrip().endswith("anon_inode:bpf-map")
            elif in_map and head and head[0] == "Rss:":
                total += int(head[1])
    return total
