"""Enforcement that outlives the agent: the program's links, maps and programs pinned in bpffs.

One directory per agent instance, derived from its spool (``/sys/fs/bpf/edrfleet/<16 hex of
sha256(realpath(spool))>``), so agents of several lab hosts on one kernel stay apart.  Inside
it one directory per loaded program (``p<id of its entry program>``), holding ``link_*``
(the attachments: while a link is pinned the kernel runs the program, whoever lives or dies),
``map_*`` and ``prog_*``.  What is in force is named by ``pinned.json`` in the spool (bpffs
holds no regular files): the program directory, the compile flags, the policy and slot.

A new program (new release, a policy that needs more) is attached and pinned beside the old
one before the old one's directory is removed: for that moment both judge every exec, never
neither.  ``disarm`` is the one way to end enforcement: it stops a running agent, then unpins
everything under the instance directory (the last reference to each link goes: detached).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

from edrfleet.agent.pinned import bpfsys, selfguard

PIN_ROOT = "/sys/fs/bpf/edrfleet"
MANIFEST = "pinned.json"
GUARDED_STOP_WAIT = 120.0  # seconds disarm waits for a guarded agent to take its request
_MAP_DECL = re.compile(r"^BPF_(?:\w+)\(\s*(\w+)\s*,|^BPF_TABLE\(\"[^\"]+\",[^,]+,[^,]+,\s*(\w+)",
                       re.M)


def instance_dir(spool: str | Path, root: str = PIN_ROOT) -> str:
    """The bpffs directory of the agent whose spool is ``spool``."""
    real = os.path.realpath(str(spool))
    return f"{root}/{hashlib.sha256(real.encode()).hexdigest()[:16]}"


def map_names(program_text: str) -> list[str]:
    """Names of the maps the program text declares (BPF_ARRAY(name, ...), BPF_TABLE(...))."""
    return [a or b for a, b in _MAP_DECL.findall(program_text)]


def read_manifest(spool: str | Path) -> dict | None:
    try:
        with open(Path(spool) / MANIFEST) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{Path(spool) / MANIFEST}: unreadable ({exc}); run "
                         "`agent disarm --spool` to start from nothing") from exc


def write_manifest(spool: str | Path, manifest: dict) -> None:
    path = Path(spool) / MANIFEST
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def pin_program(inst: str, maps: dict[str, int], progs: dict[str, int],
                links: dict[str, int]) -> str:
    """Pin one loaded program's objects under ``inst``; returns its directory.  Links last:
    a pinned link of a program whose maps are not pinned yet is never left behind."""
    bpfsys.mount_bpffs("/sys/fs/bpf")
    os.makedirs(inst, mode=0o700, exist_ok=True)
    first = min(bpfsys.prog_info(fd)["id"] for fd in progs.values())
    pdir = f"{inst}/p{first}"
    os.makedirs(pdir, mode=0o700, exist_ok=True)
    for kind, objs in (("map", maps), ("prog", progs), ("link", links)):
        for name, fd in objs.items():
            path = f"{pdir}/{kind}_{name}"
            if not os.path.exists(path):
                bpfsys.obj_pin(fd, path)
    return pdir


def open_pinned(pdir: str, kind: str) -> dict[str, int]:
    """fds of every ``kind`` ("map", "prog", "link") pinned in ``pdir``, by name."""
    out = {}
    for entry in sorted(os.listdir(pdir)):
        if entry.startswith(kind + "_"):
            out[entry[len(kind) + 1:]] = bpfsys.obj_get(f"{pdir}/{entry}")
    return out


def links_alive(pdir: str, names: list[str]) -> list[str]:
    """Which of the links ``names`` are missing from ``pdir`` (unpinned by someone)."""
    return [n for n in names if not os.path.exists(f"{pdir}/link_{n}")]


def remove_program(pdir: str) -> None:
    """Unpin one program directory: links first (enforcement of this program ends there),
    forcing a detach where the link type allows it even if some process holds an fd."""
    for entry in sorted(os.listdir(pdir), key=lambda e: not e.startswith("link_")):
        path = f"{pdir}/{entry}"
        if entry.startswith("link_"):
            try:
                fd = bpfsys.obj_get(path)
                bpfsys.link_detach(fd)
                os.close(fd)
            except OSError:
                pass
        os.unlink(path)
    os.rmdir(pdir)


def close_all(*fd_maps: dict[str, int]) -> None:
    for fds in fd_maps:
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        fds.clear()


def stop_agent(spool: str | Path, timeout: float = 10.0) -> int | None:
    """SIGTERM the agent running on ``spool`` (pid in status.json) and wait for it to exit."""
    try:
        with open(Path(spool) / "status.json") as f:
            pid = int(json.load(f).get("pid", 0))
    except (OSError, ValueError):
        return None
    if pid <= 1 or pid == os.getpid() or not _is_agent(pid):
        return None
    # on the LSM backend the agent refuses our signals (bpf/guard.c): it reads this request
    # at its next poll -- or once its hand-over to the resident image is done, which on a
    # loaded guest takes longer than a SIGTERM may
    selfguard.request_stop(str(spool))
    delivered = _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + (timeout if delivered else GUARDED_STOP_WAIT)
    while time.monotonic() < deadline and _is_agent(pid):
        time.sleep(0.02)
    if _is_agent(pid):
        _signal(pid, signal.SIGKILL)
    if not _is_agent(pid):  # gone: the next agent on this spool must not read the request
        try:
            os.unlink(os.path.join(str(spool), selfguard.STOP_REQUEST))
        except FileNotFoundError:
            pass
    return pid


def _signal(pid: int, sig: int) -> bool:
    """False when the guard refused it (the stop request is the way in)."""
    try:
        os.kill(pid, sig)
    except PermissionError:
        return False
    return True


def _is_agent(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and any(b"edrfleet" in a or a.endswith(b".pyz") for a in args) \
        and b"run" in args


def disarm(spool: str | Path, root: str = PIN_ROOT) -> list[str]:
    """End enforcement of the agent on ``spool``: stop it, unpin every program of its
    instance.  Returns the program directories removed."""
    stop_agent(spool)
    inst = instance_dir(spool, root)
    removed = []
    if os.path.isdir(inst):
        for entry in sorted(os.listdir(inst)):
            remove_program(f"{inst}/{entry}")
            removed.append(f"{inst}/{entry}")
        shutil.rmtree(inst, ignore_errors=True)
    try:  # the last agent on this kernel leaves no edrfleet directory in bpffs behind
        os.rmdir(root)
    except OSError:  # another agent's instance is still there (or root never existed)
        pass
    try:
        os.unlink(Path(spool) / MANIFEST)
    except FileNotFoundError:
        pass
    return removed
