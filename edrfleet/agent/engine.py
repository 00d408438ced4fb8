"""The BPF side of the agent: compile with BCC, fill the maps, attach, read events and counters.

One visible order: compile -> load -> fill slot -> activate -> attach -> pin -> poll.  Policies
live in two slots; a reload fills the inactive one and flips ``active`` with a single map write,
so there is never a moment without a complete policy in force.

Attachments are bpf links the engine creates itself (edrfleet/agent/pinned/bpfsys.py) and pins
with the maps and programs (edrfleet/agent/pinned/pins.py): closing the engine, or the process
dying, leaves them in force.  An engine can also *adopt* a pinned program: it compiles the same
text with the same flags for the layouts of its maps and events, loads nothing, and works on
the pinned maps.
"""

from __future__ import annotations

import ctypes as ct
import os
from collections.abc import Callable
from pathlib import Path

from edrfleet.agent.pinned import bpfsys, pins, selfguard
from edrfleet.agent.pinned.ringbuf import Rings
from edrfleet.agent.pinned.tables import PinnedMaps, describe
from edrfleet.agent.program.build import (  # noqa: F401 (the engine's names, as before)
    EVENTS,
    FEATURES,
    SHAPE,
    EngineError,
    VerifierTooComplex,
    bpf_text,
    capacities_for,
    capacity_defaults,
    scan_windows,
    tail_call_targets,
)
from edrfleet.agent.program.events import RINGS, EventReader
from edrfleet.agent.program.slots import SLOT_HASHES, SLOT_REUSE_SECONDS, SlotWriter  # noqa: F401
from edrfleet.kernel_abi import Header

# libbcc derives an LSM program's attach point from its name; every LSM-typed function (the
# hook and its tail-call targets, which must share its type and attach point) loads as this.
LSM_HOOK_NAME = b"lsm__bprm_check_security"
EXEC_FN = b"raw_tracepoint__sched_process_exec"
EXEC_TP = "sched_process_exec"
# prog arrays never change after load: frozen, so nobody swaps a tail-call target out
FROZEN_MAPS = ("progs", "progs_lsm")


