"""Kernel BTF reader: struct field offsets, struct sizes and function presence (stdlib only).

Why this exists: the BPF program reads kernel structs (``task->mm->arg_start``, ``exe_file``'s
inode, ...) at offsets that must match the *running* kernel, and the header tree BCC compiles
against does not describe it (README, "How it blocks").  ``/sys/kernel/btf/vmlinux`` does, so
the agent takes the offsets from it at start and hands them to the program as ``EDR_OFF_*``
constants (:func:`kernel_offsets`).

The byte format (include/uapi/linux/btf.h); integers use the blob's byte order, which the magic
tells (0xeB9F read natively = native order, 0x9FeB = swapped)::

    struct btf_header { u16 magic; u8 version (1); u8 flags; u32 hdr_len;
                        u32 type_off; u32 type_len; u32 str_off; u32 str_len; }
        section offsets count from the end of the header (hdr_len bytes after byte 0)
    type section: records for type ids 1, 2, 3, ... in order (id 0 is void), each
        struct btf_type { u32 name_off; u32 info; u32 size_or_type; }
            info: vlen = bits 0-15, kind = bits 24-28, kind_flag = bit 31
        followed by kind-specific 32-bit words (see _KINDS), e.g. STRUCT/UNION: vlen times
        struct btf_member { u32 name_off; u32 type; u32 offset; }
            offset = bit offset, or with kind_flag: bits 0-23 bit offset, 24-31 bitfield size
    string section: NUL-terminated names; name_off indexes it and offset 0 is ""

Speed (the agent's start-to-enforcing budget is 2 s): a 6.18 vmlinux blob holds ~127 000 types
in 5.5 MB.  Records have variable length, so finding record N means stepping over 1..N-1; that
step loop (one memoised dict lookup per record) is the only per-type Python work, done once at
load.  Names are found with ``bytes.find`` (C speed): the name in the string section, then its
name_off among the types' name_off words, copied out into one bytes object for that purpose.
Structs are decoded when asked about.  Measured on 6.18 (system python3.11, median of 15 fresh
processes): ``Btf.load()`` 28 ms, then :func:`kernel_offsets` 13 ms and ``has_func`` 1 ms; well
under the 150 ms that would make an on-disk cache worth its staleness risk.

Example::

    >>> btf = Btf.load()                                 # /sys/kernel/btf/vmlinux
    >>> btf.field_offset("file", "f_path.dentry")        # bytes from the start of struct file
    72
    >>> kernel_offsets(btf)["EDR_OFF_MM_ARG_START"]      # inside an anonymous struct on 6.x
    480
"""

from __future__ import annotations

import array
import struct
import sys
from dataclasses import dataclass

VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F
_HEADER = struct.Struct("HBBIIIII")  # byte order is prefixed once the magic has told it

# Kinds (BTF_KIND_*).
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 16, 17, 18, 19

# kind: (name, words after the 3-word btf_type header: fixed, per vlen)
_KINDS = {
    INT: ("int", 1, 0), PTR: ("ptr", 0, 0), ARRAY: ("array", 3, 0), STRUCT: ("struct", 0, 3),
    UNION: ("union", 0, 3), ENUM: ("enum", 0, 2), FWD: ("fwd", 0, 0),
    TYPEDEF: ("typedef", 0, 0), VOLATILE: ("volatile", 0, 0), CONST: ("const", 0, 0),
    RESTRICT: ("restrict", 0, 0), FUNC: ("func", 0, 0), FUNC_PROTO: ("func_proto", 0, 2),
    VAR: ("var", 1, 0), DATASEC: ("datasec", 0, 3), FLOAT: ("float", 0, 0),
    DECL_TAG: ("decl_tag", 1, 0), TYPE_TAG: ("type_tag", 0, 0), ENUM64: ("enum64", 0, 3),
}
KIND_NAMES = {kind: spec[0] for kind, spec in _KINDS.items()}

# Kinds that only qualify or rename another type: a field's real type is found through them.
_QUALIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})
_COMPOSITE = frozenset({STRUCT, UNION})
_MAX_CHAIN = 64  # typedef/const chains and anonymous nesting deeper than this mean a cycle


