"""The BPF side of the agent: compile with BCC, fill the maps, attach, read events and counters.

One visible order: compile -> load -> fill slot -> activate -> attach -> pin -> poll.  Policies
live in two slots; a reload fills the inactive one and flips ``active`` with a single map write,
so there is never a moment without a complete policy in force.

Attachments are bpf links the engine creates itself (edrfleet/agent/bpfsys.py) and pins with
the maps and programs (edrfleet/agent/pins.py): closing the engine, or the process dying, leaves
them in force.  An engine can also *adopt* a pinned program: it compiles the same text with
the same flags for the layouts of its maps and events, loads nothing, and works on the pinned
maps.
"""

from __future__ import annotations

import ctypes as ct
import os
import time
from array import array
from collections.abc import Callable
from pathlib import Path

from edrfleet.agent.maps import Packed
from edrfleet.agent.pinned import bpfsys, pins, selfguard
from edrfleet.agent.pinned.ringbuf import RingReader, Rings
from edrfleet.agent.pinned.tables import PinnedMaps, describe
from edrfleet.kernel_abi import BPF_SOURCES, Header

SLOT_REUSE_SECONDS = 1.0  # an exec that read the old slot finishes long before this
# libbcc derives an LSM program's attach point from its name; every LSM-typed function (the
# hook and its tail-call targets, which must share its type and attach point) loads as this.
LSM_HOOK_NAME = b"lsm__bprm_check_security"
EXEC_FN = b"raw_tracepoint__sched_process_exec"
EXEC_TP = "sched_process_exec"
# prog arrays never change after load: frozen, so nobody swaps a tail-call target out
FROZEN_MAPS = ("progs", "progs_lsm")
# hash maps whose keys carry the slot: a slot refilled after adopting drops all of them
SLOT_HASHES = ("names", "inodes", "scope", "pnames", "pinodes", "dirs", "mcnames", "mcinodes",
               "fsizes")
RINGS = ("events_block", "events")  # ring buffers the agent reads: blocks first

# The -D switches of bpf/edrfleet.h are of three kinds.  FEATURES: matchers whose kernel code
# is compiled in only when the policy uses one (the default policy has no user/parent/cwd rule,
# and that code was 70 % of what the verifier walked in edr_judge); a policy that needs one
# later gets a new program (Engine.fits is false), like one that outgrows the maps.
FEATURES = ("EDR_WITH_UIDS", "EDR_WITH_CTX", "EDR_WITH_PF", "EDR_WITH_ANCESTORS", "EDR_WITH_STDIO",
            "EDR_WITH_MULTICALL")
# SHAPE: the program's shape, from the engine's own arguments.
SHAPE = ("EDR_WITH_LSM", "EDR_USE_PERFBUF", "EDR_SCAN_WINDOW", "EDR_WITH_SCOPE")
# EVENTS: ring buffer sizes and the flood aggregation of logged execs, the header's values.
EVENTS = ("EDR_RINGBUF_BLOCK_PAGES", "EDR_RINGBUF_LOG_PAGES", "EDR_LOG_WAKE_EVERY",
          "EDR_LOGAGG_MAX", "EDR_LOGAGG_WINDOW_MS", "EDR_LOGAGG_BURST")
# Every other switch is a map capacity (EDR_MAX_*, EDR_TRANS_MAX), sized from the policy.


def capacity_defaults(header: Header) -> dict[str, int]:
    """The map capacities a program starts from: the header's defaults of its capacity switches."""
    return {k: v for k, v in header.switches.items() if k not in FEATURES + SHAPE + EVENTS}


class EngineError(RuntimeError):
    """A step of bringing the program up failed; the message names the step."""


class VerifierTooComplex(EngineError):
    """The verifier ran out of its instruction budget (E2BIG): try a smaller scan window."""


def bpf_text(bpf_dir: Path) -> str:
    """The program's C text: the bpf/ files joined in order, the contract header first."""
    return "".join((bpf_dir / name).read_text() for name in BPF_SOURCES)


def scan_windows(header: Header) -> tuple[int, ...]:
    """Scan windows to try, largest first: the header's default, halved down to 512 bytes (a
    verifier that gives up on one gets the next: the 6.1 verifier does, 6.18 takes 4 KiB)."""
    windows, window = [], header.switches["EDR_SCAN_WINDOW"]
    while window >= 512:
        windows.append(window)
        window //= 2
    return tuple(windows)