class Engine(SlotWriter, EventReader):
    """A compiled and loaded instance of the BPF program in bpf/: built and loaded here, its
    policy slots (edrfleet/agent/program/slots.py) and events (program/events.py) mixed in."""

    def __init__(
        self,
        bpf_dir: Path,
        header: Header,
        offsets: dict[str, int],
        capacities: dict[str, int],
        *,
        perfbuf: bool = False,
        with_lsm: bool = False,
        with_scope: bool = True,
        scan_window: int | None = None,
        print_text: Callable[[str], None] | None = None,
        adopt: dict[str, int] | None = None,
        cflags: list[str] | None = None,
    ) -> None:
        self.header = header
        self.capacities = {**{k: header.switches[k] for k in FEATURES}, **capacities}
        self.perfbuf = perfbuf
        self.backend = ""
        self.with_lsm = with_lsm
        self.with_scope = with_scope
        self.scan_window = scan_window or header.switches["EDR_SCAN_WINDOW"]
        self._lsm_fds: list[int] = []
        self.links: dict[str, int] = {}
        self._ring: Rings | None = None
        self.pdir = ""  # the bpffs directory this program is pinned in
        self._keys: dict[int, dict[str, list]] = {0: {}, 1: {}}
        self._released_at = [0.0, 0.0]
        self.active_slot = -1
        self.guard = None  # a tamper.Guard once the policy is armed (Agent._save_manifest)
        # every switch of the header, always: its defaults are what this engine starts from
        switches = {**header.switches, **self.capacities, "EDR_WITH_LSM": int(with_lsm),
                    "EDR_WITH_SCOPE": int(with_scope),
                    "EDR_USE_PERFBUF": int(perfbuf), "EDR_SCAN_WINDOW": self.scan_window}
        self.cflags = [f"-D{k}={v}" for k, v in sorted({**offsets, **switches}.items())]
        # BCC runs its own -O3 module pipeline on what clang emits: clang's -O2 pipeline before
        # it (BCC's default flag) optimized everything twice.  -O0 without optnone leaves the
        # optimizing to BCC's pass: 25 % less compile (bench/agent_start.py), programs of the
        # same size that the 6.1 and 6.18 verifiers take (tests/kernel, tests/vm).
        self.cflags += ["-O0", "-Xclang", "-disable-O0-optnone"]
        if not print_text:  # no debug info (source lines in verifier logs): 10 % of the compile
            self.cflags.append("-g0")
        if cflags is not None:  # adopting: exactly the flags the pinned program was built with
            self.cflags = list(cflags)
        text = bpf_text(bpf_dir)
        self.map_names = pins.map_names(text)  # every file's maps (identity.c: "fsizes")
        if print_text:
            print_text("\n".join(f"#define {f[2:].replace('=', ' ', 1)}"
                                  for f in self.cflags if f.startswith("-D")))
            print_text(text)
        from bcc import BPF  # the agent's only non-stdlib import

        class _NoAutoload(BPF):  # attach by hand, in order, after the maps are full
            def _trace_autoload(self) -> None:
                pass

        self._BPF = BPF
        try:
            self.bpf = _NoAutoload(text=text, cflags=self.cflags)
        except Exception as exc:
            raise EngineError(f"compile the BPF program (bpf/): {exc}") from exc
        self.prog_fds: dict[str, int] = {}
        if adopt is not None:
            self._use_maps(adopt)
            return
        try:
            for index, name in tail_call_targets(self.header, ""):
                fn = self.bpf.load_func(name, BPF.RAW_TRACEPOINT)
                self.bpf["progs"][ct.c_int(index)] = ct.c_int(fn.fd)
                self.prog_fds[name.decode()] = fn.fd
            self._exec_fn = self.bpf.load_func(EXEC_FN, BPF.RAW_TRACEPOINT)
            self.prog_fds["exec"] = self._exec_fn.fd
        except Exception as exc:
            self.bpf.cleanup()
            if "Argument list too long" in str(exc):
                raise VerifierTooComplex(f"load programs (verifier): {exc}") from exc
            raise EngineError(f"load programs (verifier): {exc}") from exc

    @classmethod
    def adopted(cls, header: Header, manifest: dict, maps: PinnedMaps) -> Engine:
        """An engine on pinned maps with the layouts the loader recorded: no BCC, no LLVM."""
        e = cls.__new__(cls)
        e.header, e.bpf = header, maps
        e.capacities = manifest["capacities"]
        e.perfbuf, e.with_lsm = manifest["perfbuf"], manifest["with_lsm"]
        e.with_scope, e.scan_window = manifest["with_scope"], manifest["scan_window"]
        e.cflags, e.backend = manifest["cflags"], manifest["backend"]
        e.map_names = list(maps.tables)
        e._lsm_fds, e.links, e.pdir, e._ring, e.prog_fds = [], {}, "", None, {}
        e._keys, e._released_at, e.active_slot = {0: {}, 1: {}}, [0.0, 0.0], -1
        e._layout = manifest["layout"]
        e.guard = None
        return e

    def layout(self) -> dict:
        """Key and value types of every map and the event record, as data (tables.describe)."""
        if isinstance(self.bpf, PinnedMaps):
            return self._layout
        from bcc.table import _get_event_class

        maps = {name: {"key": describe(self.bpf[name].Key), "leaf": describe(self.bpf[name].Leaf)}
                for name in self.map_fds() if name not in RINGS}
        event = None if self.perfbuf else describe(_get_event_class(self.bpf["events"]))
        return {"maps": maps, "event": event}

    def _use_maps(self, fds: dict[str, int]) -> None:
        """Work on the pinned maps: BCC's tables keep their types, take the pinned fds."""
        for name, fd in fds.items():
            if name in self.map_names:
                self.bpf[name].map_fd = fd
        self._adopted_fds = fds

    def map_fds(self) -> dict[str, int]:
        """The fd of every map of the program, by name (what gets pinned)."""
        if isinstance(self.bpf, PinnedMaps):
            return self.bpf.map_fds()
        out = {}
        for name in self.map_names:
            fd = self._BPF_lib().bpf_table_fd(self.bpf.module, name.encode())
            if fd >= 0:
                out[name] = self.bpf[name].map_fd
        return out

    @staticmethod
    def _BPF_lib():
        from bcc import lib

        return lib

    def freeze(self) -> None:
        """Freeze the maps nothing writes after load (bpftool cannot change them then)."""
        fds = self.map_fds()
        for name in FROZEN_MAPS:
            if name in fds:
                bpfsys.map_freeze(fds[name])

    def pin(self, inst: str) -> str:
        """Pin maps, programs and links under the instance directory ``inst``."""
        self.pdir = pins.pin_program(inst, self.map_fds(), self.prog_fds, self.links)
        return self.pdir

    # -- attach ------------------------------------------------------------------------------
    def attach_exec(self) -> None:
        try:
            self.links["exec"] = bpfsys.raw_tracepoint_open(self._exec_fn.fd, EXEC_TP)
        except OSError as exc:
            raise EngineError(f"attach raw tracepoint {EXEC_TP}: {exc}") from exc

    def attach_lsm(self) -> None:
        """Load the LSM programs and attach bprm_check_security; raises EngineError."""
        if not self.with_lsm:
            raise EngineError("attach BPF LSM: the program was built without EDR_WITH_LSM")
        for index, name in tail_call_targets(self.header, "lsm_"):
            fd = self._load_lsm(name)
            self.bpf["progs_lsm"][ct.c_int(index)] = ct.c_int(fd)
            self.prog_fds[name.decode()] = fd
        check = self._load_lsm(b"edr_lsm_check")
        self.prog_fds["lsm_check"] = check
        try:
            self.links["lsm"] = bpfsys.raw_tracepoint_open(check, None)
        except OSError as exc:
            raise EngineError(f"attach BPF LSM bprm_check_security: {exc}") from exc
        self.guard_why = selfguard.attach(self)  # bpf/guard.c: self-protection

    def _load_lsm(self, func: bytes, hook: bytes = LSM_HOOK_NAME) -> int:
        from bcc import BPF, lib

        module = self.bpf.module
        fd = lib.bcc_func_load(
            module, BPF.LSM, hook,
            lib.bpf_function_start(module, func), lib.bpf_function_size(module, func),
            lib.bpf_module_license(module), lib.bpf_module_kern_version(module),
            0, None, 0, None, -1,
        )
        if fd < 0:
            err = os.strerror(ct.get_errno())
            raise EngineError(f"load {func.decode()} as a BPF LSM program: {err}")
        self._lsm_fds.append(fd)
        return fd

    def close(self) -> None:
        """Let go of every fd: what is pinned stays in force, what is not is detached."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        pins.close_all(self.links, getattr(self, "_adopted_fds", {}))
        for fd in reversed(self._lsm_fds):
            os.close(fd)
        self._lsm_fds = []
        self.bpf.cleanup()

    def detach(self) -> None:
        """End this program's enforcement: unpin it, then close."""
        if self.pdir and os.path.isdir(self.pdir):
            pins.remove_program(self.pdir)
        self.pdir = ""
        self.close()
