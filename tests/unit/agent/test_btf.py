"""edrfleet.agent.btf on synthetic blobs built with tests/unit/helpers/btf_builder.py.

This machine's kernel is cross-checked with bpftool in test_btf_kernel.py.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from edrfleet.agent import btf as B
from edrfleet.agent.btf import Btf, BtfError, kernel_offsets
from edrfleet.kernel_abi import BPF_SOURCES
from tests.unit.helpers.btf_builder import BtfBuilder, base_types

# --- synthetic blobs ------------------------------------------------------------------------


def test_plain_struct_members_sizes_and_member_offset_alias() -> None:
    b = BtfBuilder()
    t = base_types(b)
    p = b.ptr(t["char"])
    b.struct("linux_binprm", 24, [("p", t["u64"], 0, 0), ("file", p, 64, 0),
                                  ("filename", p, 128, 0)])
    btf = b.btf()
    assert btf.field_offset("linux_binprm", "file") == 8
    assert btf.member_offset("linux_binprm", "filename") == 16
    assert btf.struct_size("linux_binprm") == 24
    f = btf.field("linux_binprm", "filename")
    assert (f.kind, f.size, f.bitfield_size) == (B.PTR, 8, 0)
    assert btf.type_count() == 6


def test_fields_inside_anonymous_structs_and_unions_sum_the_offsets_along_the_path() -> None:
    # struct mm_struct { struct { int pad[4]; union { long a; struct { u64 arg_start, arg_end; };
    #                    }; void *exe_file; }; u64 cpu_bitmap; }  -- the shape of 6.x mm_struct
    b = BtfBuilder()
    t = base_types(b)
    inner = b.struct("", 16, [("arg_start", t["u64"], 0, 0), ("arg_end", t["u64"], 64, 0)])
    un = b.union("", 16, [("a", t["long"], 0, 0), ("", inner, 0, 0)])
    arr = b.array(t["u32"], t["u32"], 4)
    vp = b.ptr(0)
    outer_anon = b.struct("", 40, [("pad", arr, 0, 0), ("", un, 128, 0), ("exe_file", vp, 256, 0)])
    b.struct("mm_struct", 48, [("", outer_anon, 0, 0), ("cpu_bitmap", t["u64"], 320, 0)])
    btf = b.btf()
    assert btf.field_offset("mm_struct", "arg_start") == 16
    assert btf.field_offset("mm_struct", "arg_end") == 24
    assert btf.field_offset("mm_struct", "exe_file") == 32
    assert btf.field_offset("mm_struct", "cpu_bitmap") == 40
    assert btf.field("mm_struct", "pad").size == 16  # array of 4 u32


def test_dotted_path_through_embedded_struct_behind_a_typedef_and_qualifier_chain() -> None:
    b = BtfBuilder()
    t = base_types(b)
    dentry_fwd = b.fwd("dentry")
    dp = b.ptr(dentry_fwd)
    path = b.struct("path", 16, [("mnt", b.ptr(0), 0, 0), ("dentry", dp, 64, 0)])
    # typedef const volatile path_t -> typedef -> struct path
    chain = b.typedef("path_t", b.const(b.volatile(b.typedef("path_inner", path))))
    b.struct("file", 40, [("f_flags", t["u32"], 0, 0), ("f_path", chain, 64, 0),
                          ("f_inode", b.type_tag("rcu", b.ptr(0)), 256, 0)])
    btf = b.btf()
    assert btf.field_offset("file", "f_path.dentry") == 16
    assert btf.field_offset("file", "f_path") == 8
    assert btf.field("file", "f_path").size == 16  # size seen through typedef/const/volatile
    f = btf.field("file", "f_inode")
    assert (f.kind, f.size, f.offset) == (B.PTR, 8, 32)  # type_tag is looked through


def test_qstr_len_inside_union_inside_anonymous_struct() -> None:
    # struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }
    b = BtfBuilder()
    t = base_types(b)
    hl = b.struct("", 8, [("hash", t["u32"], 0, 0), ("len", t["u32"], 32, 0)])
    un = b.union("", 8, [("", hl, 0, 0), ("hash_len", t["u64"], 0, 0)])
    qstr = b.struct("qstr", 16, [("", un, 0, 0), ("name", b.ptr(b.const(t["char"])), 64, 0)])
    b.struct("dentry", 64, [("d_flags", t["u32"], 0, 0), ("d_name", qstr, 256, 0)])
    btf = b.btf()
    assert btf.field_offset("dentry", "d_name.len") == 36
    assert btf.field_offset("dentry", "d_name.hash") == 32
    assert btf.field_offset("dentry", "d_name.name") == 40
    assert btf.field("dentry", "d_name.len").size == 4


def test_kind_flag_bitfields_have_bit_offsets_and_no_byte_offset() -> None:
    b = BtfBuilder()
    t = base_types(b)
    b.struct("task_struct", 0x30000, [
        ("flags", t["u32"], 0, 0),
        ("in_execve", t["u32"], 32, 1),     # 1-bit field at bit 32
        ("in_iowait", t["u32"], 33, 3),     # 3-bit field at bit 33
        ("tgid", t["u32"], 64, 0),
        ("far", t["u64"], 0x20000 * 8, 0),  # bit offset needs > 16 bits, < 24
    ], kind_flag=True)
    btf = b.btf()
    f = btf.field("task_struct", "in_iowait")
    assert (f.bit_offset, f.bitfield_size) == (33, 3)
    with pytest.raises(BtfError, match=r"task_struct\.in_iowait is a bitfield"):
        btf.field_offset("task_struct", "in_iowait")
    with pytest.raises(BtfError, match="bitfield"):
        btf.field_offset("task_struct", "in_execve")  # byte-aligned start, still a bitfield
    assert btf.field_offset("task_struct", "tgid") == 8
    assert btf.field_offset("task_struct", "far") == 0x20000


def test_bitfield_without_kind_flag_is_told_by_the_int_encoding() -> None:
    b = BtfBuilder()
    t = base_types(b)
    bits3 = b.int_("unsigned int", 4, nr_bits=3)
    b.struct("s", 8, [("a", bits3, 5, 0), ("b", t["u32"], 32, 0)])
    btf = b.btf()
    f = btf.field("s", "a")
    assert (f.bit_offset, f.bitfield_size) == (5, 3)
    with pytest.raises(BtfError, match="bitfield"):
        btf.field_offset("s", "a")
    assert btf.field_offset("s", "b") == 4


def test_missing_struct_and_missing_field_raise_errors_naming_them() -> None:
    b = BtfBuilder()
    t = base_types(b)
    b.struct("inode", 16, [("i_mode", t["u32"], 0, 0), ("i_ino", t["u64"], 64, 0)])
    btf = b.btf()
    with pytest.raises(BtfError, match=r"no struct or union named 'super_block'"):
        btf.field_offset("super_block", "s_dev")
    with pytest.raises(BtfError, match=r"struct inode has no field 'i_sb'"):
        btf.field_offset("inode", "i_sb")
    with pytest.raises(BtfError, match=r"no struct or union named 'nope'"):
        btf.struct_size("nope")
    with pytest.raises(LookupError):  # BtfError is a LookupError
        btf.member_offset("inode", "i_nope")
    with pytest.raises(BtfError, match="bad field path"):
        btf.field_offset("inode", "i_ino..x")


def test_a_path_never_follows_a_pointer() -> None:
    b = BtfBuilder()
    t = base_types(b)
    inode = b.struct("inode", 16, [("i_ino", t["u64"], 0, 0)])
    b.struct("file", 8, [("f_inode", b.ptr(inode), 0, 0)])
    btf = b.btf()
    with pytest.raises(BtfError, match=r"file\.f_inode is a ptr, not a struct or union"):
        btf.field_offset("file", "f_inode.i_ino")


def test_member_names_match_whole_names_only() -> None:
    b = BtfBuilder()
    t = base_types(b)
    b.struct("task_struct", 24, [("mmap", t["u64"], 0, 0), ("mm_users", t["u64"], 64, 0),
                                 ("mm", b.ptr(0), 128, 0)])
    b.struct("task_struct_extra", 8, [("mm", t["u64"], 0, 0)])
    btf = b.btf()
    assert btf.field_offset("task_struct", "mm") == 16
    assert btf.struct_size("task_struct") == 24
    with pytest.raises(BtfError, match="no struct or union named 'task_struc'"):
        btf.struct_size("task_struc")


def test_has_func_looks_at_functions_only() -> None:
    b = BtfBuilder()
    t = base_types(b)
    proto = b.func_proto(t["u32"], [("bprm", b.ptr(0))])
    b.func("bpf_lsm_bprm_check_security", proto)
    b.struct("bpf_lsm_file_open", 4, [("x", t["u32"], 0, 0)])  # same name, wrong kind
    b.fwd("bpf_lsm_task_alloc")
    btf = b.btf()
    assert btf.has_func("bpf_lsm_bprm_check_security")
    assert not btf.has_func("bpf_lsm_file_open")
    assert not btf.has_func("bpf_lsm_task_alloc")
    assert not btf.has_func("bpf_lsm")  # prefix of a name is not the name
    assert not btf.has_func("")


def test_duplicate_struct_definitions_must_agree() -> None:
    b = BtfBuilder()
    t = base_types(b)
    # two identical-layout "console" structs with distinct (duplicate) member types: fine
    b.struct("console", 16, [("name", b.array(t["char"], t["u32"], 8), 0, 0),
                             ("flags", t["u32"], 64, 0)])
    b.struct("console", 16, [("name", b.array(t["char"], t["u32"], 8), 0, 0),
                             ("flags", t["u32"], 64, 0)])
    # two "workspace" structs that disagree
    b.struct("workspace", 8, [("buf", t["u64"], 0, 0), ("len", t["u32"], 0, 0)])
    b.struct("workspace", 16, [("len", t["u32"], 64, 0)])
    # "only_one" field lives in only one of two definitions: that one answers
    b.struct("walk_control", 8, [("free", t["u32"], 0, 0)])
    b.struct("walk_control", 8, [("wait", t["u32"], 32, 0)])
    btf = b.btf()
    assert btf.field_offset("console", "flags") == 8
    assert btf.struct_size("console") == 16
    with pytest.raises(BtfError, match="refusing to guess"):
        btf.field_offset("workspace", "len")
    with pytest.raises(BtfError, match="differ in size"):
        btf.struct_size("workspace")
    assert btf.field_offset("walk_control", "wait") == 4


def test_every_kind_is_stepped_over_with_its_own_record_length() -> None:
    # If any kind's record length were wrong, the walk would fail or the struct placed after
    # all of them would be read from the wrong words.
    b = BtfBuilder()
    t = base_types(b)
    vp = b.ptr(0)
    b.array(t["char"], t["u32"], 16)
    b.enum("e", {"A": 1, "B": 2, "C": -1})
    b.enum64("e64", {"X": 1 << 40, "Y": 2})
    b.fwd("later", union=True)
    b.restrict(vp)
    proto = b.func_proto(t["u32"], [("a", t["u32"]), ("b", vp), ("", 0)])
    f = b.func("some_func", proto)
    v1, v2 = b.var("v1", t["u32"]), b.var("v2", t["u64"])
    b.datasec(".data", 16, [(v1, 0, 4), (v2, 8, 8)])
    b.decl_tag("tag", f, 0xFFFFFFFF)
    b.decl_tag("argtag", f, 1)
    b.float_("double", 8)
    b.type_tag("user", vp)
    b.union("", 0, [])
    b.struct("empty", 0, [])
    b.struct("after_all", 12, [("x", t["u32"], 0, 0), ("y", t["u64"], 32, 0)])
    btf = b.btf()
    assert btf.type_count() == len(b.records)
    assert btf.field_offset("after_all", "y") == 4
    assert btf.struct_size("empty") == 0
    assert btf.has_func("some_func")
    assert btf.name_of(f) == "some_func"


def test_big_endian_blob_reads_the_same() -> None:
    for order in "<>":
        b = BtfBuilder(order=order)
        t = base_types(b)
        anon = b.struct("", 8, [("tgid", t["u32"], 32, 0)])
        b.struct("task_struct", 16, [("", anon, 64, 0)])
        btf = b.btf()
        assert btf.field_offset("task_struct", "tgid") == 12, order


def test_strings_that_are_not_deduplicated_are_all_found() -> None:
    b = BtfBuilder(dedup_strings=False)
    t = base_types(b)
    b.struct("inode", 8, [("i_ino", t["u64"], 0, 0)])
    b.struct("super_block", 8, [("s_dev", t["u32"], 32, 0)])
    b.struct("inode", 8, [("i_ino", t["u64"], 0, 0)])  # its name is a second copy of "inode"
    btf = b.btf()
    assert len(btf._ids_named("inode", B._COMPOSITE)) == 2
    assert btf.field_offset("inode", "i_ino") == 0


def test_a_word_equal_to_a_name_offset_is_not_mistaken_for_a_type() -> None:
    b = BtfBuilder()
    t = base_types(b)
    name_off = b.s("victim")
    # a struct whose size and member bit offset equal the name offset of "victim", and a FUNC
    # proto whose parameter type word equals it too
    b.struct("decoy", name_off, [("m", t["u32"], name_off, 0)])
    b.func_proto(0, [("", name_off)])
    btf = b.btf()
    assert not btf.has_func("victim")
    with pytest.raises(BtfError, match="no struct or union named 'victim'"):
        btf.struct_size("victim")


def test_header_may_be_longer_than_24_bytes() -> None:
    b = BtfBuilder()
    t = base_types(b)
    b.struct("s", 4, [("a", t["u32"], 0, 0)])
    btf = Btf(b.build(hdr_extra=b"\0" * 8))
    assert btf.field_offset("s", "a") == 0


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: b"\x00\x00" + d[2:], "bad BTF magic"),
        (lambda d: d[:2] + b"\x02" + d[3:], "BTF version 2"),
        (lambda d: d[:10], "too short"),
        (lambda d: d[:-8], "out of bounds"),
    ],
)
def test_malformed_headers_are_refused(mangle, message) -> None:
    b = BtfBuilder()
    base_types(b)
    with pytest.raises(BtfError, match=message):
        Btf(mangle(b.build()))


def test_an_unknown_kind_stops_the_walk_with_a_clear_error() -> None:
    b = BtfBuilder()
    t = base_types(b)
    b.add("future", 25, 0, 0)
    b.struct("s", 4, [("a", t["u32"], 0, 0)])
    with pytest.raises(BtfError, match="type id 5 has kind 25, unknown"):
        b.btf()


def test_a_record_running_past_the_type_section_is_refused() -> None:
    b = BtfBuilder()
    base_types(b)
    # a struct claiming 5 members but carrying only 1: its record overruns the section
    b.records.append(struct.pack("<6I", b.s("s"), (B.STRUCT << 24) | 5, 4, 0, 1, 0))
    with pytest.raises(BtfError, match="type id 5 runs past"):
        b.btf()
    b2 = BtfBuilder()
    b2.records.append(struct.pack("<I", 0))  # one word: not even a header
    with pytest.raises(BtfError, match="type id 1 is truncated"):
        b2.btf()


def test_a_typedef_cycle_is_reported_not_looped_forever() -> None:
    b = BtfBuilder()
    t = base_types(b)
    a = b.typedef("a", 6)  # id 5 -> 6
    b.typedef("b", a)  # id 6 -> 5
    b.struct("s", 4, [("x", a, 0, 0), ("y", t["u32"], 0, 0)])
    with pytest.raises(BtfError, match="cycle"):
        b.btf().field("s", "x")


def mini_kernel(i_ino_size: int = 8, with_mm: bool = True, mount_mnt_ptr: bool = False,
                family_size: int = 2) -> Btf:
    """Every struct kernel_offsets() asks about, laid out like 6.18's."""
    b = BtfBuilder()
    t = base_types(b)
    u16 = b.int_("short unsigned int", 2)
    vp = b.ptr(0)
    cp = b.ptr(b.const(t["char"]))
    b.struct("task_struct", 72, [("flags", t["u32"], 0, 0), ("pid", t["u32"], 32, 1),
                                 *([("mm", vp, 128, 0)] if with_mm else []),
                                 ("tgid", t["u32"], 256, 0), ("real_parent", vp, 320, 0),
                                 ("fs", vp, 448, 0), ("files", vp, 512, 0)],
             kind_flag=True)
    anon = b.struct("", 40, [("arg_start", t["u64"], 0, 0), ("arg_end", t["u64"], 64, 0),
                             ("exe_file", vp, 128, 0)])
    b.struct("mm_struct", 64, [("", anon, 64, 0)])
    path = b.struct("path", 16, [("mnt", vp, 0, 0), ("dentry", vp, 64, 0)])
    b.struct("file", 64, [("private_data", vp, 192, 0), ("f_inode", vp, 256, 0),
                          ("f_path", path, 384, 0)])
    b.struct("files_struct", 64, [("count", t["u32"], 0, 0), ("fdt", vp, 256, 0)])
    b.struct("fdtable", 32, [("max_fds", t["u32"], 0, 0), ("fd", vp, 64, 0)])
    b.struct("socket", 48, [("state", t["u32"], 0, 0), ("sk", vp, 192, 0)])
    common = b.struct("sock_common", 32, [
        ("skc_family", u16 if family_size == 2 else t["u32"], 128, 0)])
    b.struct("sock", 64, [("__sk_common", common, 0, 0)])
    hl = b.struct("", 8, [("hash", t["u32"], 0, 0), ("len", t["u32"], 32, 0)])
    un = b.union("", 8, [("", hl, 0, 0), ("hash_len", t["u64"], 0, 0)])
    qstr = b.struct("qstr", 16, [("", un, 0, 0), ("name", cp, 64, 0)])
    b.struct("dentry", 64, [("d_flags", t["u32"], 0, 0), ("d_parent", vp, 192, 0),
                            ("d_name", qstr, 256, 0), ("d_inode", vp, 384, 0)])
    b.struct("fs_struct", 64, [("users", t["u32"], 0, 0), ("root", path, 64, 0),
                               ("pwd", path, 192, 0)])
    vfsmount = b.struct("vfsmount", 24, [("mnt_root", vp, 0, 0), ("mnt_sb", vp, 64, 0)])
    b.struct("mount", 128, [("mnt_parent", vp, 128, 0), ("mnt_mountpoint", vp, 192, 0),
                            ("mnt", vp if mount_mnt_ptr else vfsmount, 256, 0)])
    ino = t["u64"] if i_ino_size == 8 else t["u32"]
    # i_nlink sits in an anonymous union with __i_nlink, as in the kernel
    nl = b.union("", 4, [("i_nlink", b.const(t["u32"]), 0, 0), ("__i_nlink", t["u32"], 0, 0)])
    b.struct("inode", 80, [("i_mode", u16, 0, 0), ("i_sb", vp, 320, 0), ("", nl, 448, 0),
                           ("i_ino", ino, 512, 0), ("i_size", t["u64"], 576, 0)])
    dev_t = b.typedef("dev_t", b.typedef("__kernel_dev_t", t["u32"]))
    b.struct("super_block", 64, [("s_dev", dev_t, 128, 0)])
    buf = b.array(t["char"], t["u32"], 256)
    b.struct("linux_binprm", 384, [("file", vp, 512, 0), ("filename", cp, 768, 0),
                                   ("buf", buf, 1024, 0)])
    return b.btf()


