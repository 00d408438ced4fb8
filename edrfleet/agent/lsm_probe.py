"""Can this kernel load our BPF LSM program?  Asked with a 5-instruction program, in a millisecond.

Compiling the LSM half of bpf/edrfleet.c costs BCC time; on kernels that list "bpf" among
their LSMs but refuse BPF LSM programs (this project's dev/CI kernel answers EPERM even to
root) we learn that first, with a raw bpf(BPF_PROG_LOAD).  The probe calls the two helpers
bpf/lsm.c reads execve's arguments with, ``bpf_get_current_task_btf`` (kernel 5.11) and
``bpf_task_pt_regs`` (5.15): a 5.10 kernel booted with ``lsm=…,bpf`` takes an LSM program but
not ours, and the verifier's "unknown func" (EINVAL) sends the agent to backend sigkill instead of
failing the compile.

x86-64 only, like the LSM part of the program (bpf/lsm.c reads the execve arguments from
x86-64's pt_regs, by its syscall numbers): elsewhere the answer is no, and the agent runs the
sigkill backend.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import struct
from pathlib import Path

from edrfleet.agent.btf import Btf

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_LSM = 29
BPF_LSM_MAC = 27
ATTR_SIZE = 128
# struct bpf_attr, BPF_PROG_LOAD part: offsets from include/uapi/linux/bpf.h (a stable ABI)
OFF_PROG_TYPE, OFF_INSN_CNT, OFF_INSNS, OFF_LICENSE = 0, 4, 8, 16
OFF_EXPECTED_ATTACH_TYPE, OFF_ATTACH_BTF_ID = 68, 108
BPF_FUNC_GET_CURRENT_TASK_BTF, BPF_FUNC_TASK_PT_REGS = 158, 175  # include/uapi/linux/bpf.h
INSNS = bytes.fromhex(
    "850000009e000000"  # call bpf_get_current_task_btf
    "bf01000000000000"  # r1 = r0
    "85000000af000000"  # call bpf_task_pt_regs
    "b700000000000000"  # r0 = 0
    "9500000000000000"  # exit
)


BPF_PROG_TYPE_TRACEPOINT = 5
BPF_FUNC_GET_CURRENT_ANCESTOR_CGROUP_ID = 123
# scope.cgroups: the tracepoint program asks for the exec's ancestor cgroups (kernel 5.13 lets
# tracing programs call it; 5.10 answers "unknown func")
SCOPE_INSNS = bytes.fromhex(
    "b701000000000000"  # r1 = 0
    "850000007b000000"  # call bpf_get_current_ancestor_cgroup_id
    "b700000000000000"  # r0 = 0
    "9500000000000000"  # exit
)


def _load(prog_type: int, code: bytes, attach_type: int = 0, attach_btf_id: int = 0) -> int:
    """bpf(BPF_PROG_LOAD) of raw instructions; the fd (closed here) or -errno."""
    libc = ct.CDLL(None, use_errno=True)
    insns = ct.create_string_buffer(code, len(code))
    license_ = ct.create_string_buffer(b"GPL")
    attr = ct.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=II", attr, OFF_PROG_TYPE, prog_type, len(code) // 8)
    struct.pack_into("=QQ", attr, OFF_INSNS, ct.addressof(insns), ct.addressof(license_))
    struct.pack_into("=I", attr, OFF_EXPECTED_ATTACH_TYPE, attach_type)
    struct.pack_into("=I", attr, OFF_ATTACH_BTF_ID, attach_btf_id)
    fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, attr, ATTR_SIZE)
    if fd < 0:
        return -ct.get_errno()
    os.close(fd)
    return fd


def probe_scope() -> tuple[bool, str]:
    """Can the exec tracepoint program find the exec's ancestor cgroups (scope.cgroups)?"""
    if os.uname().machine != "x86_64":
        return True, ""  # the syscall number is x86-64's: let the compile and load decide
    fd = _load(BPF_PROG_TYPE_TRACEPOINT, SCOPE_INSNS)
    if fd == -errno.EINVAL:
        return False, ("this kernel does not let tracepoint programs call "
                       "bpf_get_current_ancestor_cgroup_id (kernel 5.13 or later): a policy with "
                       "scope.cgroups cannot be enforced here")
    return True, ""  # EPERM etc.: the real load will say so with the verifier's words


def probe_lsm_load(attach_btf_id: int) -> tuple[bool, str]:
    """Load and close a small LSM program for the hook with BTF id ``attach_btf_id``."""
    if os.uname().machine != "x86_64":
        return False, f"the BPF LSM backend is built for x86-64 only (this is {os.uname().machine})"
    fd = _load(BPF_PROG_TYPE_LSM, INSNS, BPF_LSM_MAC, attach_btf_id)
    if fd < 0:
        err = -fd
        if err == errno.EINVAL:
            return False, ("the kernel refuses the LSM program's helpers bpf_get_current_task_btf "
                           "or bpf_task_pt_regs (kernel 5.15 or later)")
        return False, f"the kernel refuses BPF LSM programs ({os.strerror(err)})"
    return True, ""


def lsm_available(btf: Btf) -> tuple[bool, str]:
    """Can BPF LSM programs work here at all?  (Loading may still be refused: then we fall back.)"""
    try:
        lsms = Path("/sys/kernel/security/lsm").read_text().strip().split(",")
    except OSError:
        return False, "securityfs is not mounted (/sys/kernel/security)"
    if "bpf" not in lsms:
        return False, f"'bpf' is not in the active LSMs ({','.join(lsms)}); boot with lsm=...,bpf"
    if not btf.has_func("bpf_lsm_bprm_check_security"):
        return False, "the kernel has no BPF LSM hook bprm_check_security (CONFIG_BPF_LSM)"
    return probe_lsm_load(btf.func_id("bpf_lsm_bprm_check_security"))
