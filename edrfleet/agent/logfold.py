"""Execs no event of their own carried: each event's count, and summaries of the rest.

The kernel's per-CPU map "logagg" counts execs per (rule, real executable, action):

- logged execs folded under a flood: of one key the first ``EDR_LOGAGG_BURST`` per window and
  CPU are sent as events, the next ones only counted (``seen``).  The key's next event carries
  them (``count``: the execs from the one after the previous event to itself, numbered by
  ``agg_seq``); when no event follows, :meth:`LogFolds.sweep` writes a summary once the window
  is over;
- block and would-block events their ring buffer refused (a storm longer than it holds):
  counted there, summarized at the next sweep.

A summary is a copy of the key's last event with its own id, ``@timestamp`` the sweep's time,
``edrfleet.count`` the execs and ``edrfleet.summary: true``.  Events and sweeps can cross (a
sweep reads ``seen`` while the event that carries the same execs waits in the ring buffer), so
each (key, CPU) remembers the highest exec number already reported, and an event or a summary
only counts the execs after it: no exec is counted twice.  A key with no event to copy gets no
summary: its execs stay counted as lost (``lost_logs``; a refused block is already in the
kernel's drop counter).  Standard library only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

Key = tuple[int, int, int, int, int]  # gen, rule index, dev, inode, event action
LOGGED = 3  # enum edr_event_action EDR_EV_LOGGED (tests/unit/agent/test_logfold.py checks)


class LogFolds:
    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.claimed: dict[tuple[Key, int], int] = {}  # (key, cpu) -> last exec reported
        self.samples: dict[Key, dict[str, Any]] = {}  # key -> its last event
        self.summaries = 0  # summary events written
        self.lost_logs = 0  # folded logged execs with no event to copy a summary from
        self.summarized_blocks = 0  # refused block events written as summaries

    def on_event(self, ev: Any, doc: dict[str, Any]) -> None:
        """Remember the event as its key's sample; set a folded one's count to the execs it
        reports that no earlier event or summary did."""
        key = (ev.gen, ev.rule, ev.dev, ev.ino, ev.action)
        if ev.action != LOGGED:
            self.samples[key] = doc
            return
        if not ev.agg_seq:
            return  # not aggregated (the map was full): one exec
        first = ev.agg_seq - ev.count  # the event stands for first+1 .. agg_seq
        done = self.claimed.get((key, ev.agg_cpu), 0)
        doc["edrfleet"]["count"] = max(ev.agg_seq - max(first, done), 0)
        self.claimed[(key, ev.agg_cpu)] = max(done, ev.agg_seq)
        self.samples[key] = doc

    def sweep(self, entries: Iterable[tuple[Key, list]], now_ns: int, timestamp: str,
              force: bool = False) -> list[dict[str, Any]]:
        """Summary events for refused blocks, and for logged execs folded in windows that are
        over (every window: ``force``).

        ``entries``: the "logagg" map's (key, per-CPU values); ``now_ns``: CLOCK_BOOTTIME,
        the kernel's clock; ``timestamp``: the summaries' ``@timestamp``."""
        out = []
        for key, per_cpu in entries:
            logged = key[4] == LOGGED
            reached = {}  # cpu -> seen, for the CPUs with execs to report
            for cpu, v in enumerate(per_cpu):
                if logged and not force and now_ns - v.window_ns < self.window_ns:
                    continue  # the key's next event may still carry them
                if v.seen > max(v.sent, self.claimed.get((key, cpu), 0)):
                    reached[cpu] = v
            pending = sum(v.seen - max(v.sent, self.claimed.get((key, cpu), 0))
                          for cpu, v in reached.items())
            if not pending:
                continue
            doc = self._summary(key, pending, f"{now_ns:x}", timestamp)
            if doc is None and not logged:
                continue  # a block event of the key may still be read: the next sweep
            for cpu, v in reached.items():
                self.claimed[(key, cpu)] = v.seen
            if doc is None:
                self.lost_logs += pending
                continue
            out.append(doc)
            if not logged:
                self.summarized_blocks += pending
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