def test_kernel_offsets_of_a_synthetic_kernel() -> None:
    offs = kernel_offsets(mini_kernel())
    assert offs == {
        "EDR_OFF_TASK_MM": 16, "EDR_OFF_TASK_REAL_PARENT": 40, "EDR_OFF_TASK_TGID": 32,
        "EDR_OFF_MM_ARG_START": 8, "EDR_OFF_MM_ARG_END": 16, "EDR_OFF_MM_EXE_FILE": 24,
        "EDR_OFF_FILE_INODE": 32, "EDR_OFF_FILE_DENTRY": 56, "EDR_OFF_FILE_MNT": 48,
        "EDR_OFF_DENTRY_NAME": 40,
        "EDR_OFF_INODE_INO": 64, "EDR_OFF_INODE_SB": 40,
        "EDR_OFF_INODE_NLINK": 56, "EDR_OFF_INODE_SIZE": 72, "EDR_OFF_SB_DEV": 16,
        "EDR_OFF_BPRM_FILE": 64,
        "EDR_OFF_BPRM_FILENAME": 96, "EDR_OFF_BPRM_BUF": 128,
        "EDR_OFF_TASK_FS": 56, "EDR_OFF_FS_PWD_MNT": 24, "EDR_OFF_FS_PWD_DENTRY": 32,
        "EDR_OFF_DENTRY_PARENT": 24, "EDR_OFF_DENTRY_INODE": 48, "EDR_OFF_VFSMOUNT_ROOT": 0,
        "EDR_OFF_MOUNT_MNT": 32, "EDR_OFF_MOUNT_PARENT": 16, "EDR_OFF_MOUNT_MOUNTPOINT": 24,
        "EDR_OFF_TASK_FILES": 64, "EDR_OFF_FILES_FDT": 32, "EDR_OFF_FDT_MAX_FDS": 0,
        "EDR_OFF_FDT_FD": 8, "EDR_OFF_INODE_MODE": 0, "EDR_OFF_FILE_PRIVATE": 24,
        "EDR_OFF_SOCKET_SK": 24, "EDR_OFF_SK_FAMILY": 16,
    }
    assert list(offs) == [m for m, *_ in B.KERNEL_FIELDS]


