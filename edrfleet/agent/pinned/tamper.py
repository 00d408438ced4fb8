"""Tamper check: the live policy maps against what the agent wrote, restored when they differ.

A pinned map can be written by any root process (``bpftool map update pinned ...``): one write
of ``mode=0`` into ``config`` switches blocking off.  The prog arrays are frozen at load
(``BPF_MAP_FREEZE``: no write through ``bpf(2)`` ever again); the policy maps cannot be, since
every reload writes them.  So after each install the agent takes a snapshot of every entry of
every policy map (both slots) and its sha256, and on a short period (``CHECK_EVERY``) reads
every map of at most ``SMALL_MAP`` entries and ``SMALL_BYTES`` (``active`` and ``config``
always: one write there switches blocking off) and one of the bigger maps in turn (with the
default policy ``rules``, ``groups`` and the automaton table ``trans``, each read every third
period): any entry changed, added or removed
is written back (or deleted) and reported, as ``tampered`` in status.json and an event.  A map
stays tampered at most ``CHECK_EVERY * (1 + bigger maps)``.  Reading every map every second
cost the resident agent ~46 ms of CPU a second with the default policy (one ``bpf(2)`` lookup
per entry: ``rules`` alone is 2 048 entries, 12 ms) and slowed a fork+exec loop by 6-11 %
(bench/exec_overhead.py).  The pinned links are checked too: one unpinned by someone else is
pinned again from the fd the agent holds.

Reads and writes go straight through bpfsys (no BCC): the check costs one ``bpf(2)`` lookup per
entry.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zlib

from edrfleet.agent import ecs
from edrfleet.agent.pinned import bpfsys

CHECK_EVERY = 1.0  # seconds between checks: the longest a tampered map stays tampered
POLICY_MAPS = ("active", "config", "rules", "groups", "trans", "accepts",
               "names", "inodes", "scope", "pnames", "pinodes", "dirs", "mcnames", "mcinodes",
               "fsizes", "cwdcls")
# Not checked: what the kernel program writes (ring buffers events/events_block, logagg,
# counters, scratch, lsm_passed).  "inodes" and "fsizes" are also written by the agent's
# identity keeper at run time: those writes go through Guard.accept (Engine._runtime_write).
_HASH_TYPES = (1, 9)  # BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH
# values this big (the automaton table: up to 4 MiB a slot) are kept as a digest plus their
# compressed bytes: the resident agent's memory is the budget (README, ≤ 40 MB)
BIG = 4096

Snapshot = dict[str, dict[bytes, bytes]]
EVERY_CHECK = ("active", "config")  # read at every check, whatever their size
SMALL_MAP = 256  # entries: a map this small is read at every check; a bigger one in turn
SMALL_BYTES = 64 << 10  # and no more bytes than this: the automaton table ("trans", 4 MiB a
# value) read at every check cost the resident agent ~20 µs of CPU per exec of a fork+exec loop


class Guard:
    def __init__(self, map_fds: dict[str, int]) -> None:
        self.maps = {name: (map_fds[name], bpfsys.map_info(map_fds[name]))
                     for name in POLICY_MAPS if name in map_fds}
        self.expected: Snapshot = {}
        self.packed: Snapshot = {}
        self.sha256 = ""
        # the identity keeper writes from its own thread: a write and its snapshot update are
        # one step against a check (else the check sees one without the other)
        self.lock = threading.RLock()
        self._turn = 0  # the next of the maps checked in turn

    def snapshot(self, names: tuple[str, ...] | None = None) -> Snapshot:
        snap: Snapshot = {}
        for name, (fd, info) in self.maps.items():
            if names is not None and name not in names:
                continue
            if info["type"] in _HASH_TYPES:
                keys = bpfsys.map_keys(fd, info["key_size"])
            else:
                keys = [i.to_bytes(4, "little") for i in range(info["max_entries"])]
            entries = {}
            for k in keys:
                v = bpfsys.map_lookup(fd, k, info["value_size"])
                if v is not None:
                    entries[k] = v
            snap[name] = entries
        return snap

    def arm(self) -> str:
        """Take what is in the maps now as what must stay there (after an install)."""
        with self.lock:
            return self._arm()

    def _arm(self) -> str:
        snap = self.snapshot()
        self.sha256 = digest(snap)
        self.packed = {name: {k: zlib.compress(v, 1) for k, v in entries.items() if len(v) >= BIG}
                       for name, entries in snap.items()}
        self.expected = {name: {k: _fingerprint(v) for k, v in entries.items()}
                         for name, entries in snap.items()}
        return self.sha256

    def accept(self, name: str, keys: list[bytes]) -> None:
        """The agent itself wrote (or deleted) ``keys`` of map ``name``: what they hold now is
        what must stay.  Called with :attr:`lock` held, right after the write."""
        if name not in self.maps or not self.expected:
            return
        fd, info = self.maps[name]
        with self.lock:
            want, packed = self.expected.setdefault(name, {}), self.packed.setdefault(name, {})
            for k in keys:
                v = bpfsys.map_lookup(fd, k, info["value_size"])
                packed.pop(k, None)
                if v is None:
                    want.pop(k, None)
                    continue
                want[k] = _fingerprint(v)
                if len(v) >= BIG:
                    packed[k] = zlib.compress(v, 1)

    def check(self) -> list[str]:
        """Compare, restore, and describe what differed ([] when nothing did)."""
        with self.lock:
            return self._check()

    def in_turn(self) -> list[str]:
        """The maps read one a check, in turn (the others are read at every check)."""
        return [n for n in self.expected if n not in EVERY_CHECK and (
            len(self.expected[n]) > SMALL_MAP
            or len(self.expected[n]) * self.maps[n][1]["value_size"] > SMALL_BYTES)]

    def _check(self) -> list[str]:
        if not self.expected:
            return []
        rest = self.in_turn()
        names = tuple(n for n in self.expected if n not in rest)
        if rest:
            names += (rest[self._turn % len(rest)],)
            self._turn += 1
        live = self.snapshot(names)
        changes: list[str] = []
        for name, want in self.expected.items():
            if name not in names:
                continue
            fd, _info = self.maps[name]
            have = live.get(name, {})
            for k, v in want.items():
                if k not in have or _fingerprint(have[k]) != v:
                    big = self.packed[name].get(k)
                    value = zlib.decompress(big) if big is not None else v
                    what = "removed" if k not in have else describe(name, k, have[k], value)
                    changes.append(f"{name}[{_key(k)}] {what}")
                    bpfsys.map_update(fd, k, value)
            for k in have.keys() - want.keys():
                changes.append(f"{name}[{_key(k)}] added")
                bpfsys.map_delete(fd, k)
        return changes


def check_links(pdir: str, links: dict[str, int]) -> list[str]:
    """Pin again each link someone unpinned (while this agent holds it, it stays attached)."""
    changes = []
    for name, fd in links.items():
        path = f"{pdir}/link_{name}"
        if pdir and not os.path.exists(path):
            bpfsys.obj_pin(fd, path)
            changes.append(f"link {name} unpinned, pinned again")
    return changes


def _fingerprint(value: bytes) -> bytes:
    """Small values as they are, big ones by their sha256 (their bytes wait compressed in
    Guard.packed)."""
    return hashlib.sha256(value).digest() if len(value) >= BIG else value


def digest(snap: Snapshot) -> str:
    h = hashlib.sha256()
    for name in sorted(snap):
        for k in sorted(snap[name]):
            h.update(name.encode() + b"\0" + k + snap[name][k])
    return h.hexdigest()


def describe(name: str, key: bytes, have: bytes, want: bytes) -> str:
    """'mode 0, was 2' for the config map's first field, else which bytes changed."""
    first = {"config": "mode", "active": "slot"}.get(name)
    if first:
        return f"{first} {_u32(have)}, was {_u32(want)}"
    diff = [i for i in range(min(len(have), len(want))) if have[i] != want[i]]
    return f"changed ({len(diff)} bytes from offset {diff[0] if diff else 0})"


def _u32(b: bytes) -> int:
    return int.from_bytes(b[:4], "little")


def _key(k: bytes) -> str:
    return str(int.from_bytes(k, "little")) if len(k) == 4 else k.hex()[:32]


def tamper_event(changes: list[str], host: str, version: str, policy_sha: str) -> dict:
    """The ECS document written to the spool when a check restored something."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return {
        "@timestamp": f"{stamp}.{int(time.time() * 1e6) % 1000000:06d}Z",
        "ecs": {"version": ecs.ECS_VERSION},
        "event": {"id": f"tamper-{time.time_ns():x}", "action": "tampered", "kind": "alert",
                  "category": ["configuration", "intrusion_detection"],
                  "type": ["change", "info"], "outcome": "success"},
        "host": {"name": host},
        "agent": {"type": ecs.AGENT_TYPE, "version": version},
        "message": "policy state changed behind the agent, restored: " + "; ".join(changes),
        "edrfleet": {"tampered": changes, "policy_sha256": policy_sha},
    }
