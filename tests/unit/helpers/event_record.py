"""Kernel event records for unit tests: ``struct edr_event`` as ``bpf/edrfleet.h`` declares it.

BCC builds the agent's ctypes record type from the same declaration when it compiles the
program; here it is parsed from the header, so a record made for a test has the kernel's
field names, types and array sizes.
"""

from __future__ import annotations

import ctypes as ct
import functools
import re
from typing import Any

from edrfleet.kernel_abi import load_header
from edrfleet.paths import BPF

_STRUCT = re.compile(r"struct edr_event\s*\{(.*?)\};", re.S)
_MEMBER = re.compile(r"\b(u64|u32|u16|u8|char)\s+(\w+)(?:\[(\w+)\])?\s*;")
_TYPES = {"u64": ct.c_uint64, "u32": ct.c_uint32, "u16": ct.c_uint16, "u8": ct.c_uint8,
          "char": ct.c_char}


@functools.cache
def record_type() -> type[ct.Structure]:
    text = (BPF / "edrfleet.h").read_text()
    header = load_header(BPF)
    body = re.sub(r"/\*.*?\*/", "", _STRUCT.search(text).group(1), flags=re.S)
    fields: list[tuple[str, Any]] = []
    for ctype, name, size in _MEMBER.findall(body):
        kind = _TYPES[ctype]
        if size:
            kind = kind * (int(size) if size.isdigit() else header[size])
        fields.append((name, kind))
    return type("edr_event", (ct.Structure,), {"_fields_": fields})


def record(*, args: list[bytes], filename: bytes = b"", cwd: bytes = b"/root",
           exe_name: bytes = b"", parent_name: bytes = b"bash", **values: int) -> ct.Structure:
    """One record; ``values`` set the integer fields (ts_ns, pid, ppid, uid, rule, action, ...).
    ``args_len`` and ``args_total`` default to the argv block's length."""
    block = b"".join(a + b"\0" for a in args)
    ev = record_type()()
    defaults = {"ts_ns": 5_000_000_000, "pid": 4242, "ppid": 4241, "action": 1, "backend": 1,
                "stage": 1, "reason": 1, "args_len": len(block), "args_total": len(block),
                "filename_len": len(filename), "cwd_len": len(cwd), "cgroup_id": 81234}
    for name, value in (defaults | values).items():
        setattr(ev, name, value)
    name_max = type(ev).exe_name.size - 1
    ev.exe_name = (exe_name or (args or [b"true"])[0].rsplit(b"/", 1)[-1])[:name_max]
    ev.parent_name = parent_name
    for name, raw in (("args", block), ("filename", filename), ("cwd", cwd)):
        ct.memmove(ct.addressof(ev) + getattr(type(ev), name).offset, raw, len(raw))
    return ev