class BtfError(LookupError):
    """A BTF blob is malformed, or a struct, field or type asked for is not in it."""


class _UnknownKind(Exception):
    def __init__(self, kind: int) -> None:
        self.kind = kind


class _Steps(dict):
    """info word -> record length in words; the ~300 distinct info values of a vmlinux blob
    memoise well, which makes the walk one dict lookup per record instead of arithmetic."""

    def __missing__(self, info: int) -> int:
        kind = (info >> 24) & 0x1F
        spec = _KINDS.get(kind)
        if spec is None:
            raise _UnknownKind(kind)
        step = 3 + spec[1] + spec[2] * (info & 0xFFFF)
        self[info] = step
        return step


@dataclass(frozen=True)
class Field:
    """Where a (possibly nested) field sits inside a struct.

    ``bit_offset`` is from the start of the outer struct; ``bitfield_size`` is 0 for an ordinary
    field; ``size`` is the byte size of the field's type (qualifiers and typedefs resolved).
    """

    struct: str
    path: str
    bit_offset: int
    bitfield_size: int
    size: int
    type_id: int
    kind: int

    @property
    def offset(self) -> int:
        """Byte offset; raises BtfError for a bitfield, which has none."""
        if self.bitfield_size or self.bit_offset % 8:
            raise BtfError(
                f"{self.struct}.{self.path} is a bitfield (bit offset {self.bit_offset}, "
                f"{self.bitfield_size} bits): it has no byte offset"
            )
        return self.bit_offset // 8


