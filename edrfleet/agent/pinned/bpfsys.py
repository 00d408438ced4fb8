"""The few ``bpf(2)`` commands the agent issues itself, through ctypes (standard library only).

BCC compiles and loads; everything that has to outlive the process goes through here: links
the agent creates (so they can be pinned), pins in bpffs, freezing maps, reading maps and
objects back from their pins.  Constants are the kernel UAPI's (include/uapi/linux/bpf.h);
each ``union bpf_attr`` layout is written as the struct the command reads.  Errors raise
``OSError`` with the errno and the command's name.
"""

from __future__ import annotations

import ctypes as ct
import os
import platform

# __NR_bpf (arch/x86/entry/syscalls/syscall_64.tbl; include/uapi/asm-generic/unistd.h for arm64)
NR_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), 321)

# enum bpf_cmd (include/uapi/linux/bpf.h): the values are ABI and never change
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_RAW_TRACEPOINT_OPEN = 17  # since 5.7 returns a bpf_link fd (pinnable)
BPF_MAP_FREEZE = 22           # 5.2: no more writes through bpf(2); programs still write
BPF_LINK_UPDATE = 29          # 5.7: only some link types (cgroup, xdp, ...): not tracing
BPF_LINK_DETACH = 34          # 5.9: same, where the link type implements it

BPF_ANY = 0  # map update flags
BPF_F_RDONLY = 1 << 3  # BPF_OBJ_GET file_flags: a read-only fd

# enum bpf_map_type / bpf_prog_type values the agent looks at
MAP_TYPE_PROG_ARRAY = 3
MAP_TYPE_PERCPU_ARRAY = 6
MAP_TYPE_RINGBUF = 27
PROG_TYPE_TRACEPOINT = 5
PROG_TYPE_RAW_TRACEPOINT = 17
PROG_TYPE_LSM = 29

BPFFS_MAGIC = 0xCAFE4A11  # statfs f_type of a bpf filesystem
ATTR_SIZE = 128  # bigger than any attr used here; the kernel wants the tail zero

_libc = ct.CDLL(None, use_errno=True)
_libc.syscall.restype = ct.c_long


class _MapElem(ct.Structure):  # BPF_MAP_*_ELEM, BPF_MAP_GET_NEXT_KEY
    _fields_ = [("map_fd", ct.c_uint32), ("_pad", ct.c_uint32), ("key", ct.c_uint64),
                ("value", ct.c_uint64), ("flags", ct.c_uint64)]


class _ObjPin(ct.Structure):  # BPF_OBJ_PIN, BPF_OBJ_GET
    _fields_ = [("pathname", ct.c_uint64), ("bpf_fd", ct.c_uint32),
                ("file_flags", ct.c_uint32)]


class _RawTp(ct.Structure):  # BPF_RAW_TRACEPOINT_OPEN (name NULL: the program's BTF target)
    _fields_ = [("name", ct.c_uint64), ("prog_fd", ct.c_uint32)]


class _Info(ct.Structure):  # BPF_OBJ_GET_INFO_BY_FD
    _fields_ = [("bpf_fd", ct.c_uint32), ("info_len", ct.c_uint32), ("info", ct.c_uint64)]


class _LinkUpdate(ct.Structure):  # BPF_LINK_UPDATE
    _fields_ = [("link_fd", ct.c_uint32), ("new_prog_fd", ct.c_uint32),
                ("flags", ct.c_uint32), ("old_prog_fd", ct.c_uint32)]


class _Fd(ct.Structure):  # BPF_MAP_FREEZE, BPF_LINK_DETACH: just the fd
    _fields_ = [("fd", ct.c_uint32)]


def _call(cmd: int, attr: ct.Structure, what: str) -> int:
    buf = ct.create_string_buffer(ATTR_SIZE)
    ct.memmove(buf, ct.byref(attr), ct.sizeof(attr))
    ret = _libc.syscall(NR_BPF, cmd, buf, ATTR_SIZE)
    if ret < 0:
        err = ct.get_errno()
        raise OSError(err, f"bpf({what}): {os.strerror(err)}")
    ct.memmove(ct.byref(attr), buf, ct.sizeof(attr))
    return ret


def obj_pin(fd: int, path: str) -> None:
    p = ct.create_string_buffer(path.encode())
    _call(BPF_OBJ_PIN, _ObjPin(pathname=ct.addressof(p), bpf_fd=fd), f"pin {path}")


def obj_get(path: str, readonly: bool = False) -> int:
    """A new fd for the object pinned at ``path``."""
    p = ct.create_string_buffer(path.encode())
    flags = BPF_F_RDONLY if readonly else 0
    return _call(BPF_OBJ_GET, _ObjPin(pathname=ct.addressof(p), file_flags=flags),
                 f"get {path}")