def test_the_offsets_read_from_btf_are_exactly_those_the_bpf_program_uses() -> None:
    # an offset the program does not read only adds a way for the start to fail
    bpf = Path(__file__).resolve().parents[3] / "bpf"
    used = set()
    for name in BPF_SOURCES:
        used |= set(re.findall(r"EDR_OFF_[A-Z_]+", (bpf / name).read_text()))
    assert used == {m for m, *_ in B.KERNEL_FIELDS}


def test_kernel_offsets_name_the_macro_of_a_missing_or_resized_field() -> None:
    with pytest.raises(BtfError, match=r"EDR_OFF_TASK_MM: .*task_struct has no field 'mm'"):
        kernel_offsets(mini_kernel(with_mm=False))
    with pytest.raises(BtfError, match=r"EDR_OFF_INODE_INO: inode\.i_ino is 4 bytes here"):
        kernel_offsets(mini_kernel(i_ino_size=4))
    with pytest.raises(BtfError, match=r"EDR_OFF_SK_FAMILY: sock\.__sk_common\.skc_family is 4 "
                                       r"bytes here; the BPF program reads 2"):
        kernel_offsets(mini_kernel(family_size=4))
    with pytest.raises(BtfError, match=r"EDR_OFF_MOUNT_MNT: mount\.mnt is a ptr, expected a "
                                       r"struct"):
        kernel_offsets(mini_kernel(mount_mnt_ptr=True))
