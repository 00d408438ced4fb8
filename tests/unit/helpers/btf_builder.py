"""A small BTF encoder written from include/uapi/linux/btf.h, independent of the reader under
test (edrfleet.agent.btf): the synthetic blobs of tests/unit/agent/test_btf.py."""

from __future__ import annotations

import struct

from edrfleet.agent import btf as B
from edrfleet.agent.btf import Btf


class BtfBuilder:
    """Encodes BTF: add types in id order (1, 2, ...), then build()."""

    def __init__(self, order: str = "<", dedup_strings: bool = True) -> None:
        self.order = order
        self.dedup = dedup_strings
        self.strs = bytearray(b"\0")
        self.str_index: dict[str, int] = {"": 0}
        self.records: list[bytes] = []

    def s(self, name: str) -> int:
        if not name:
            return 0
        if self.dedup and name in self.str_index:
            return self.str_index[name]
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        self.str_index.setdefault(name, off)
        return off

    def add(
        self, name: str, kind: int, vlen: int, size_or_type: int, tail: list[int] = (),
        kind_flag: bool = False, name_off: int | None = None,
    ) -> int:
        info = (int(kind_flag) << 31) | (kind << 24) | vlen
        off = self.s(name) if name_off is None else name_off
        words = [off, info, size_or_type, *tail]
        self.records.append(struct.pack(f"{self.order}{len(words)}I", *words))
        return len(self.records)

    # one helper per kind
    def int_(self, name: str, size: int, nr_bits: int | None = None, bit_off: int = 0,
             signed: bool = False) -> int:
        enc = (int(signed) << 24) | (bit_off << 16) | (nr_bits if nr_bits is not None else 8 * size)
        return self.add(name, B.INT, 0, size, [enc])

    def ptr(self, t: int) -> int:
        return self.add("", B.PTR, 0, t)

    def typedef(self, name: str, t: int) -> int:
        return self.add(name, B.TYPEDEF, 0, t)

    def const(self, t: int) -> int:
        return self.add("", B.CONST, 0, t)

    def volatile(self, t: int) -> int:
        return self.add("", B.VOLATILE, 0, t)

    def restrict(self, t: int) -> int:
        return self.add("", B.RESTRICT, 0, t)

    def type_tag(self, name: str, t: int) -> int:
        return self.add(name, B.TYPE_TAG, 0, t)

    def array(self, elem: int, index: int, n: int) -> int:
        return self.add("", B.ARRAY, 0, 0, [elem, index, n])

    def composite(self, kind: int, name: str, size: int,
                  members: list[tuple[str, int, int, int]], kind_flag: bool = False) -> int:
        """members: (name, type, bit_offset, bitfield_size)."""
        tail = []
        for mname, mtype, bits, bsize in members:
            if kind_flag:
                off = (bsize << 24) | bits
            else:
                assert bsize == 0, "bitfield size needs kind_flag"
                off = bits
            tail += [self.s(mname), mtype, off]
        return self.add(name, kind, len(members), size, tail, kind_flag)

    def struct(self, name: str, size: int, members: list[tuple[str, int, int, int]],
               kind_flag: bool = False) -> int:
        return self.composite(B.STRUCT, name, size, members, kind_flag)

    def union(self, name: str, size: int, members: list[tuple[str, int, int, int]],
              kind_flag: bool = False) -> int:
        return self.composite(B.UNION, name, size, members, kind_flag)

    def enum(self, name: str, values: dict[str, int]) -> int:
        tail = [w for k, v in values.items() for w in (self.s(k), v & 0xFFFFFFFF)]
        return self.add(name, B.ENUM, len(values), 4, tail)

    def enum64(self, name: str, values: dict[str, int]) -> int:
        tail = [w for k, v in values.items()
                for w in (self.s(k), v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF)]
        return self.add(name, B.ENUM64, len(values), 8, tail)

    def fwd(self, name: str, union: bool = False) -> int:
        return self.add(name, B.FWD, 0, 0, kind_flag=union)

    def func_proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        tail = [w for n, t in params for w in (self.s(n), t)]
        return self.add("", B.FUNC_PROTO, len(params), ret, tail)

    def func(self, name: str, proto: int, linkage: int = 1) -> int:
        return self.add(name, B.FUNC, linkage, proto)

    def var(self, name: str, t: int) -> int:
        return self.add(name, B.VAR, 0, t, [1])

    def datasec(self, name: str, size: int, vars_: list[tuple[int, int, int]]) -> int:
        tail = [w for v in vars_ for w in v]
        return self.add(name, B.DATASEC, len(vars_), size, tail)

    def decl_tag(self, name: str, t: int, component: int = 0xFFFFFFFF) -> int:
        return self.add(name, B.DECL_TAG, 0, t, [component])

    def float_(self, name: str, size: int) -> int:
        return self.add(name, B.FLOAT, 0, size)

    def build(self, hdr_extra: bytes = b"") -> bytes:
        types = b"".join(self.records)
        hdr_len = 24 + len(hdr_extra)
        hdr = struct.pack(
            f"{self.order}HBBIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(types), len(types),
            len(self.strs),
        )
        return hdr + hdr_extra + types + bytes(self.strs)

    def btf(self) -> Btf:
        return Btf(self.build(), source="<test>")


def base_types(b: BtfBuilder) -> dict[str, int]:
    """The ints every synthetic blob uses."""
    return {
        "u32": b.int_("unsigned int", 4),
        "u64": b.int_("long unsigned int", 8),
        "long": b.int_("long int", 8, signed=True),
        "char": b.int_("char", 1),
    }