def capacities_for(needs: dict[str, int], header: Header) -> dict[str, int]:
    """Map sizes with room for a policy twice as big as this one before a restart is needed."""
    caps = {
        key: max(base, _pow2(2 * needs.get(key, 0)))
        for key, base in capacity_defaults(header).items()
    }
    # trans is one map value, at most 4 MiB (KMALLOC_MAX_SIZE); entries address its rows
    caps["EDR_TRANS_MAX"] = min(caps["EDR_TRANS_MAX"], 1 << header["EDR_ROW_BITS"])
    caps.update({key: int(bool(needs.get(key, 0))) for key in FEATURES})
    return caps


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def tail_call_targets(header: Header, stage: str) -> list[tuple[int, bytes]]:
    """(index, function) of each tail-call target of ``stage`` ("" or "lsm_"), by enum edr_prog."""
    progs = header.enum_by_suffix("edr_prog", "EDR_PROG_")
    return [(i, f"edr_{stage}{name}".encode()) for name, i in progs.items() if name != "max"]


class Engine:
    """A compiled and loaded instance of the BPF program in bpf/."""

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

    def adopt_slots(self, slot: int, gen_keys: dict[int, dict[str, list]] | None = None) -> None:
        """After adopting: the slot in force, and the keys each slot's hash maps hold now."""
        self.active_slot = slot
        for s in (0, 1):
            self._keys[s] = (gen_keys or {}).get(s) or self._live_keys(s)

    def _live_keys(self, slot: int) -> dict[str, list]:
        keys: dict[str, list] = {}
        present = self.map_fds()
        for name in (n for n in SLOT_HASHES if n in present):
            keys[name] = [k for k in self.bpf[name] if k.slot == slot]
        return keys

    # -- policy slots ------------------------------------------------------------------------
    def fits(self, needs: dict[str, int]) -> bool:
        """The maps are big enough and the program holds every matcher the policy uses."""
        return all(needs[k] <= self.capacities[k] for k in needs)

    def free_slot(self) -> int:
        """The slot a new policy goes into; waits out in-flight execs of its last use."""
        slot = 0 if self.active_slot != 0 else 1
        wait = self._released_at[slot] + SLOT_REUSE_SECONDS - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return slot

    def write_slot(self, slot: int, packed: Packed, gen: int, backend: int) -> None:
        """Fill every map of ``slot``; the slot is not in force until activate()."""
        if not self.fits(packed.needs(self.header)):  # a rule would lose a condition
            raise EngineError("fill maps: the policy needs a program built for it (more "
                              f"capacity or matchers than {self.capacities})")
        self._clear_hash_keys(slot)
        b = self.bpf
        keys: dict[str, list] = {}

        cfg = b["config"].Leaf()
        cfg.mode, cfg.gen, cfg.backend = packed.mode, gen, backend
        cfg.scoped, cfg.unscanned_block = int(packed.scoped), int(packed.unscanned_block)
        cfg.n_wild = len(packed.wildcard)
        for i, g in enumerate(packed.wildcard):
            cfg.wild[i] = g
        cfg.pf_group = packed.prefilter if packed.prefilter is not None else 0xFFFFFFFF
        cfg.n_pf, cfg.pf_block = len(packed.pf_groups), packed.pf_block
        for i, g in enumerate(packed.pf_groups):
            cfg.pf[i] = g
        b["config"][ct.c_int(slot)] = cfg

        rules = b["rules"]
        for i, rule in enumerate(packed.rules):
            leaf = rules.Leaf()
            leaf.action, leaf.severity, leaf.n_uids = rule.action, rule.severity, len(rule.uids)
            leaf.fileless = int(rule.fileless)
            for j, uid in enumerate(rule.uids):
                leaf.uids[j] = uid
            leaf.parents, leaf.cwds = rule.parents, rule.cwds
            leaf.ancestors, leaf.inet_stdio = rule.ancestors, rule.inet_stdio
            rules[ct.c_int(slot * self.capacities["EDR_MAX_RULES"] + i)] = leaf

        groups = b["groups"]
        for i, grp in enumerate(packed.groups):
            leaf = groups.Leaf()
            leaf.start, leaf.n_rules, leaf.has_block = grp.start, len(grp.slots), grp.has_block
            ct.memmove(leaf.cls, bytes(grp.classes), len(grp.classes))
            for j, (need, rule) in enumerate(grp.slots):
                leaf.rules[j].need, leaf.rules[j].rule = need, rule
                leaf.rules[j].flags = grp.flags[j] if grp.flags else 0
            leaf.flags = 0
            for f in grp.flags:
                leaf.flags |= f
            groups[ct.c_int(slot * self.capacities["EDR_MAX_GROUPS"] + i)] = leaf

        trans = b["trans"].Leaf()
        data = array("I", packed.trans).tobytes()
        ct.memmove(trans.raw, data, len(data))
        b["trans"][ct.c_int(slot)] = trans
        accepts = b["accepts"].Leaf()
        data = array("Q", packed.accepts).tobytes()
        ct.memmove(accepts.raw, data, len(data))
        b["accepts"][ct.c_int(slot)] = accepts

        keys["names"] = self._fill_lists(
            "names", slot, packed.names.items(), lambda k, name: setattr(k, "name", name)
        )
        keys["inodes"] = self._fill_lists(
            "inodes", slot, packed.inodes.items(), _set_inode_key
        )
        keys["scope"] = self._fill_scope(slot, packed.scope)
        ctx = packed.context
        keys["pnames"] = self._fill_bits(
            "pnames", slot, ctx.pnames.items(), lambda k, name: setattr(k, "name", name))
        keys["pinodes"] = self._fill_bits("pinodes", slot, ctx.pinodes.items(), _set_inode_key)
        keys["dirs"] = self._fill_bits("dirs", slot, ctx.dirs.items(), _set_inode_key)
        one = lambda _table, _v: ct.c_uint32(1)  # noqa: E731 (a set: the key is the datum)
        keys["mcnames"] = self._fill("mcnames", slot, ((n, 1) for n in packed.mcnames),
                                     lambda k, name: setattr(k, "name", name), one)
        keys["mcinodes"] = self._fill("mcinodes", slot, ((i, 1) for i in packed.mcinodes),
                                      _set_inode_key, one)
        self._keys[slot] = keys

    def put_inodes(self, slot: int, items) -> None:
        """Add or replace "inodes" keys of a filled ``slot``: identities that changed on the
        host (edrfleet/agent/identity/keeper.py, from its thread).  They go with the slot's
        other keys on refill."""
        written = self._runtime_write(
            "inodes", lambda: self._fill_lists("inodes", slot, items, _set_inode_key))
        self._keys.setdefault(slot, {}).setdefault("inodes", []).extend(written)

    def put_sizes(self, slot: int, items) -> None:
        """Add or replace "fsizes" keys of ``slot``: protected files by (size, head hash), which
        an exec of a file unknown by its inode with that key is judged as (bpf/identity.c)."""
        written = self._runtime_write(
            "fsizes", lambda: self._fill_lists("fsizes", slot, items, _set_size_key))
        self._keys.setdefault(slot, {}).setdefault("fsizes", []).extend(written)

    def drop_inode(self, slot: int, ident: tuple[int, int]) -> None:
        table = self.bpf["inodes"]
        k = table.Key()
        k.slot = slot
        _set_inode_key(k, ident)

        def delete() -> list:
            try:
                del table[k]
            except KeyError:
                pass
            return [k]

        self._runtime_write("inodes", delete)

    def _runtime_write(self, name: str, write: Callable[[], list]) -> list:
        """A write of the agent's own while the policy is in force: under the tamper guard's
        lock, and taken into its snapshot, so the check never restores it as tampering."""
        guard = self.guard
        if guard is None:
            return write()
        with guard.lock:
            keys = write()
            guard.accept(name, [bytes(k) for k in keys])
        return keys

    def set_backend(self, slot: int, backend: int) -> None:
        cfg = self.bpf["config"][ct.c_int(slot)]
        cfg.backend = backend
        self.bpf["config"][ct.c_int(slot)] = cfg

    def activate(self, slot: int) -> None:
        """Put ``slot`` in force with one map write (the atomic switch)."""
        self.bpf["active"][ct.c_int(0)] = ct.c_uint32(slot)
        if self.active_slot >= 0 and self.active_slot != slot:
            self._released_at[self.active_slot] = time.monotonic()
        self.active_slot = slot

    def _fill(self, name: str, slot: int, items, set_key, leaf) -> list:
        """Write ``slot``'s entries of hash map ``name``; returns the keys written."""
        table = self.bpf[name]
        written = []
        for key_value, value in items:
            k = table.Key()
            k.slot = slot
            set_key(k, key_value)
            table[k] = leaf(table, value)
            written.append(k)
        return written

    def _fill_lists(self, name: str, slot: int, items, set_key) -> list:
        def group_list(table, groups):
            v = table.Leaf()
            v.n = len(groups)
            v.over = getattr(groups, "over", 0)  # maps.GroupList: groups left out
            for i, g in enumerate(groups):
                v.g[i] = g
            return v

        return self._fill(name, slot, items, set_key, group_list)

    def _fill_bits(self, name: str, slot: int, items, set_key) -> list:
        return self._fill(name, slot, items, set_key, lambda _table, bits: ct.c_uint64(bits))

    def _fill_scope(self, slot: int, cgroup_ids: list[int]) -> list:
        table = self.bpf["scope"]
        written = []
        for cgid in cgroup_ids:
            k = table.Key()
            k.slot, k.cgid = slot, cgid
            table[k] = ct.c_uint32(1)
            written.append(k)
        return written

    def _clear_hash_keys(self, slot: int) -> None:
        for name, keys in self._keys.get(slot, {}).items():
            table = self.bpf[name]
            for k in keys:
                try:
                    del table[k]
                except KeyError:
                    pass
        self._keys[slot] = {}

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

    # -- events and counters -----------------------------------------------------------------
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


def _set_size_key(k, key: tuple[int, int]) -> None:
    k.size, k.head = key


def _set_inode_key(k, ident: tuple[int, int]) -> None:
    k.dev, k.ino = ident
