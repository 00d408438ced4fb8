"""The reload on SIGHUP: the policy file read again and put in force in the free slot of the
program in force, or, when it needs bigger maps or matchers the program was built without, in
a new program attached and pinned beside the old one before the old one goes.  Anything that
fails keeps what is in force (``last_reload.ok`` false, the agent goes on).  A mixin of
edrfleet/agent/run.py's Agent."""

from __future__ import annotations

import json
import os
import time
import zlib

from edrfleet.agent.engine import EngineError
from edrfleet.agent.maps import Packed
from edrfleet.agent.runner import log

FAIL_RELOAD_ENV = "EDRFLEET_TEST_FAIL_RELOAD"  # forced_failure()


def forced_failure(step: str) -> None:
    """Fault injection for the kernel tests: a reload's new program fails at ``step``
    ("compile": before it is built; "attach": built, filled and attached, before it is pinned)
    when the agent's environment says so."""
    if os.environ.get(FAIL_RELOAD_ENV) == step:
        raise EngineError(f"{step}: forced by {FAIL_RELOAD_ENV}")


class Reloader:
    """Agent's reload."""

    def reload(self) -> None:
        """Load the policy file again; a policy that fails, or whose new program fails to
        build or attach, keeps the running one in force (``last_reload.ok`` false)."""
        assert self.engine is not None
        for error in self.outputs.reload() if self.outputs else []:
            log(f"reload: output credentials kept: {error}")
        try:
            bundle = self.load_bundle(self.opts.policy)
            if self._wanted_backend(bundle) not in ("auto", self.engine.backend):
                raise ValueError(
                    f"the policy requires backend {bundle.get('backend')}, the agent runs "
                    f"{self.engine.backend}; restart the agent to change backends"
                )
            self._check_scope(bundle)
            packed = self._pack(bundle)
        except Exception as exc:
            self._reload_failed(str(exc), "reload refused, the running policy stays in force")
            return
        kept = {k: self.status.get(k) for k in ("policy_sha256", "rules", "mode", "generation",
                                                "scan_window", "pinned")}
        gen, in_force = self.gen, self.in_force
        fits = self.engine.fits(packed.needs(self.header))
        try:
            if fits:
                self._install(self.engine, bundle, packed, self.engine.free_slot())
            else:  # bigger maps or new matchers: a second program enforces before the first goes
                self._swap_program(bundle, packed)
        except Exception as exc:  # the old program and slot never stopped: they stay in force
            if self.gen != gen and self.identities is not None:
                self.identities.revert()  # the new slot was followed: back to the old one
            self.gen = gen
            self.status.update(kept)
            # a hand-over (BCC got loaded for the new program) passes on the bundle in force
            self.in_force = in_force
            self.bundle = json.loads(zlib.decompress(in_force)) if in_force else None
            self._reload_failed(f"{'fill maps' if fits else 'new program'}: {exc}",
                                "reload failed, the running program and policy stay in force")
            return
        self._save_manifest()
        self.status["guard"] = self.selfguard.arm(self.engine, self.lsm_why)
        self.status["state"] = "enforcing" if bundle["mode"] == "enforce" else "monitoring"
        self.status["last_error"] = ""
        self.status["last_reload"] = {"at": time.time(), "ok": True, "sha256": bundle["sha256"]}
        log(f"reloaded: policy {bundle['sha256'][:12]}, {len(bundle['rules'])} rules")

    def _reload_failed(self, error: str, what: str) -> None:
        self.status["last_error"] = f"reload: {error}"
        self.status["last_reload"] = {"at": time.time(), "ok": False, "error": error}
        log(f"{what}: {error}")

    def _swap_program(self, bundle: dict, packed: Packed) -> None:
        """Build, fill, attach and pin a program for ``bundle`` beside the one in force; only
        then retire the old one.  On any failure the new one is detached and the error raised:
        the old one enforced throughout."""
        assert self.engine is not None
        old, new = self.engine, None
        try:
            forced_failure("compile")
            new = self._new_engine(self._kernel(), packed)
            self._install(new, bundle, packed, slot=0)
            new.attach_exec()
            if old.backend == "lsm":
                new.attach_lsm()
                self._set_backend(new, "lsm")
            forced_failure("attach")
            self._open_events(new)
            self._pin(new)  # the old program is unpinned here, after the new one is in force
        except Exception:
            if new is not None:
                try:
                    new.detach()
                except Exception as exc:  # noqa: BLE001 (the first error is the one to report)
                    log(f"reload: detaching the failed program: {exc}")
            raise
        self.engine = new
        old.poll(0)
        self._sweep_folds(old, force=True)
        old.detach()  # its pins went in _pin: closing its fds ends it