class Btf:
    """A parsed BTF blob.  Build with :meth:`load` (a file) or ``Btf(data)`` (bytes)."""

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self.source = source
        self._data = data
        if len(data) < _HEADER.size:
            raise BtfError(f"{source}: {len(data)} bytes is too short for a BTF header")
        magic = int.from_bytes(data[:2], "little")
        if magic == BTF_MAGIC:
            self._order = "<"
        elif magic == 0x9FEB:
            self._order = ">"
        else:
            raise BtfError(f"{source}: bad BTF magic {magic:#06x} (want 0xeb9f)")
        _, version, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            self._order + _HEADER.format, data, 0
        )
        if version != 1:
            raise BtfError(f"{source}: BTF version {version} (this reader knows 1)")
        if hdr_len < _HEADER.size:
            raise BtfError(f"{source}: header length {hdr_len} < {_HEADER.size}")
        self._t0, self._t1 = hdr_len + type_off, hdr_len + type_off + type_len
        self._s0, self._s1 = hdr_len + str_off, hdr_len + str_off + str_len
        if self._t1 > len(data) or self._s1 > len(data) or type_len % 4 or self._t0 % 4:
            raise BtfError(f"{source}: type/string sections out of bounds or misaligned")

        words = array.array("I")
        if words.itemsize != 4:  # pragma: no cover - every Linux ABI has a 4-byte C int
            raise BtfError("array('I') is not 32-bit on this platform")
        words.frombytes(memoryview(data)[self._t0 : self._t1])
        if self._order != ("<" if sys.byteorder == "little" else ">"):
            words.byteswap()
        self._w = words
        self._starts = self._walk(source)  # _starts[id - 1] = word index of type id's record
        # name_off of every type, as bytes: a C-speed bytes.find over it answers "which types
        # are called X" without a Python loop over the types.
        self._names = array.array("I", map(words.__getitem__, self._starts)).tobytes()
        self._name_offs: dict[str, frozenset[int]] = {}
        self._named: dict[str, list[int]] = {}  # name -> ids of every kind, memoised
        self._members: dict[int, tuple[tuple[int, int, int, int], ...]] = {}
        self._ptr_size: int | None = None

    @classmethod
    def load(cls, path: str = VMLINUX) -> Btf:
        """Read a BTF file (default: the running kernel's).  Raises OSError or BtfError."""
        with open(path, "rb") as f:
            return cls(f.read(), source=path)

    def _walk(self, source: str) -> array.array:
        """Word index of every type record, in id order.

        The one per-type Python loop of this module (~25 ms for 127 000 types here): records
        have variable length, so there is no way to find record N but to step over 1..N-1.
        """
        w = self._w
        n = len(w)
        starts = array.array("I")
        app = starts.append
        steps = _Steps()
        i = 0
        try:
            while i < n:
                app(i)
                i += steps[w[i + 1]]
        except IndexError:
            raise BtfError(f"{source}: type id {len(starts)} is truncated") from None
        except _UnknownKind as e:
            raise BtfError(
                f"{source}: type id {len(starts)} has kind {e.kind}, unknown to this reader "
                f"(it knows kinds 1-{max(_KINDS)}), so the records after it cannot be found"
            ) from None
        if i != n:
            raise BtfError(f"{source}: type id {len(starts)} runs past the type section")
        return starts

    def _start(self, tid: int) -> int:
        """Word index of type ``tid``'s record."""
        if not 1 <= tid <= len(self._starts):
            raise BtfError(f"{self.source}: type id {tid} does not exist")
        return self._starts[tid - 1]

    def type_count(self) -> int:
        """Number of types in the blob (void not counted)."""
        return len(self._starts)

    # --- names -----------------------------------------------------------------------------

    def _offsets_of_name(self, name: str) -> frozenset[int]:
        """Every string-section offset holding exactly ``name`` (pahole dedups, so usually 1)."""
        hit = self._name_offs.get(name)
        if hit is not None:
            return hit
        found = set()
        if name and "\0" not in name:
            data, s0, s1 = self._data, self._s0, self._s1
            # Offset 0 is "", so every other string follows a NUL: this needle only matches
            # whole strings, never a suffix of a longer one.
            needle = b"\0" + name.encode() + b"\0"
            p = data.find(needle, s0, s1)
            while p != -1:
                found.add(p + 1 - s0)
                p = data.find(needle, p + 1, s1)
        self._name_offs[name] = hit = frozenset(found)
        return hit

    def _ids_named(self, name: str, kinds: frozenset[int]) -> list[int]:
        """Type ids of the given kinds whose name is ``name``, ascending."""
        ids = self._named.get(name)
        if ids is None:
            ids = []
            names = self._names
            for name_off in self._offsets_of_name(name):
                needle = struct.pack("=I", name_off)  # _names is in native order
                p = names.find(needle)
                while p != -1:
                    if not p % 4:
                        ids.append(p // 4 + 1)
                    p = names.find(needle, p + 1)
            ids.sort()
            self._named[name] = ids
        w, starts = self._w, self._starts
        return [t for t in ids if (w[starts[t - 1] + 1] >> 24) & 0x1F in kinds]

    def name_of(self, tid: int) -> str:
        """Name of type ``tid`` ("" when anonymous)."""
        return self._string(self._w[self._start(tid)])

    def _string(self, name_off: int) -> str:
        s = self._s0 + name_off
        end = self._data.find(b"\0", s, self._s1)
        if end == -1:
            raise BtfError(f"{self.source}: name offset {name_off} is not a terminated string")
        return self._data[s:end].decode(errors="replace")

    # --- types -----------------------------------------------------------------------------

    def kind(self, tid: int) -> int:
        """BTF_KIND_* of type ``tid`` (0 for void)."""
        return 0 if tid == 0 else (self._w[self._start(tid) + 1] >> 24) & 0x1F

    def resolve(self, tid: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the type they qualify."""
        w = self._w
        for _ in range(_MAX_CHAIN):
            if tid == 0:
                return 0
            j = self._start(tid)
            if (w[j + 1] >> 24) & 0x1F not in _QUALIFIERS:
                return tid
            tid = w[j + 2]
        raise BtfError(f"{self.source}: qualifier chain longer than {_MAX_CHAIN} (a cycle?)")

    def size_of(self, tid: int) -> int:
        """Byte size of a type (0 for void, functions and forward declarations)."""
        tid = self.resolve(tid)
        if tid == 0:
            return 0
        w = self._w
        j = self._start(tid)
        kind = (w[j + 1] >> 24) & 0x1F
        if kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return w[j + 2]
        if kind == PTR:
            return self._pointer_size()
        if kind == ARRAY:  # struct btf_array { u32 type; u32 index_type; u32 nelems; }
            return self.size_of(w[j + 3]) * w[j + 5]
        return 0

    def _pointer_size(self) -> int:
        # BTF has no pointer size; like libbpf, take it from the C "long" of the same blob.
        if self._ptr_size is None:
            longs = self._ids_named("long int", frozenset({INT}))
            sizes = {self._w[self._start(t) + 2] for t in longs}
            self._ptr_size = sizes.pop() if len(sizes) == 1 else struct.calcsize("P")
        return self._ptr_size

    def members(self, tid: int) -> tuple[tuple[int, int, int, int], ...]:
        """Members of struct/union ``tid`` as (name_off, type, bit_offset, bitfield_size)."""
        cached = self._members.get(tid)
        if cached is not None:
            return cached
        w = self._w
        j = self._start(tid)
        info = w[j + 1]
        if (info >> 24) & 0x1F not in _COMPOSITE:
            raise BtfError(f"{self.source}: type id {tid} is not a struct or union")
        kind_flag = info >> 31
        out = []
        for k in range(j + 3, j + 3 + 3 * (info & 0xFFFF), 3):
            off = w[k + 2]
            if kind_flag:
                out.append((w[k], w[k + 1], off & 0xFFFFFF, off >> 24))
            else:
                out.append((w[k], w[k + 1], off, 0))
        self._members[tid] = result = tuple(out)
        return result

    def _find_member(
        self, tid: int, name: bytes, depth: int = 0
    ) -> tuple[int, int, int] | None:
        """(bit_offset, bitfield_size, type) of member ``name`` (NUL-terminated bytes), looking
        through anonymous struct/union members in declaration order, as C name lookup does."""
        if depth > _MAX_CHAIN:
            raise BtfError(f"{self.source}: anonymous members nest deeper than {_MAX_CHAIN}")
        data, s0 = self._data, self._s0
        for name_off, mtype, bits, bsize in self.members(tid):
            if name_off:
                # Compare in place: cheaper than looking every field name up in the strings.
                if data.startswith(name, s0 + name_off):
                    return bits, bsize, mtype
                continue
            inner = self.resolve(mtype)
            if self.kind(inner) in _COMPOSITE:
                hit = self._find_member(inner, name, depth + 1)
                if hit is not None:
                    return bits + hit[0], hit[1], hit[2]
        return None

    def _composites(self, name: str) -> list[int]:
        ids = self._ids_named(name, _COMPOSITE)
        if not ids:
            raise BtfError(f"{self.source}: no struct or union named {name!r}")
        return ids

    # --- the questions the agent asks ------------------------------------------------------

    def field(self, struct_name: str, path: str) -> Field:
        """Locate ``path`` ("f_path.dentry") inside struct/union ``struct_name``.

        Anonymous struct/union members are looked through, typedefs and qualifiers followed,
        and the bit offsets summed along the path.  Pointers are never followed: every part
        but the last must be an embedded struct or union.  When a blob defines several structs
        with this name, they must agree on the answer.

        Raises:
            BtfError: no such struct, no such field, or several definitions that disagree.
        """
        parts = path.split(".")
        if not all(parts) or "\0" in path:
            raise BtfError(f"bad field path {path!r}")
        # (bit offset, bitfield size, size, kind) -> first type id with that answer; duplicate
        # definitions that agree on the layout may still name different (duplicate) types.
        answers: dict[tuple[int, int, int, int], int] = {}
        errors = []
        for cand in self._composites(struct_name):
            try:
                bits, bsize, size, tid, kind = self._field_in(cand, struct_name, parts)
            except BtfError as e:
                errors.append(e)
                continue
            answers.setdefault((bits, bsize, size, kind), tid)
        if not answers:
            raise errors[0]
        if len(answers) > 1:
            raise BtfError(
                f"{self.source}: {len(answers)} definitions of {struct_name!r} place "
                f"{path!r} differently; refusing to guess"
            )
        ((bits, bsize, size, kind), tid), = answers.items()
        return Field(struct_name, path, bits, bsize, size, tid, kind)

    def _field_in(
        self, tid: int, struct_name: str, parts: list[str]
    ) -> tuple[int, int, int, int, int]:
        bits = bsize = 0
        for i, part in enumerate(parts):
            outer = self.resolve(tid)
            if self.kind(outer) not in _COMPOSITE:
                where = ".".join(parts[:i])
                raise BtfError(
                    f"{self.source}: {struct_name}.{where} is a "
                    f"{KIND_NAMES.get(self.kind(outer), 'void')}, not a struct or union, "
                    f"so it has no field {part!r}"
                )
            hit = self._find_member(outer, part.encode() + b"\0")
            if hit is None:
                raise BtfError(
                    f"{self.source}: struct {struct_name} has no field "
                    f"{'.'.join(parts[: i + 1])!r}"
                )
            bits += hit[0]
            bsize, tid = hit[1], hit[2]
        real = self.resolve(tid)
        kind = self.kind(real)
        if kind == INT and not bsize:
            # Without kind_flag a bitfield shows as an INT whose encoding is narrower than
            # its size or starts at a bit offset (btf_type's extra word).
            enc = self._w[self._start(real) + 3]
            nr_bits, enc_off = enc & 0xFF, (enc >> 16) & 0xFF
            if enc_off or nr_bits != 8 * self.size_of(real):
                bits += enc_off
                bsize = nr_bits
        return bits, bsize, self.size_of(real), tid, kind

    def field_offset(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` in ``struct_name``, e.g. ("dentry", "d_name.name")."""
        return self.field(struct_name, path).offset

    def member_offset(self, struct_name: str, member: str) -> int:
        """Byte offset of one member (a dotted path also works): ("task_struct", "mm")."""
        return self.field_offset(struct_name, member)

    def struct_size(self, name: str) -> int:
        """``sizeof(struct name)`` (or union).  Raises BtfError if absent or ambiguous."""
        sizes = {self.size_of(t) for t in self._composites(name)}
        if len(sizes) > 1:
            raise BtfError(
                f"{self.source}: definitions of {name!r} differ in size {sorted(sizes)}"
            )
        return sizes.pop()

    def has_func(self, name: str) -> bool:
        """True if the blob describes a function of that name (e.g. an LSM hook's BPF stub)."""
        return bool(self._ids_named(name, frozenset({FUNC})))

    def func_id(self, name: str) -> int:
        """Type id of function ``name`` (what BPF_PROG_LOAD takes as attach_btf_id)."""
        ids = self._ids_named(name, frozenset({FUNC}))
        if not ids:
            raise BtfError(f"BTF has no function {name}")
        return min(ids)


# --- what the BPF program needs ---------------------------------------------------------------

PTR_FIELD = -1  # expected "size" meaning: must be a pointer
STRUCT_FIELD = -2  # expected "size" meaning: an embedded struct (its address is taken)

# (macro, struct, path, expected size): the size is the width the BPF program reads, so a
# kernel whose field changed width fails here, at start, with a message naming the field.
KERNEL_FIELDS: tuple[tuple[str, str, str, int], ...] = (
    ("EDR_OFF_TASK_MM", "task_struct", "mm", PTR_FIELD),
    ("EDR_OFF_TASK_REAL_PARENT", "task_struct", "real_parent", PTR_FIELD),
    ("EDR_OFF_TASK_TGID", "task_struct", "tgid", 4),
    ("EDR_OFF_MM_ARG_START", "mm_struct", "arg_start", 8),
    ("EDR_OFF_MM_ARG_END", "mm_struct", "arg_end", 8),
    ("EDR_OFF_MM_EXE_FILE", "mm_struct", "exe_file", PTR_FIELD),
    ("EDR_OFF_FILE_INODE", "file", "f_inode", PTR_FIELD),
    ("EDR_OFF_FILE_DENTRY", "file", "f_path.dentry", PTR_FIELD),
    ("EDR_OFF_FILE_MNT", "file", "f_path.mnt", PTR_FIELD),
    ("EDR_OFF_DENTRY_NAME", "dentry", "d_name.name", PTR_FIELD),
    ("EDR_OFF_INODE_INO", "inode", "i_ino", 8),
    ("EDR_OFF_INODE_SB", "inode", "i_sb", PTR_FIELD),
    ("EDR_OFF_INODE_NLINK", "inode", "i_nlink", 4),
    ("EDR_OFF_INODE_SIZE", "inode", "i_size", 8),
    ("EDR_OFF_SB_DEV", "super_block", "s_dev", 4),
    ("EDR_OFF_BPRM_FILE", "linux_binprm", "file", PTR_FIELD),
    ("EDR_OFF_BPRM_FILENAME", "linux_binprm", "filename", PTR_FIELD),
    ("EDR_OFF_BPRM_BUF", "linux_binprm", "buf", 256),  # EDR_HEAD_BYTES: "fsizes" hashes it
    # parent executable and working directory (match.parent, match.cwd)
    ("EDR_OFF_TASK_FS", "task_struct", "fs", PTR_FIELD),
    ("EDR_OFF_FS_PWD_MNT", "fs_struct", "pwd.mnt", PTR_FIELD),
    ("EDR_OFF_FS_PWD_DENTRY", "fs_struct", "pwd.dentry", PTR_FIELD),
    ("EDR_OFF_DENTRY_PARENT", "dentry", "d_parent", PTR_FIELD),
    ("EDR_OFF_DENTRY_INODE", "dentry", "d_inode", PTR_FIELD),
    ("EDR_OFF_VFSMOUNT_ROOT", "vfsmount", "mnt_root", PTR_FIELD),
    ("EDR_OFF_MOUNT_MNT", "mount", "mnt", STRUCT_FIELD),  # struct mount embeds the vfsmount
    ("EDR_OFF_MOUNT_PARENT", "mount", "mnt_parent", PTR_FIELD),
    ("EDR_OFF_MOUNT_MOUNTPOINT", "mount", "mnt_mountpoint", PTR_FIELD),
    # standard streams as network sockets (match.inet_stdio): task -> files -> fdt -> fd[i]
    # -> file (inode mode S_IFSOCK) -> private_data (struct socket) -> sk -> skc_family
    ("EDR_OFF_TASK_FILES", "task_struct", "files", PTR_FIELD),
    ("EDR_OFF_FILES_FDT", "files_struct", "fdt", PTR_FIELD),
    ("EDR_OFF_FDT_MAX_FDS", "fdtable", "max_fds", 4),
    ("EDR_OFF_FDT_FD", "fdtable", "fd", PTR_FIELD),
    ("EDR_OFF_INODE_MODE", "inode", "i_mode", 2),
    ("EDR_OFF_FILE_PRIVATE", "file", "private_data", PTR_FIELD),
    ("EDR_OFF_SOCKET_SK", "socket", "sk", PTR_FIELD),
    ("EDR_OFF_SK_FAMILY", "sock", "__sk_common.skc_family", 2),
)


def kernel_offsets(btf: Btf) -> dict[str, int]:
    """Byte offsets the BPF program reads kernel structs at, keyed by C macro name.

    Raises:
        BtfError: a field is missing, is a bitfield, or no longer has the width the program
            reads (the message names the macro and the field).
    """
    out = {}
    for macro, struct_name, path, want in KERNEL_FIELDS:
        try:
            f = btf.field(struct_name, path)
            out[macro] = f.offset
        except BtfError as e:
            raise BtfError(f"{macro}: {e}") from None
        if want in (PTR_FIELD, STRUCT_FIELD):
            kind, noun = (PTR, "a pointer") if want == PTR_FIELD else (STRUCT, "a struct")
            if f.kind != kind:
                got = KIND_NAMES.get(f.kind, "void")
                raise BtfError(f"{macro}: {struct_name}.{path} is a {got}, expected {noun}")
        elif f.size != want:
            raise BtfError(
                f"{macro}: {struct_name}.{path} is {f.size} bytes here; the BPF program "
                f"reads {want}"
            )
    return out
