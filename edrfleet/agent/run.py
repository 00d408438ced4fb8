"""The agent's foreground life: start, enforce, report, reload on SIGHUP, exit on SIGTERM.

Order at start (each failed step is reported by name in status.json and on stderr):
read policy -> lay it out for the maps -> adopt the pinned program of this spool, or compile
and load a new one -> fill a slot -> activate -> attach -> pin -> state "enforcing"/
"monitoring".  The state changes only once the program is attached with full maps.

The program stays pinned when the agent exits, by any signal: only ``agent disarm`` ends
enforcement (edrfleet/agent/pinned/pins.py).  The agent's parts are in edrfleet/agent/runner/.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edrfleet import __version__
from edrfleet.agent import ecs
from edrfleet.agent.btf import Btf
from edrfleet.agent.engine import Engine, EngineError
from edrfleet.agent.identity.keeper import IdentityKeeper
from edrfleet.agent.logfold import LogFolds
from edrfleet.agent.lsm_probe import lsm_available, probe_scope  # noqa: F401 (tests import it here)
from edrfleet.agent.maps import Packed, pack_bundle
from edrfleet.agent.pinned import adopt, handover, pins, selfguard, tamper
from edrfleet.agent.release_check import verify_release
from edrfleet.agent.runner import log
from edrfleet.agent.runner.events import EventFlow
from edrfleet.agent.runner.program import ProgramSteps
from edrfleet.agent.runner.reload import Reloader
from edrfleet.agent.spool import Spool
from edrfleet.agent.status import read_status
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


class Agent(ProgramSteps, EventFlow, Reloader):
    """The agent: its start, loop and stop here; bringing a program into force, events and
    the reload are in edrfleet/agent/runner/."""

    def __init__(self, opts: Options, load_bundle: BundleLoader) -> None:
        self.opts = opts
        self.load_bundle = load_bundle
        self.bpf_dir = opts.bpf_dir or default_bpf_dir()
        self.header = load_header(self.bpf_dir)
        self.spool = Spool(str(opts.spool), max_bytes=opts.spool_max_bytes)
        # checked now, started in the image that runs the loop (run): one that hands over to
        # the resident image must not ship, or its exec cuts a batch off before its cursor
        self.outputs = None
        if opts.outputs_file:  # here: urllib and friends cost 15 ms of every start
            from edrfleet.agent.outputs.config import ConfiguredOutputs

            self.outputs = ConfiguredOutputs(str(opts.spool), opts.outputs_file, opts.host_name,
                                             start=False)
        elif opts.syslog or opts.webhook:
            from edrfleet.agent.outputs import from_options

            self.outputs = from_options(opts, str(opts.spool), start=False)
        self.clock = ecs.Clock.now()
        self.boot_id = ecs.boot_id()
        self.generations: dict[int, tuple[ecs.Generation, dict]] = {}
        self.offsets: dict[str, int] | None = None
        self.bundle: dict | None = None
        # the bundle in force, as compressed JSON (its tables are tens of MiB as Python
        # objects): a hand-over after a failed reload passes it on
        self.in_force: bytes | None = None
        self.lsm_why = ""
        self.handover = False
        self.t0 = time.monotonic()
        self.gen = 0
        self.engine: Engine | None = None
        self.identities: IdentityKeeper | None = None
        self.guard: tamper.Guard | None = None
        self.selfguard = selfguard.SelfGuard(str(opts.spool))  # backend lsm: bpf/guard.c
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
            if self.outputs:
                self.outputs.carry(self.status.get("outputs") or {})
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
        self.status["guard"] = self.selfguard.arm(self.engine, self.lsm_why,
                                                  self.status.get("guard"))
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
        if self.outputs:  # a hand-over after a reload: what goes in a second, with its cursor
            self.outputs.close(deadline=1.0)
        self._write_status()
        handover.exec_resident(str(self.opts.spool), self.t0, self.bundle,
                               self.status.get("last_reload"), self.flags)

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

    def _fail(self, step: str, msg: str) -> AgentFailed:
        self.status["state"] = "failed"
        self.status["last_error"] = f"{step}: {msg}"
        self._write_status()
        return AgentFailed(f"{step}: {msg}")

    def _pack(self, bundle: dict) -> Packed:
        return pack_bundle(bundle, self.header, cgroup_id=cgroup_id)

    # -- loop --------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGHUP, lambda *_: self.flags.__setitem__("reload", True))
        signal.signal(signal.SIGTERM, lambda *_: self.flags.__setitem__("stop", True))
        signal.signal(signal.SIGINT, lambda *_: self.flags.__setitem__("stop", True))
        handover.ready()  # signals held across a hand-over arrive now
        handover.keep_heap_small()
        self.start()
        self._shed_bcc()
        if self.outputs:
            self.outputs.start()
        self.bundle = None
        handover.release_memory()  # the bundle's tables and the packing are garbage now
        assert self.engine is not None
        next_status = time.monotonic() + STATUS_EVERY
        next_check = time.monotonic() + tamper.CHECK_EVERY
        while not self.flags["stop"]:
            self.engine.poll(POLL_MS)
            self.pending += self.selfguard.tick(self.opts.host_name, __version__)
            if self.selfguard.stop_requested():  # `agent disarm`: we exit, the guard goes
                self.flags["stop"] = True
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
        self.selfguard.release()  # the kernel would at our exit; status.json says it now
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


class AgentFailed(RuntimeError):
    """Start-up failed at a named step; status.json says state "failed" with the reason."""


def run_agent(opts: Options, load_bundle: BundleLoader) -> int:
    try:
        agent = Agent(opts, load_bundle)
        return agent.run()
    except (AgentFailed, EngineError, OSError, ValueError) as exc:
        log(f"failed: {exc}")
        return 1
