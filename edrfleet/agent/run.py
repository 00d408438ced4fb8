"""The agent's foreground life: start, enforce, report, reload on SIGHUP, exit on SIGTERM.

Order at start (each failed step is reported by name in status.json and on stderr):
read policy -> lay it out for the maps -> adopt the pinned program of this spool, or compile
and load a new one -> fill a slot -> activate -> attach -> pin -> state "enforcing"/
"monitoring".  The state changes only once the program is attached with full maps.

The program stays pinned when the agent exits, by any signal: only ``agent disarm`` ends
enforcement (edrfleet/agent/pins.py).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
from edrfleet.agent.identity.keeper import IdentityKeeper
from edrfleet.agent.logfold import LogFolds
from edrfleet.agent.lsm_probe import lsm_available, probe_scope
from edrfleet.agent.maps import Packed, pack_bundle
from edrfleet.agent.pinned import adopt, handover, pins, tamper
from edrfleet.agent.release_check import verify_release
from edrfleet.agent.spool import Spool
from edrfleet.agent.status import read_status, write_status
from edrfleet.kernel_abi import load_header

BundleLoader = Callable[[Path], dict]
POLL_MS = 200
STATUS_EVERY = 1.0
FAIL_RELOAD_ENV = "EDRFLEET_TEST_FAIL_RELOAD"  # forced_failure()


@dataclass
class Options:
    policy: Path
    spool: Path = Path("/var/lib/edrfleet")
    host_name: str = field(default_factory=socket.gethostname)
    backend: str = "auto"  # auto | lsm | sigkill
    bpf_dir: Path | None = None
    syslog: str | None = None
    syslog_ca: str | None = None
    webhook: str | None = None
    webhook_format: str = "json"
    webhook_ca: str | None = None
    webhook_header_file: str | None = None
    outputs_file: str | None = None  # outputs/config.py: syslog + webhook, re-read on SIGHUP
    perfbuf: bool = False
    print_bpf: bool = False
    spool_max_bytes: int = 64 * 1024 * 1024


def log(msg: str) -> None:
    print(f"edrfleet-agent: {msg}", file=sys.stderr, flush=True)


def default_bpf_dir() -> Path:
    """bpf/ beside the package (repo checkout, installed tree) unless EDRFLEET_BPF_DIR says."""
    env = os.environ.get("EDRFLEET_BPF_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parents[2] / "bpf", here.parents[1] / "bpf", Path("/opt/edrfleet/bpf")]
    for c in candidates:
        if (c / "edrfleet.c").is_file():
            return c
    raise FileNotFoundError("bpf/edrfleet.c not found; pass --bpf-dir or set EDRFLEET_BPF_DIR")


def cgroup2_root() -> Path:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    raise FileNotFoundError("no cgroup v2 hierarchy is mounted (scope.cgroups needs one)")


def cgroup_id(path: str) -> int:
    """A cgroup v2 id is the inode of its directory; the cgroup must exist before the agent."""
    full = cgroup2_root() / path.lstrip("/")
    try:
        return os.stat(full).st_ino
    except FileNotFoundError:
        raise FileNotFoundError(f"scope cgroup {path} does not exist ({full})") from None


class Agent:
    def __init__(self, opts: Options, load_bundle: BundleLoader) -> None:
        self.opts = opts
        self.load_bundle = load_bundle
        self.bpf_dir = opts.bpf_dir or default_bpf_dir()
        self.header = load_header(self.bpf_dir)
        self.spool = Spool(str(opts.spool), max_bytes=opts.spool_max_bytes)
        self.outputs = None
        if opts.outputs_file:  # here: urllib and friends cost 15 ms of every start
            from edrfleet.agent.outputs.config import ConfiguredOutputs

            self.outputs = ConfiguredOutputs(str(opts.spool), opts.outputs_file, opts.host_name)
        elif opts.syslog or opts.webhook:
            from edrfleet.agent.outputs import from_options

            self.outputs = from_options(opts, str(opts.spool))
        self.clock = ecs.Clock.now()
        self.boot_id = ecs.boot_id()
        self.generations: dict[int, tuple[ecs.Generation, dict]] = {}
        self.offsets: dict[str, int] | None = None
        self.bundle: dict | None = None
        # the bundle in force (the identity keeper holds it too: no extra memory); a hand-over
        # after a failed reload passes it on
        self.in_force: dict | None = None
        self.lsm_why = ""
        self.handover = False
        self.t0 = time.monotonic()
        self.gen = 0
        self.engine: Engine | None = None
        self.identities: IdentityKeeper | None = None
        self.guard: tamper.Guard | None = None
        self.wanted = "auto"
        self.lsm_possible = False
        self.scope_possible, self.scope_why = True, ""
        self.pending: list[dict] = []
        self.user_lost = 0
        self.folds = LogFolds(self.header["EDR_LOGAGG_WINDOW_MS"] * 1_000_000)
        self.installed_at = 0.0  # the last generation's install (monotonic)
        self.flags = {"reload": False, "stop": False}
        self.status: dict = {
            "state": "starting",
            "backend": "",
            "policy_sha256": "",
            "rules": 0,
            "pid": os.getpid(),
            "version": __version__,
            "kernel": os.uname().release,
            "execs_seen": 0,
            "blocked": 0,
            "would_block": 0,
            "logged": 0,
            "events_lost": 0,
            "drops": {"block": 0, "log": 0},
            "started_at": time.time(),
            "policy_source": str(opts.policy),
            "last_error": "",
        }

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        # a hand-over (_shed_bcc) carries the start time of the image that loaded the program
        handed_t0, self.handed_bundle, handed_reload = handover.take()
        t0 = handed_t0 if handed_t0 is not None else time.monotonic()
        self.handover = handed_t0 is not None
        if self.handover:  # same pid, same agent: readers never see it "starting" again
            self.status.update(read_status(str(self.opts.spool)) or {}, pid=os.getpid())
            if handed_reload:
                self.status["last_reload"] = handed_reload
        self._write_status()
        # before anything of the release is loaded: a modified release never runs as root
        self._step("verify release", lambda: verify_release(self.bpf_dir))
        bundle = self._step("read policy", self._read_policy)
        self.wanted = self._step("choose backend", lambda: self._wanted_backend(bundle))
        self.scope_possible, self.scope_why = probe_scope()
        self._step("check scope", lambda: self._check_scope(bundle))
        packed = self._step("lay out policy", lambda: self._pack(bundle))
        self.identities = IdentityKeeper(log, self.header)
        manifest = self._step("read pinned.json", lambda: pins.read_manifest(self.opts.spool))
        self.text_sha = adopt.text_sha256(self.bpf_dir)
        why_new = adopt.why_not(manifest, self.text_sha, packed.needs(self.header),
                                self.wanted, __version__)
        if manifest and not why_new:
            self._adopt(manifest, bundle, packed)
        else:
            if manifest:
                log(f"new program: {why_new}")
            btf = self._step("read BTF", Btf.load)
            offsets = self._step("read kernel offsets from BTF", lambda: self._kernel(btf))
            why = self.lsm_why
            if self.wanted == "lsm" and not self.lsm_possible:
                raise self._fail("choose backend", f"backend lsm is required but {why}")
            self._fresh(bundle, packed, offsets, why)
        self._save_manifest()
        self._open_events(self.engine)
        self.identities.start()
        self.status["backend"] = self.engine.backend
        self.status["state"] = "enforcing" if bundle["mode"] == "enforce" else "monitoring"
        self.status["enforcing_since"] = time.time()
        self.status["start_seconds"] = round(time.monotonic() - t0, 3)
        self.t0 = t0
        self._write_status()
        log(
            f"{self.status['state']}: {len(bundle['rules'])} rules, backend "
            f"{self.engine.backend}, policy {bundle['sha256'][:12]}, "
            f"started in {self.status['start_seconds']} s"
        )

    def _read_policy(self) -> dict:
        """The policy file; after a hand-over the bundle the loading image put in force."""
        bundle, self.handed_bundle = self.handed_bundle, None
        return bundle if bundle is not None else self.load_bundle(self.opts.policy)

    def _kernel(self, btf: Btf | None = None) -> dict[str, int]:
        """Offsets and LSM availability from BTF (only a new program needs them)."""
        if self.offsets is None:
            btf = btf or Btf.load()
            self.offsets = kernel_offsets(btf)
            self.lsm_possible, self.lsm_why = lsm_available(btf)
        return self.offsets

    def _shed_bcc(self) -> None:
        """Hand over to a fresh image of this process that adopts what was just pinned: the
        resident agent must not keep BCC and LLVM loaded (edrfleet/agent/pinned/handover.py)."""
        if not handover.wanted(self.opts.perfbuf):
            return
        if self.bundle is None:  # the image would read a policy file not in force: keep BCC
            log("BCC stays loaded until a reload succeeds (no bundle in force to hand over)")
            return
        assert self.engine is not None
        if self.identities is not None:  # the resident image starts its own keeper
            self.identities.close()  # (its fanotify fd is close-on-exec anyway)
            self.identities = None
        self.engine.poll(0)
        self._flush()
        self._write_status()
        handover.exec_resident(str(self.opts.spool), self.t0, self.bundle,
                               self.status.get("last_reload"), self.flags)

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

    def _step(self, name: str, fn):
        try:
            return fn()
        except Exception as exc:
            self.status["state"] = "failed"
            self.status["last_error"] = f"{name}: {exc}"
            self._write_status()
            raise AgentFailed(f"{name}: {exc}") from exc

    def _wanted_backend(self, bundle: dict) -> str:
        """The backend the flag and the policy require together ("auto" if neither does)."""
        wanted = {self.opts.backend, bundle.get("backend", "auto")} - {"auto"}
        if len(wanted) > 1:
            raise ValueError(f"policy and --backend require different backends: {sorted(wanted)}")
        return wanted.pop() if wanted else "auto"

    def _check_scope(self, bundle: dict) -> None:
        """A scoped policy on a kernel that cannot tell the exec's cgroups is refused, never
        loaded to match nothing."""
        if bundle.get("scope", {}).get("cgroups") and not self.scope_possible:
            raise ValueError(self.scope_why)

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

    def _fail(self, step: str, msg: str) -> AgentFailed:
        self.status["state"] = "failed"
        self.status["last_error"] = f"{step}: {msg}"
        self._write_status()
        return AgentFailed(f"{step}: {msg}")

    def _pack(self, bundle: dict) -> Packed:
        return pack_bundle(bundle, self.header, cgroup_id=cgroup_id)

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
        self.bundle = self.in_force = bundle  # a hand-over passes it on (_shed_bcc)
        self.installed_at = time.monotonic()
        if self.identities is not None:  # keys follow the host's files from now on
            self.identities.follow(engine, slot, bundle, packed)
        self.status.update(
            policy_sha256=bundle["sha256"], rules=len(bundle["rules"]),
            mode=bundle["mode"], generation=self.gen,
        )

    # -- events ------------------------------------------------------------------------------
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

    # -- reload ------------------------------------------------------------------------------
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
            self.bundle = self.in_force = in_force
            self._reload_failed(f"{'fill maps' if fits else 'new program'}: {exc}",
                                "reload failed, the running program and policy stay in force")
            return
        self._save_manifest()
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

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGHUP, lambda *_: self.flags.__setitem__("reload", True))
        signal.signal(signal.SIGTERM, lambda *_: self.flags.__setitem__("stop", True))
        signal.signal(signal.SIGINT, lambda *_: self.flags.__setitem__("stop", True))
        handover.ready()  # signals held across a hand-over arrive now
        self.start()
        self._shed_bcc()
        self.bundle = None
        handover.release_memory()  # the bundle's tables and the packing are garbage now
        assert self.engine is not None
        next_status = time.monotonic() + STATUS_EVERY
        next_check = time.monotonic() + tamper.CHECK_EVERY
        while not self.flags["stop"]:
            self.engine.poll(POLL_MS)
            self._flush()
            if self.flags["reload"]:
                self.flags["reload"] = False
                self.reload()
                self._write_status()
                self._shed_bcc()
                self.bundle = None
            if time.monotonic() >= next_check:
                self._check_tamper()
                next_check = time.monotonic() + tamper.CHECK_EVERY
            if time.monotonic() >= next_status:
                self._sweep_folds(self.engine)
                self._flush()
                self._write_status()
                next_status = time.monotonic() + STATUS_EVERY
        self.stop()
        return 0

    def stop(self) -> None:
        """Exit, leaving the pinned program in force (``agent disarm`` ends enforcement)."""
        if self.identities is not None:
            self.identities.close()  # execs of the host no longer wait for us
            self.identities = None
        if self.engine is not None:
            self.engine.poll(0)
            self._sweep_folds(self.engine, force=True)
            self._flush()
            self._write_status()  # last counters, read while the maps are open
            self.engine.close()
            self.engine = None
        self.status["state"] = "stopped"
        self._write_status()
        if self.outputs:
            self.outputs.close()  # what does not go in time waits in the spool for next start
        self.spool.close()
        log(f"stopped: enforcement stays pinned ({self.status.get('pinned', '-')}); "
            "`agent disarm` ends it")

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


def forced_failure(step: str) -> None:
    """Fault injection for the kernel tests: a reload's new program fails at ``step``
    ("compile": before it is built; "attach": built, filled and attached, before it is pinned)
    when the agent's environment says so."""
    if os.environ.get(FAIL_RELOAD_ENV) == step:
        raise EngineError(f"{step}: forced by {FAIL_RELOAD_ENV}")


class AgentFailed(RuntimeError):
    """Start-up failed at a named step; status.json says state "failed" with the reason."""


def run_agent(opts: Options, load_bundle: BundleLoader) -> int:
    try:
        agent = Agent(opts, load_bundle)
        return agent.run()
    except (AgentFailed, EngineError, OSError, ValueError) as exc:
        log(f"failed: {exc}")
        return 1
