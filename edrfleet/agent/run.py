"""The agent's foreground life: start, enforce, report, reload on SIGHUP, detach on SIGTERM.

Order at start (each failed step is reported by name in status.json and on stderr):
read policy -> lay it out for the maps -> compile and load the BPF program -> fill slot 0 ->
activate -> attach -> state "enforcing"/"monitoring".  The state changes only once the program
is attached with full maps.
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
from edrfleet.agent.lsm_probe import probe_lsm_load, probe_scope
from edrfleet.agent.maps import Packed, pack_bundle
from edrfleet.agent.release_check import verify_release
from edrfleet.agent.spool import Spool
from edrfleet.agent.status import write_status
from edrfleet.kernel_abi import load_header

BundleLoader = Callable[[Path], dict]
POLL_MS = 200
STATUS_EVERY = 1.0


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
        self.gen = 0
        self.engine: Engine | None = None
        self.wanted = "auto"
        self.lsm_possible = False
        self.scope_possible, self.scope_why = True, ""
        self.pending: list[dict] = []
        self.user_lost = 0
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
            "started_at": time.time(),
            "policy_source": str(opts.policy),
            "last_error": "",
        }

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        t0 = time.monotonic()
        self._write_status()
        # before anything of the release is loaded: a modified release never runs as root
        self._step("verify release", lambda: verify_release(self.bpf_dir))
        bundle = self._step("read policy", lambda: self.load_bundle(self.opts.policy))
        self.wanted = self._step("choose backend", lambda: self._wanted_backend(bundle))
        self.scope_possible, self.scope_why = probe_scope()
        self._step("check scope", lambda: self._check_scope(bundle))
        packed = self._step("lay out policy", lambda: self._pack(bundle))
        btf = self._step("read BTF", Btf.load)
        offsets = self._step("read kernel offsets from BTF", lambda: kernel_offsets(btf))
        self.lsm_possible, why = lsm_available(btf)
        if self.wanted == "lsm" and not self.lsm_possible:
            raise self._fail("choose backend", f"backend lsm is required but {why}")
        self.engine = self._step(
            "compile and load the BPF program",
            lambda: self._new_engine(offsets, packed),
        )
        self._install(self.engine, bundle, packed, slot=0)
        self._step("attach sched:sched_process_exec", self.engine.attach_exec)
        self._attach_lsm(self.engine, why)
        self._open_events(self.engine)
        self.status["backend"] = self.engine.backend
        self.status["state"] = "enforcing" if bundle["mode"] == "enforce" else "monitoring"
        self.status["enforcing_since"] = time.time()
        self.status["start_seconds"] = round(time.monotonic() - t0, 3)
        self._write_status()
        log(
            f"{self.status['state']}: {len(bundle['rules'])} rules, backend "
            f"{self.engine.backend}, policy {bundle['sha256'][:12]}, "
            f"started in {self.status['start_seconds']} s"
        )

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

    def _install(self, engine: Engine, bundle: dict, packed: Packed, slot: int) -> None:
        """Fill ``slot`` with a new generation and put it in force."""
        self.gen += 1
        backend = self.header[f"EDR_BACKEND_{engine.backend.upper()}"]
        engine.write_slot(slot, packed, self.gen, backend)
        generation = ecs.Generation(sha256=bundle["sha256"], rules=bundle["rules"])
        self.generations[self.gen] = (generation, packed.paths)
        for old in [g for g in self.generations if g < self.gen - 4]:
            del self.generations[old]
        engine.activate(slot)
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
                                         committed=ev.stage != ecs.STAGE_LSM)
            parent = ecs.resolve_parent(ev)
            self.pending.append(
                ecs.to_ecs(
                    ev, host=self.opts.host_name, generation=generation, clock=self.clock,
                    boot_id=self.boot_id, executable=exe, parent_executable=parent,
                )
            )

        def lost(count: int) -> None:
            self.user_lost += count

        engine.open_events(handle, lost)

    def _flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.spool.append(batch)
        if self.outputs:
            self.outputs.wake()  # they ship from the spool, each from its own cursor

    # -- reload ------------------------------------------------------------------------------
    def reload(self) -> None:
        """Load the policy file again; a policy that fails keeps the running one in force."""
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
            self.status["last_error"] = f"reload: {exc}"
            self.status["last_reload"] = {"at": time.time(), "ok": False, "error": str(exc)}
            log(f"reload refused, the running policy stays in force: {exc}")
            return
        old_sha, old_rules, old_mode = (self.status.get("policy_sha256"),
                                        self.status.get("rules"), self.status.get("mode"))
        if self.engine.fits(packed.needs(self.header)):
            self._install(self.engine, bundle, packed, self.engine.free_slot())
        else:  # bigger maps: a second program enforces before the first one goes
            old = self.engine
            gen = self.gen
            new = None
            try:
                new = self._new_engine(self.offsets, packed)
                self._install(new, bundle, packed, slot=0)
                new.attach_exec()
                if old.backend == "lsm":
                    new.attach_lsm()
                    self._set_backend(new, "lsm")
                self._open_events(new)
            except Exception as exc:  # the old program never stopped: it stays in force
                if new is not None:
                    new.detach()
                self.gen = gen
                self.status.update(policy_sha256=old_sha, rules=old_rules, mode=old_mode,
                                   generation=gen)
                self.status["last_error"] = f"reload: new program: {exc}"
                self.status["last_reload"] = {"at": time.time(), "ok": False,
                                              "error": f"new program: {exc}"}
                log(f"reload failed, the running program and policy stay in force: {exc}")
                return
            self.engine = new
            old.poll(0)
            old.detach()
        self.status["state"] = "enforcing" if bundle["mode"] == "enforce" else "monitoring"
        self.status["last_error"] = ""
        self.status["last_reload"] = {"at": time.time(), "ok": True, "sha256": bundle["sha256"]}
        log(f"reloaded: policy {bundle['sha256'][:12]}, {len(bundle['rules'])} rules")

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGHUP, lambda *_: self.flags.__setitem__("reload", True))
        signal.signal(signal.SIGTERM, lambda *_: self.flags.__setitem__("stop", True))
        signal.signal(signal.SIGINT, lambda *_: self.flags.__setitem__("stop", True))
        self.start()
        assert self.engine is not None
        next_status = time.monotonic() + STATUS_EVERY
        while not self.flags["stop"]:
            self.engine.poll(POLL_MS)
            self._flush()
            if self.flags["reload"]:
                self.flags["reload"] = False
                self.reload()
                self._write_status()
            if time.monotonic() >= next_status:
                self._write_status()
                next_status = time.monotonic() + STATUS_EVERY
        self.stop()
        return 0

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.poll(0)
            self._flush()
            self._write_status()  # last counters, read before the maps go away
            self.engine.detach()
            self.engine = None
        self.status["state"] = "stopped"
        self._write_status()
        if self.outputs:
            self.outputs.close()  # what does not go in time waits in the spool for next start
        self.spool.close()
        log("stopped: programs detached")

    def _write_status(self) -> None:
        if self.engine is not None:
            c = self.engine.counters()
            self.status.update(
                execs_seen=c["execs"], blocked=c["blocked"], would_block=c["would_block"],
                logged=c["logged"], events_lost=c["lost"] + self.user_lost,
                errors=c["errors"], candidates_dropped=c["dropped"],
            )
        if self.outputs:
            self.status["outputs"] = self.outputs.stats()
        write_status(str(self.opts.spool), self.status)


def lsm_available(btf: Btf) -> tuple[bool, str]:
    """Can BPF LSM programs work here at all?  (Loading may still be refused: then we fall back.)"""
    try:
        lsms = Path("/sys/kernel/security/lsm").read_text().strip().split(",")
    except OSError:
        return False, "securityfs is not mounted (/sys/kernel/security)"
    if "bpf" not in lsms:
        return False, f"'bpf' is not in the active LSMs ({','.join(lsms)}); boot with lsm=...,bpf"
    if not btf.has_func("bpf_lsm_bprm_check_security"):
        return False, "the kernel has no BPF LSM hook bprm_check_security (CONFIG_BPF_LSM)"
    return probe_lsm_load(btf.func_id("bpf_lsm_bprm_check_security"))


class AgentFailed(RuntimeError):
    """Start-up failed at a named step; status.json says state "failed" with the reason."""


def run_agent(opts: Options, load_bundle: BundleLoader) -> int:
    try:
        agent = Agent(opts, load_bundle)
        return agent.run()
    except (AgentFailed, EngineError, OSError, ValueError) as exc:
        log(f"failed: {exc}")
        return 1
