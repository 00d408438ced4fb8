"""The pinned maps without BCC: ctypes layouts recorded at load, tables over raw ``bpf(2)``.

The loader (BCC) knows every map's key and value type and the event record's layout; it writes
them into the manifest as plain data (:func:`describe`).  The resident agent rebuilds the
ctypes classes from that (:func:`build`) and works on the pinned maps through
:class:`Table`, which offers what the engine uses of a BCC table (``Key()``, ``Leaf()``,
``t[k]``, ``t[k] = v``, ``del t[k]``, iteration over keys, ``items()``; a per-CPU map's value
is a list, one per possible CPU).  Standard library only: the resident agent never loads
libbcc or LLVM.
"""

from __future__ import annotations

import ctypes as ct
import os

from edrfleet.agent.pinned import bpfsys

_PERCPU = (5, 6, 10)  # BPF_MAP_TYPE_PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
_HASHES = (1, 5, 9, 10)


def describe(t: type) -> dict:
    """A ctypes type as JSON-able data."""
    if issubclass(t, (ct.Structure, ct.Union)):
        return {"kind": "union" if issubclass(t, ct.Union) else "struct", "name": t.__name__,
                "pack": getattr(t, "_pack_", 0), "anon": list(getattr(t, "_anonymous_", [])),
                "fields": [[f[0], describe(f[1]), *f[2:]] for f in t._fields_]}
    if issubclass(t, ct.Array):
        return {"kind": "array", "of": describe(t._type_), "n": t._length_}
    return {"kind": "simple", "name": t.__name__}


def build(d: dict) -> type:
    """The ctypes type :func:`describe` described."""
    if d["kind"] == "simple":
        return getattr(ct, d["name"])
    if d["kind"] == "array":
        return build(d["of"]) * d["n"]
    attrs: dict = {"_fields_": [(f[0], build(f[1]), *f[2:]) for f in d["fields"]]}
    if d["pack"]:
        attrs["_pack_"] = d["pack"]
    if d["anon"]:
        attrs["_anonymous_"] = d["anon"]
    base = ct.Union if d["kind"] == "union" else ct.Structure
    return type(d["name"], (base,), attrs)


def possible_cpus() -> int:
    """CPUs a per-CPU map holds a value for (/sys/devices/system/cpu/possible: "0-3")."""
    with open("/sys/devices/system/cpu/possible") as f:
        n = 0
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n = max(n, int(hi or lo) + 1)
    return n


class Table:
    def __init__(self, fd: int, key: type, leaf: type) -> None:
        self.map_fd = fd
        self.Key, self.Leaf = key, leaf
        info = bpfsys.map_info(fd)
        self.key_size, self.value_size = info["key_size"], info["value_size"]
        self.hash = info["type"] in _HASHES
        self.ncpu = possible_cpus() if info["type"] in _PERCPU else 0
        self.stride = (self.value_size + 7) & ~7  # per-CPU values are 8-byte aligned
        if self.ncpu and issubclass(leaf, ct.Array):  # BCC's per-CPU Leaf: one per CPU
            self.Leaf = leaf._type_

    def __getitem__(self, key):
        size = self.stride * self.ncpu if self.ncpu else self.value_size
        raw = bpfsys.map_lookup(self.map_fd, bytes(key), size)
        if raw is None:
            raise KeyError(key)
        if self.ncpu:  # as BCC: a list of plain values, one per CPU
            values = [self._leaf(raw[i * self.stride:i * self.stride + self.value_size])
                      for i in range(self.ncpu)]
            return [getattr(v, "value", v) for v in values]
        return self._leaf(raw)

    def _leaf(self, raw: bytes):
        return self.Leaf.from_buffer_copy(raw.ljust(ct.sizeof(self.Leaf), b"\0"))

    def __setitem__(self, key, value) -> None:
        bpfsys.map_update(self.map_fd, bytes(key), bytes(value))

    def __delitem__(self, key) -> None:
        try:
            bpfsys.map_delete(self.map_fd, bytes(key))
        except OSError as exc:
            if exc.errno == 2:
                raise KeyError(key) from None
            raise

    def items(self) -> list:
        """(key, value) of every key (a per-CPU map's value: one per CPU), as BCC's items();
        a key deleted between the listing and its lookup is left out."""
        out = []
        for k in self:
            try:
                out.append((k, self[k]))
            except KeyError:
                continue
        return out

    def __iter__(self):
        if not self.hash:
            return iter([self.Key(i) for i in range(bpfsys.map_info(self.map_fd)["max_entries"])])
        return iter([self.Key.from_buffer_copy(k) for k in
                     bpfsys.map_keys(self.map_fd, self.key_size)])


class PinnedMaps:
    """``maps["config"]`` -> :class:`Table`, like ``BPF()[...]``; the ring buffer's record
    class is :attr:`event`."""

    def __init__(self, fds: dict[str, int], layout: dict) -> None:
        self.fds = fds
        self.tables = {name: Table(fd, build(layout["maps"][name]["key"]),
                                   build(layout["maps"][name]["leaf"]))
                       for name, fd in fds.items() if name in layout["maps"]}
        self.event = build(layout["event"]) if layout.get("event") else None

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def map_fds(self) -> dict[str, int]:
        return dict(self.fds)

    def cleanup(self) -> None:
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}
