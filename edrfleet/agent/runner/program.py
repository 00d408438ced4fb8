"""Bringing a program into force: compile and load a new one (a smaller scan window where the
verifier gives up), or adopt the one pinned for this spool; fill a slot and activate it; attach;
pin and retire older pinned programs; record what is pinned and arm the tamper check.  A mixin
of edrfleet/agent/run.py's Agent (its state: ``self.engine``, ``self.gen``, ``self.status``…).
"""

from __future__ import annotations

import json
import time
import zlib

from edrfleet import __version__
from edrfleet.agent import ecs
from edrfleet.agent.btf import Btf, kernel_offsets
from edrfleet.agent.engine import (
    Engine,
    EngineError,
    VerifierTooComplex,
    capacities_for,
    scan_windows,
)
from edrfleet.agent.lsm_probe import lsm_available
from edrfleet.agent.maps import Packed
from edrfleet.agent.pinned import adopt, pins, tamper
from edrfleet.agent.runner import log


class ProgramSteps:
    """Agent's program in force."""

    def _kernel(self, btf: Btf | None = None) -> dict[str, int]:
        """Offsets and LSM availability from BTF (only a new program needs them)."""
        if self.offsets is None:
            btf = btf or Btf.load()
            self.offsets = kernel_offsets(btf)
            self.lsm_possible, self.lsm_why = lsm_available(btf)
        return self.offsets

    def _fresh(self, bundle: dict, packed: Packed, offsets: dict[str, int], why: str) -> None:
        """A new program: load, fill, attach, pin; then unpin what an earlier run left."""
        self.engine = self._step(
            "compile and load the BPF program",
            lambda: self._new_engine(offsets, packed),
        )
        self._install(self.engine, bundle, packed, slot=0)
        self._step("attach raw tracepoint sched_process_exec", self.engine.attach_exec)
        self._attach_lsm(self.engine, why)
        self._step("pin in bpffs", lambda: self._pin(self.engine))

    def _pin(self, engine: Engine) -> None:
        """Freeze what never changes, pin, and only then retire older pinned programs."""
        engine.freeze()
        inst = pins.instance_dir(self.opts.spool)
        engine.pin(inst)
        for old in adopt.remove_others(inst, engine.pdir):
            log(f"retired the earlier pinned program {old}")
        self.status["pinned"] = engine.pdir

    def _adopt(self, manifest: dict, bundle: dict, packed: Packed) -> None:
        """Take over the pinned program: it never stopped enforcing."""
        self.engine = self._step(
            "adopt the pinned program",
            lambda: adopt.adopt_engine(self.bpf_dir, self.header, manifest))
        self.gen = int(manifest["gen"])
        self.status["scan_window"] = self.engine.scan_window
        self.status["scope_cgroups"] = self.engine.with_scope
        self.status["pinned"] = self.engine.pdir
        if self.handover:  # the same agent, without BCC: not a take-over
            log(f"resident: BCC unloaded, working on {self.engine.pdir}")
        else:
            self.status["adopted"] = time.time()
            log(f"adopted the pinned program {self.engine.pdir}")
        # records still in the ring buffer carry the generations of earlier agents: those of
        # this policy decode with its rules
        generation = ecs.Generation(sha256=bundle["sha256"], rules=bundle["rules"])
        for gen, sha in manifest.get("gens", {}).items():
            if sha == bundle["sha256"]:
                self.generations[int(gen)] = (generation, packed.paths)
        # the maps may have been edited while no agent watched: the policy is written anew
        # from the bundle into the free slot, and put in force with one write.  The policy
        # the pinned program holds keeps its generation (a hand-over or a restart is no new
        # policy: status.json's generation counts reloads, and readers wait on it)
        same = manifest.get("policy_sha256") == bundle["sha256"]
        self._install(self.engine, bundle, packed, self.engine.free_slot(), new_gen=not same)

    def _save_manifest(self) -> None:
        """Record what is pinned and in force; take the maps as they are now as what must stay."""
        assert self.engine is not None
        pins.write_manifest(self.opts.spool, adopt.manifest_of(
            self.engine, self.text_sha, self.gen, self.status["policy_sha256"], __version__,
            {g: gen.sha256 for g, (gen, _paths) in self.generations.items()}))
        fds = self.engine.map_fds()
        if self.guard is None or self.guard.maps["config"][0] != fds["config"]:
            self.guard = tamper.Guard(fds)
        self.engine.guard = self.guard  # the identity keeper's writes: never "tampered"
        self.status["maps_sha256"] = self.guard.arm()

    def _check_tamper(self) -> None:
        assert self.engine is not None and self.guard is not None
        changes = self.guard.check() + tamper.check_links(self.engine.pdir, self.engine.links)
        if not changes:
            return
        count = self.status.get("tampered", {}).get("count", 0) + len(changes)
        self.status["tampered"] = {"at": time.time(), "changes": changes[:32], "count": count}
        self.pending.append(tamper.tamper_event(changes, self.opts.host_name, __version__,
                                                self.status["policy_sha256"]))
        log(f"tampered, restored: {'; '.join(changes[:8])}")
        self._write_status()

    def _attach_lsm(self, engine: Engine, why_not: str) -> None:
        """Add the LSM hook in front of the exec-time check where the kernel lets us."""
        if self.wanted == "sigkill" or not self.lsm_possible:
            if self.wanted != "sigkill":
                log(f"backend sigkill: {why_not}")
            return
        try:
            engine.attach_lsm()
        except EngineError as exc:
            if self.wanted == "lsm":
                raise self._fail("attach BPF LSM", str(exc)) from exc
            log(f"backend sigkill: {exc}")
            return
        self._set_backend(engine, "lsm")

    def _set_backend(self, engine: Engine, backend: str) -> None:
        """Record the backend in the engine and in the active slot, so events carry it."""
        engine.backend = backend
        engine.set_backend(engine.active_slot, self.header[f"EDR_BACKEND_{backend.upper()}"])

    def _new_engine(self, offsets: dict[str, int], packed: Packed) -> Engine:
        """Compile and load; a verifier that gives up on a 4 KiB scan window gets a smaller one
        (the 6.1 verifier does; 6.18 takes 4 KiB)."""
        windows = scan_windows(self.header)
        for window in windows:
            try:
                engine = Engine(
                    self.bpf_dir,
                    self.header,
                    offsets,
                    capacities_for(packed.needs(self.header), self.header),
                    perfbuf=self.opts.perfbuf,
                    with_lsm=self.lsm_possible and self.wanted != "sigkill",
                    with_scope=self.scope_possible,
                    scan_window=window,
                    print_text=print if self.opts.print_bpf else None,
                )
                break
            except VerifierTooComplex as exc:
                if window == windows[-1]:
                    raise
                log(f"scan window {window} bytes too complex for this verifier, trying "
                    f"{window // 2}: {str(exc).splitlines()[0][:120]}")
        self.status["scan_window"] = engine.scan_window
        self.status["scope_cgroups"] = self.scope_possible  # False: scoped policies refused
        engine.backend = "sigkill"
        self.offsets = offsets
        return engine

    def _install(self, engine: Engine, bundle: dict, packed: Packed, slot: int,
                 new_gen: bool = True) -> None:
        """Fill ``slot`` with a new generation (``new_gen``; else the one in force, written
        anew) and put it in force.  ``self.gen`` moves only once the slot is in force."""
        gen = self.gen + 1 if new_gen else self.gen
        backend = self.header[f"EDR_BACKEND_{engine.backend.upper()}"]
        engine.write_slot(slot, packed, gen, backend)
        generation = ecs.Generation(sha256=bundle["sha256"], rules=bundle["rules"])
        self.generations[gen] = (generation, packed.paths)
        for old in [g for g in self.generations if g < gen - 4]:
            del self.generations[old]
        engine.activate(slot)
        self.gen = gen
        self.bundle = bundle  # a hand-over passes it on (_shed_bcc)
        self.in_force = zlib.compress(json.dumps(bundle).encode(), 1)
        self.installed_at = time.monotonic()
        if self.identities is not None:  # keys follow the host's files from now on
            self.identities.follow(engine, slot, bundle, packed)
        self.status.update(
            policy_sha256=bundle["sha256"], rules=len(bundle["rules"]),
            mode=bundle["mode"], generation=self.gen,
        )
