"""Reading a program's events and counters: the (pinned) ring buffers with a consumer position
moved only once the spool holds what was read, BCC's perf buffer where asked, the counters and
the log-fold map.  A mixin of edrfleet/agent/engine.py's Engine."""

from __future__ import annotations

import ctypes as ct
from collections.abc import Callable

from edrfleet.agent.pinned import bpfsys
from edrfleet.agent.pinned.ringbuf import RingReader, Rings
from edrfleet.agent.pinned.tables import PinnedMaps

RINGS = ("events_block", "events")  # ring buffers the agent reads: blocks first


class EventReader:
    """Engine's events (``self.bpf``, ``self.perfbuf``, ``self._ring``, ``self.header`` and
    ``map_fds()`` are the engine's)."""

    def open_events(
        self, handle: Callable[[object, int], None], lost: Callable[[int], None]
    ) -> None:
        """Call ``handle(event, size)`` for each record, decoded from the declared struct."""
        if self.perfbuf:
            table = self.bpf["events"]

            def on_record(_ctx, data, size):
                handle(table.event(data), size)

            table.open_perf_buffer(
                lambda cpu, data, size: on_record(None, data, size),
                page_cnt=256,
                lost_cb=lost,
            )
            return
        # our own reader of the (pinned) ring buffer: consumer_pos moves only on commit(),
        # after the spool write, so a kill between reading and writing loses nothing
        if isinstance(self.bpf, PinnedMaps):
            event = self.bpf.event
        else:
            from bcc.table import _get_event_class

            event = _get_event_class(self.bpf["events"])
        full = ct.sizeof(event)

        def on_raw(raw: bytes) -> None:
            handle(event.from_buffer_copy(raw.ljust(full, b"\0")[:max(full, len(raw))]),
                   len(raw))

        # blocks have a ring buffer of their own (same record): one poll reads both
        fds = self.map_fds()
        self._ring = Rings([RingReader(fds[name], bpfsys.map_info(fds[name])["max_entries"])
                            for name in RINGS])
        self._on_raw = on_raw

    def poll(self, timeout_ms: int) -> None:
        if self.perfbuf:
            self.bpf.perf_buffer_poll(timeout=timeout_ms)
        elif self._ring is not None:
            self._ring.poll(timeout_ms, self._on_raw)

    def commit(self) -> None:
        """The events read so far are in the spool: the ring buffer may reuse their space."""
        if self._ring is not None:
            self._ring.commit()

    def counters(self) -> dict[str, int]:
        names = self.header.enums["edr_counter"]
        table = self.bpf["counters"]
        out = {}
        for name, idx in names.items():
            if name == "EDR_CNT_MAX":
                continue
            out[name[len("EDR_CNT_"):].lower()] = sum(table[ct.c_int(idx)])
        return out

    def log_folds(self) -> list[tuple[tuple[int, int, int, int, int], list]]:
        """The "logagg" map: ((gen, rule, dev, ino, action), per-CPU values) of every key."""
        return [((k.gen, k.rule, k.dev, k.ino, k.action), list(v))
                for k, v in self.bpf["logagg"].items()]

    def forget_log_folds(self, keys: list[tuple[int, int, int, int, int]]) -> None:
        table = self.bpf["logagg"]
        for gen, rule, dev, ino, action in keys:
            k = table.Key()
            k.gen, k.rule, k.dev, k.ino, k.action = gen, rule, dev, ino, action
            try:
                del table[k]
            except KeyError:
                pass
