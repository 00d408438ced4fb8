"""Events from the kernel to the spool, and the counters to status.json: decode each record
into an ECS document, fold floods of logged execs, write the spool and only then let the kernel
reuse the ring buffer's space.  A mixin of edrfleet/agent/run.py's Agent."""

from __future__ import annotations

import sys
import time

from edrfleet.agent import ecs
from edrfleet.agent.engine import Engine
from edrfleet.agent.status import write_status


class EventFlow:
    """Agent's events and status."""

    def _open_events(self, engine: Engine) -> None:
        def handle(ev, _size: int) -> None:
            generation, paths = self.generations.get(ev.gen, (None, {}))
            as_executed = ecs.text(ecs.field_bytes(ev, "filename", ev.filename_len))
            exe = ecs.resolve_executable(ev.pid, (ev.dev, ev.ino), paths, as_executed,
                                         committed=ev.stage != ecs.STAGE_LSM,
                                         kernel_path=ecs.kernel_exe_path(ev))
            parent = ecs.resolve_parent(ev)
            doc = ecs.to_ecs(
                ev, host=self.opts.host_name, generation=generation, clock=self.clock,
                boot_id=self.boot_id, executable=exe, parent_executable=parent,
            )
            self.folds.on_event(ev, doc)
            self.pending.append(doc)

        def lost(count: int) -> None:
            self.user_lost += count

        engine.open_events(handle, lost)

    def _sweep_folds(self, engine: Engine, force: bool = False) -> None:
        """Summaries of logged execs folded in windows that are over (all of them: ``force``);
        keys of retired generations, drained, leave the map."""
        now_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        entries = engine.log_folds()
        self.pending.extend(self.folds.sweep(entries, now_ns, self.clock.iso(now_ns), force))
        idle = now_ns - 3_000_000_000 - self.folds.window_ns
        retired = [key for key, per_cpu in entries if key[0] != self.gen
                   and time.monotonic() - self.installed_at > 3
                   and all(v.window_ns < idle for v in per_cpu)]
        if retired:
            engine.forget_log_folds(retired)
            self.folds.forget(retired)

    def _flush(self) -> None:
        if self.pending:
            batch, self.pending = self.pending, []
            self.spool.append(batch)
            if self.outputs:
                self.outputs.wake()  # they ship from the spool, each from its own cursor
        if self.engine is not None:
            self.engine.commit()  # in the spool (fsync-ed): the kernel may reuse their space

    def _write_status(self) -> None:
        if self.engine is not None:
            c = self.engine.counters()
            self.status.update(
                execs_seen=c["execs"], blocked=c["blocked"], would_block=c["would_block"],
                logged=c["logged"], events_lost=c["lost"] + self.user_lost,
                errors=c["errors"], candidates_dropped=c["dropped"],
                drops={"block": c["lost_block"] - self.folds.summarized_blocks,
                       "log": c["lost_log"] + self.folds.lost_logs},
                blocks_summarized=self.folds.summarized_blocks, log_folded=c["folded"],
                summaries=self.folds.summaries,
            )
        if self.outputs:
            self.status["outputs"] = self.outputs.stats()
        if self.identities is not None:
            self.status["identities"] = self.identities.stats()
        if self.engine is not None:  # false once the resident agent runs (keeper and all)
            self.status["bcc_loaded"] = "bcc" in sys.modules
        write_status(str(self.opts.spool), self.status)
