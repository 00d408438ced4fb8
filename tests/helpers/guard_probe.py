"""Run in a guest as root: every way tests/vm/test_lsm_guard.py tries at a guarded agent.

usage: python3 guard_probe.py SPOOL -> one JSON object on stdout: each attempt's errno
(0 = it worked).  Plain ctypes, like an attacker's script: signals, ptrace attach, opening
/proc/PID/mem, unlink and rename of a pin, BPF_OBJ_GET of a pin, a writable and a read-only fd
to the config map by id, a link's fd by id.  Standard library only (the guest has no bpftool).
"""

from __future__ import annotations

import ctypes as ct
import errno
import glob
import json
import os
import signal
import struct
import sys

SYS_BPF = 321  # x86-64
BPF_OBJ_GET, BPF_MAP_GET_FD_BY_ID, BPF_LINK_GET_FD_BY_ID = 7, 14, 30
BPF_F_RDONLY = 1 << 3
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
libc = ct.CDLL(None, use_errno=True)
libc.syscall.restype = ct.c_long


def bpf(cmd: int, attr: bytes) -> int:
    """0 (an fd was returned and closed) or the errno."""
    buf = ct.create_string_buffer(attr.ljust(128, b"\0"), 128)
    fd = libc.syscall(SYS_BPF, cmd, buf, 128)
    if fd < 0:
        return ct.get_errno()
    os.close(fd)
    return 0


def obj_get(path: str) -> int:
    name = ct.create_string_buffer(path.encode())
    return bpf(BPF_OBJ_GET, struct.pack("=QII", ct.addressof(name), 0, 0))


def by_id(cmd: int, obj_id: int, flags: int = 0) -> int:
    return bpf(cmd, struct.pack("=III", obj_id, 0, flags))


def oserr(fn) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def main() -> None:
    spool = sys.argv[1]
    with open(os.path.join(spool, "status.json")) as f:
        status = json.load(f)
    pid, guard = status["pid"], status["guard"]
    (pdir,) = glob.glob(status["pinned"])
    out: dict = {"pid": pid}
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP, signal.SIGINT, signal.SIGUSR1):
        out[f"kill_{sig.name}"] = oserr(lambda s=sig: os.kill(pid, s))
    out["kill_0"] = oserr(lambda: os.kill(pid, 0))
    r = libc.ptrace(PTRACE_ATTACH, pid, None, None)
    out["ptrace_attach"] = ct.get_errno() if r < 0 else 0
    if r == 0:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    out["proc_mem"] = oserr(lambda: open(f"/proc/{pid}/mem", "rb").close())
    out["proc_status"] = oserr(lambda: open(f"/proc/{pid}/status").close())
    link = f"{pdir}/link_lsm"
    out["unlink_pin"] = oserr(lambda: os.unlink(link))
    out["rename_pin"] = oserr(lambda: os.rename(link, f"{pdir}/moved"))
    out["rename_dir"] = oserr(lambda: os.rename(pdir, f"{pdir}-moved"))
    out["obj_get_map"] = obj_get(f"{pdir}/map_config")
    out["obj_get_link"] = obj_get(link)
    out["map_fd_rw"] = by_id(BPF_MAP_GET_FD_BY_ID, guard["map_ids"]["config"])
    out["map_fd_ro"] = by_id(BPF_MAP_GET_FD_BY_ID, guard["map_ids"]["config"], BPF_F_RDONLY)
    out["link_fd"] = {str(i): by_id(BPF_LINK_GET_FD_BY_ID, i) for i in guard["link_ids"]}
    out["alive"] = os.path.exists(f"/proc/{pid}")
    with open(f"/proc/{pid}/stat") as f:
        out["state"] = f.read().rsplit(")", 1)[1].split()[0]
    out["pins_left"] = sorted(os.listdir(pdir))
    out["EPERM"] = errno.EPERM
    print(json.dumps(out))


if __name__ == "__main__":
    main()
