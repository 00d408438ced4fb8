"""Can this kernel load a BPF LSM program?  Asked with a 2-instruction program, in a millisecond.

Compiling the LSM half of bpf/edrfleet.c costs BCC time; on kernels that list "bpf" among
their LSMs but refuse BPF LSM programs (this project's dev/CI kernel answers EPERM even to
root) we learn that first, with a raw bpf(BPF_PROG_LOAD) of ``r0 = 0; exit``.

x86-64 only, like the LSM part of the program (bpf/lsm.c reads the execve arguments from
x86-64's pt_regs, by its syscall numbers): elsewhere the answer is no, and the agent runs the
sigkill backend.
"""

from __future__ import annotations

import ctypes as ct
import os
import struct

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_LSM = 29
BPF_LSM_MAC = 27
ATTR_SIZE = 128
# struct bpf_attr, BPF_PROG_LOAD part: offsets from include/uapi/linux/bpf.h (a stable ABI)
OFF_PROG_TYPE, OFF_INSN_CNT, OFF_INSNS, OFF_LICENSE = 0, 4, 8, 16
OFF_EXPECTED_ATTACH_TYPE, OFF_ATTACH_BTF_ID = 68, 108
INSNS = bytes.fromhex("b700000000000000" "9500000000000000")  # r0 = 0; exit


def probe_lsm_load(attach_btf_id: int) -> tuple[bool, str]:
    """Load and close a trivial LSM program for the hook with BTF id ``attach_btf_id``."""
    if os.uname().machine != "x86_64":
        return False, f"the BPF LSM backend is built for x86-64 only (this is {os.uname().machine})"
    libc = ct.CDLL(None, use_errno=True)
    insns = ct.create_string_buffer(INSNS, len(INSNS))
    license_ = ct.create_string_buffer(b"GPL")
    attr = ct.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=II", attr, OFF_PROG_TYPE, BPF_PROG_TYPE_LSM, len(INSNS) // 8)
    struct.pack_into("=QQ", attr, OFF_INSNS, ct.addressof(insns), ct.addressof(license_))
    struct.pack_into("=I", attr, OFF_EXPECTED_ATTACH_TYPE, BPF_LSM_MAC)
    struct.pack_into("=I", attr, OFF_ATTACH_BTF_ID, attach_btf_id)
    fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, attr, ATTR_SIZE)
    if fd < 0:
        err = ct.get_errno()
        return False, f"the kernel refuses BPF LSM programs ({os.strerror(err)})"
    os.close(fd)
    return True, ""
