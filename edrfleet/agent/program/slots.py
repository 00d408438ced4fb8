"""The policy slots of a program's maps: fill the inactive slot, flip ``active`` with one map
write, keep the keys each slot holds so a refill drops exactly them.  A mixin of
edrfleet/agent/engine.py's Engine (it works on ``self.bpf``, BCC's tables or the pinned maps)."""

from __future__ import annotations

import ctypes as ct
import time
from array import array
from collections.abc import Callable

from edrfleet.agent.maps import Packed
from edrfleet.agent.program.build import EngineError

SLOT_REUSE_SECONDS = 1.0  # an exec that read the old slot finishes long before this
# hash maps whose keys carry the slot: a slot refilled after adopting drops all of them
SLOT_HASHES = ("names", "inodes", "scope", "pnames", "pinodes", "dirs", "mcnames", "mcinodes",
               "fsizes", "cwdcls")


class SlotWriter:
    """Engine's policy slots (``self.bpf``, ``self.capacities``, ``self._keys``,
    ``self._released_at``, ``self.active_slot``, ``self.guard`` are the engine's)."""

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
            leaf.flags = self.header["EDR_CTX_CWDSYM"] if grp.cwdsym else 0
            for f in grp.flags:
                leaf.flags |= f
            leaf.part = grp.part
            groups[ct.c_int(slot * self.capacities["EDR_MAX_GROUPS"] + i)] = leaf

        nparts = self.capacities["EDR_TRANS_PARTS"]
        for part in range(nparts):
            trans = b["trans"].Leaf()
            if part < len(packed.trans):
                data = array("I", packed.trans[part]).tobytes()
                ct.memmove(trans.raw, data, len(data))
            b["trans"][ct.c_int(slot * nparts + part)] = trans
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
        if "cwdcls" in self.map_fds():  # a program of this version has it
            keys["cwdcls"] = self._fill("cwdcls", slot, packed.cwdcls.items(), _set_inode_key,
                                        _cwd_levels)
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


def _set_size_key(k, key: tuple[int, int]) -> None:
    k.size, k.head = key


def _set_inode_key(k, ident: tuple[int, int]) -> None:
    k.dev, k.ino = ident


def _cwd_levels(table, levels: list[int]):
    v = table.Leaf()
    for i, k in enumerate(levels):
        v.cls[i] = k
    return v