def raw_tracepoint_open(prog_fd: int, name: str | None) -> int:
    """A link fd attaching ``prog_fd``: a raw tracepoint by name, or (name None) an LSM or
    tp_btf program at the hook its load named."""
    buf = ct.create_string_buffer(name.encode()) if name else None
    attr = _RawTp(name=ct.addressof(buf) if buf else 0, prog_fd=prog_fd)
    return _call(BPF_RAW_TRACEPOINT_OPEN, attr, f"attach {name or 'btf hook'}")


def link_update(link_fd: int, new_prog_fd: int) -> None:
    _call(BPF_LINK_UPDATE, _LinkUpdate(link_fd=link_fd, new_prog_fd=new_prog_fd), "link update")


def link_detach(link_fd: int) -> bool:
    """Detach now even if other fds hold the link; False where the link type cannot."""
    try:
        _call(BPF_LINK_DETACH, _Fd(fd=link_fd), "link detach")
    except OSError as exc:
        if exc.errno in (95, 22):  # EOPNOTSUPP (tracing links), EINVAL (before 5.9)
            return False
        raise
    return True


def map_freeze(map_fd: int) -> None:
    _call(BPF_MAP_FREEZE, _Fd(fd=map_fd), "map freeze")


def map_lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    k = ct.create_string_buffer(key, len(key))
    v = ct.create_string_buffer(value_size)
    try:
        _call(BPF_MAP_LOOKUP_ELEM, _MapElem(map_fd=map_fd, key=ct.addressof(k),
                                            value=ct.addressof(v)), "map lookup")
    except OSError as exc:
        if exc.errno == 2:  # ENOENT
            return None
        raise
    return v.raw


def map_update(map_fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    k = ct.create_string_buffer(key, len(key))
    v = ct.create_string_buffer(value, len(value))
    _call(BPF_MAP_UPDATE_ELEM, _MapElem(map_fd=map_fd, key=ct.addressof(k),
                                        value=ct.addressof(v), flags=flags), "map update")


def map_delete(map_fd: int, key: bytes) -> None:
    k = ct.create_string_buffer(key, len(key))
    _call(BPF_MAP_DELETE_ELEM, _MapElem(map_fd=map_fd, key=ct.addressof(k)), "map delete")


def map_keys(map_fd: int, key_size: int) -> list[bytes]:
    """Every key of a hash map (GET_NEXT_KEY from no key)."""
    keys: list[bytes] = []
    cur = None
    nxt = ct.create_string_buffer(key_size)
    while True:
        k = ct.create_string_buffer(cur, key_size) if cur is not None else None
        try:
            _call(BPF_MAP_GET_NEXT_KEY, _MapElem(map_fd=map_fd,
                                                 key=ct.addressof(k) if k else 0,
                                                 value=ct.addressof(nxt)), "map next key")
        except OSError as exc:
            if exc.errno == 2:  # ENOENT: past the last key
                return keys
            raise
        cur = nxt.raw
        keys.append(cur)


def _info(fd: int, size: int) -> bytes:
    buf = ct.create_string_buffer(size)
    _call(BPF_OBJ_GET_INFO_BY_FD, _Info(bpf_fd=fd, info_len=size, info=ct.addressof(buf)),
          "object info")
    return buf.raw


def map_info(fd: int) -> dict:
    """struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags, name."""
    raw = _info(fd, 88)
    keys = ("type", "id", "key_size", "value_size", "max_entries", "map_flags")
    out: dict = {k: int.from_bytes(raw[4 * i:4 * i + 4], "little") for i, k in enumerate(keys)}
    out["name"] = raw[24:40].split(b"\0")[0].decode()
    return out


def prog_info(fd: int) -> dict:
    """struct bpf_prog_info: type, id, tag (hex), name (offset 64)."""
    raw = _info(fd, 96)
    return {"type": int.from_bytes(raw[0:4], "little"),
            "id": int.from_bytes(raw[4:8], "little"), "tag": raw[8:16].hex(),
            "name": raw[64:80].split(b"\0")[0].decode()}


def link_info(fd: int) -> dict:
    """struct bpf_link_info: type, id, prog_id."""
    raw = _info(fd, 64)
    return {k: int.from_bytes(raw[i:i + 4], "little")
            for k, i in (("type", 0), ("id", 4), ("prog_id", 8))}


def is_bpffs(path: str) -> bool:
    class _Statfs(ct.Structure):
        _fields_ = [("f_type", ct.c_long), ("_rest", ct.c_byte * 112)]

    st = _Statfs()
    if _libc.statfs(path.encode(), ct.byref(st)) != 0:
        return False
    return (st.f_type & 0xFFFFFFFF) == BPFFS_MAGIC


def mount_bpffs(path: str = "/sys/fs/bpf") -> None:
    """Mount a bpf filesystem at ``path`` unless one is there (minimal hosts, containers)."""
    if is_bpffs(path):
        return
    os.makedirs(path, exist_ok=True)
    if _libc.mount(b"bpf", path.encode(), b"bpf", 0, None) != 0:
        err = ct.get_errno()
        raise OSError(err, f"mount bpffs at {path}: {os.strerror(err)}")
