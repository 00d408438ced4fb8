"""Logged execs folded under a flood: each event's count, and summaries of what no event carried.

Under a flood the kernel sends the first ``EDR_LOGAGG_BURST`` logged execs of one (rule,
executable) per window and CPU as events; the next ones send none and are counted in its
per-CPU map "logagg" (``seen``).  The key's next event carries them (``count``: the execs from
the one after the previous event to itself, numbered by ``agg_seq``); when no event follows,
this module's :meth:`LogFolds.sweep` writes a summary event for them: a copy of the key's last
event with its own id, the count, and ``edrfleet.summary: true``.

Events and sweeps can cross (a sweep reads ``seen`` while the event that carries the same execs
waits in the ring buffer), so each (key, CPU) remembers the highest exec number already
reported, and an event or a summary only counts the execs after it: no exec is counted twice.
A summary needs a key's earlier event to copy; when every event of a key was lost, its execs are
counted as lost instead (``lost``).  Standard library only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

Key = tuple[int, int, int, int]  # gen, rule index, dev, inode


class LogFolds:
    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.claimed: dict[tuple[Key, int], int] = {}  # (key, cpu) -> last exec reported
        self.samples: dict[Key, dict[str, Any]] = {}  # key -> its last event
        self.summaries = 0  # summary events written
        self.lost = 0  # folded execs with no event to copy a summary from

    def on_event(self, ev: Any, doc: dict[str, Any]) -> None:
        """Set ``doc``'s count to the execs it reports that no earlier event or summary did."""
        if not ev.agg_seq:
            return  # not aggregated: one exec
        key = (ev.gen, ev.rule, ev.dev, ev.ino)
        first = ev.agg_seq - ev.count  # the event stands for first+1 .. agg_seq
        done = self.claimed.get((key, ev.agg_cpu), 0)
        doc["edrfleet"]["count"] = max(ev.agg_seq - max(first, done), 0)
        self.claimed[(key, ev.agg_cpu)] = max(done, ev.agg_seq)
        self.samples[key] = doc

    def sweep(self, entries: Iterable[tuple[Key, list]], now_ns: int, timestamp: str,
              force: bool = False) -> list[dict[str, Any]]:
        """Summary events for execs folded in windows that are over (every window: ``force``).

        ``entries``: the "logagg" map's (key, per-CPU values); ``now_ns``: CLOCK_BOOTTIME,
        the kernel's clock; ``timestamp``: the summaries' ``@timestamp``."""
        out = []
        for key, per_cpu in entries:
            pending = 0
            for cpu, v in enumerate(per_cpu):
                if not force and now_ns - v.window_ns < self.window_ns:
                    continue
                done = max(v.sent, self.claimed.get((key, cpu), 0))
                if v.seen > done:
                    pending += v.seen - done
                    self.claimed[(key, cpu)] = v.seen
            if pending:
                doc = self._summary(key, pending, f"{now_ns:x}", timestamp)
                if doc is None:
                    self.lost += pending
                else:
                    out.append(doc)
        self.summaries += len(out)
        return out

    def _summary(self, key: Key, count: int, suffix: str,
                 timestamp: str) -> dict[str, Any] | None:
        sample = self.samples.get(key)
        if sample is None:
            return None
        doc = copy.deepcopy(sample)
        doc["@timestamp"] = timestamp
        doc["event"]["id"] = f"{doc['event']['id']}-s{suffix}"
        doc["edrfleet"]["count"] = count
        doc["edrfleet"]["summary"] = True
        return doc

    def forget(self, keys: Iterable[Key]) -> None:
        """Drop what is remembered of keys removed from the map (a retired generation)."""
        gone = set(keys)
        self.claimed = {k: v for k, v in self.claimed.items() if k[0] not in gone}
        self.samples = {k: v for k, v in self.samples.items() if k not in gone}
