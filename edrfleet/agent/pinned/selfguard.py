"""Self-protection on the LSM backend: bpf/guard.c refuses other processes, this side arms it.

``attach`` loads guard.c's hooks next to bprm_check_security (they are pinned with the rest
of the program, so they outlive the agent like its enforcement).  ``SelfGuard.arm`` names what
the agent owns in the "guard_objs" map -- ids of its maps, links and linked programs, (s_dev,
inode) of its pins and bpffs directories, never a name an attacker could reuse -- and then
writes the agent's tgid into "guard_self": from then on signals that stop or end the agent,
ptrace attach, unlink/rename/open of the pins, writable map fds and fds by id are refused
(EPERM) to every other process.  The guard ends with the agent (the kernel clears
"guard_self" when its main thread exits).

How an admin gets past it: the unit's stop (pid 1 may signal the agent), and ``agent disarm``,
which leaves a request file in the spool (root-only); the agent sees it within one poll, lets
the guard go and exits, and disarm unpins.  Each refusal is counted in "guard_log" (with the
last caller): ``SelfGuard.tick`` turns new counts into events and status.json's ``guard``.
"""

from __future__ import annotations

import os
import struct
import time

from edrfleet.agent import ecs
from edrfleet.agent.pinned import bpfsys
from edrfleet.agent.status import read_status

STOP_REQUEST = "disarm.request"  # in the spool: the agent lets the guard go and exits
RULE_ID = "edrfleet-self-protection"
# (link name, function in bpf/guard.c, LSM hook); inode_rmdir shares unlink's function
HOOKS = (
    ("guard_kill", "edr_guard_kill", "task_kill"),
    ("guard_ptrace", "edr_guard_ptrace", "ptrace_access_check"),
    ("guard_unlink", "edr_guard_unlink", "inode_unlink"),
    ("guard_rmdir", "edr_guard_unlink", "inode_rmdir"),
    ("guard_rename", "edr_guard_rename", "inode_rename"),
    ("guard_open", "edr_guard_open", "inode_permission"),
    ("guard_map", "edr_guard_map", "bpf_map"),
    ("guard_bpf", "edr_guard_bpf", "bpf"),
)
EXIT_TP = "sched_process_exit"
# enum edr_guard_kind, in order; enum edr_guard_obj
KINDS = ("signal", "ptrace", "unlink", "rename", "open", "map_write", "by_id")
GOBJ_MAP, GOBJ_PROG, GOBJ_LINK, GOBJ_FILE, GOBJ_DIR = 1, 2, 3, 4, 5
_KEY = struct.Struct("=IIQ")       # struct edr_guard_key
_REC = struct.Struct("=QII16s")    # struct edr_guard_rec


def attach(engine) -> str:
    """Load and attach the guard's programs into ``engine`` (links named guard_*); "" or why
    not.  A guard that fails leaves the exec enforcement as it is."""
    from bcc import BPF

    added: list[str] = []
    try:
        for name, func, hook in HOOKS:
            fd = engine._load_lsm(func.encode(), f"lsm__{hook}".encode())
            engine.prog_fds[name] = fd
            engine.links[name] = bpfsys.raw_tracepoint_open(fd, None)
            added.append(name)
        fn = engine.bpf.load_func(b"edr_guard_exit", BPF.RAW_TRACEPOINT)
        engine.prog_fds["guard_exit"] = fn.fd
        engine.links["guard_exit"] = bpfsys.raw_tracepoint_open(fn.fd, EXIT_TP)
    except Exception as exc:  # noqa: BLE001 - the verifier's or the kernel's word, reported
        for name in added:
            os.close(engine.links.pop(name))
        return f"the guard's programs did not load: {exc}"
    return ""


def request_stop(spool: str) -> None:
    """``agent disarm``: ask the agent on ``spool`` to let the guard go and exit."""
    path = os.path.join(spool, STOP_REQUEST)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, f"{os.getpid()} {time.time():.3f}\n".encode())
    os.close(fd)


class SelfGuard:
    def __init__(self, spool: str) -> None:
        self.spool = spool
        self.seen = [0] * len(KINDS)
        self.status: dict = {"on": False, "why": "not started", "refused": {}}
        self.fds: dict[str, int] = {}
        self.log_id = 0

    def arm(self, engine, lsm_why: str, previous: dict | None = None) -> dict:
        """Name what the agent owns and switch the guard on; status.json's ``guard``.
        ``previous``: what the image before a hand-over said (it knew why LSM was not used)."""
        fds = engine.map_fds()
        if engine.backend != "lsm":
            why = (f"backend {engine.backend}: {lsm_why}" if lsm_why else
                   (previous or {}).get("why") or
                   f"backend {engine.backend}: the pinned program was built without BPF LSM")
            self.status = {"on": False, "why": why, "refused": {}}
            return self.status
        if "guard_self" not in fds or "guard_kill" not in engine.links:
            why = getattr(engine, "guard_why", "") or "the program was built without the guard"
            self.status = {"on": False, "why": why, "refused": {}}
            return self.status
        objs = _objects(engine, fds)
        for key in objs:
            bpfsys.map_update(fds["guard_objs"], _KEY.pack(*key), struct.pack("=I", 1))
        log_id = bpfsys.map_info(fds["guard_log"])["id"]
        if log_id != self.log_id:  # a new program, or a new image of the agent
            # what the agent before us reported (a hand-over, a restart that adopts) is not
            # reported again; what it did not get to (refused meanwhile) is
            prev = previous if previous and "seen" in previous else _saved(self.spool)
            same = prev.get("log_id") == log_id and len(prev.get("seen", [])) == len(KINDS)
            self.seen = list(prev["seen"]) if same else [0] * len(KINDS)
            self.status["refused"] = dict(prev.get("refused", {})) if same else {}
            self.log_id = log_id
        self.fds = fds
        bpfsys.map_update(fds["guard_self"], struct.pack("=I", 0), struct.pack("=I", os.getpid()))
        self.status = {
            "on": True, "why": "", "objects": len(objs),
            "map_ids": {n: bpfsys.map_info(fd)["id"] for n, fd in fds.items()},
            "link_ids": sorted(bpfsys.link_info(fd)["id"] for fd in engine.links.values()),
            "refused": self.status.get("refused", {}),
            "log_id": log_id, "seen": self.seen,
        }
        return self.status

    def release(self) -> None:
        """Let the guard go: the agent is about to exit (a disarm request, the unit's stop)."""
        if self.fds:
            bpfsys.map_update(self.fds["guard_self"], struct.pack("=I", 0), struct.pack("=I", 0))
            self.fds = {}
            self.status["on"] = False
            self.status["why"] = "the agent stopped"

    def stop_requested(self) -> bool:
        """A live `agent disarm` asked us to stop.  The request stays until that disarm saw us
        go (it removes it): read and removed here, a request made during the hand-over to the
        resident image was lost with the image that read it.  A request whose writer is gone
        is stale (a disarm killed midway) and removed."""
        path = os.path.join(self.spool, STOP_REQUEST)
        try:
            with open(path) as f:
                writer = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(writer, 0)
        except ProcessLookupError:
            os.unlink(path)
            return False
        except PermissionError:
            pass
        return True

    def tick(self, host: str, version: str) -> list[dict]:
        """Events for refusals since the last tick (one per kind, with its count)."""
        if not self.fds:
            return []
        out = []
        for i, (count, pid, arg, comm) in enumerate(self._records()):
            if count <= self.seen[i]:
                continue
            new, self.seen[i] = count - self.seen[i], count  # (status.json's "seen" too)
            refused = self.status.setdefault("refused", {})
            refused[KINDS[i]] = refused.get(KINDS[i], 0) + new
            out.append(refusal_event(KINDS[i], new, pid, comm.split(b"\0")[0].decode(
                errors="replace"), arg, host, version))
        return out

    def _records(self) -> list[tuple[int, int, int, bytes]]:
        fd = self.fds["guard_log"]
        out = []
        for i in range(len(KINDS)):
            raw = bpfsys.map_lookup(fd, struct.pack("=I", i), _REC.size)
            out.append(_REC.unpack(raw) if raw else (0, 0, 0, b""))
        return out


def kernel_dev(st_dev: int) -> int:
    """st_dev -> s_dev's encoding (MAJOR << 20 | MINOR); as edrfleet.agent.maps has it, whose
    import (pwd, the policy packing) `agent wait` and `service` must not pay for."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def _saved(spool: str) -> dict:
    """status.json's ``guard`` as the last agent on ``spool`` left it ({} if none)."""
    try:
        return (read_status(spool) or {}).get("guard") or {}
    except (OSError, ValueError):
        return {}


def _objects(engine, fds: dict[str, int]) -> list[tuple[int, int, int]]:
    """(kind, dev, id) of every map, link, linked program, pin and directory of ``engine``."""
    objs = [(GOBJ_MAP, 0, bpfsys.map_info(fd)["id"]) for fd in fds.values()]
    for fd in engine.links.values():
        info = bpfsys.link_info(fd)
        objs += [(GOBJ_LINK, 0, info["id"]), (GOBJ_PROG, 0, info["prog_id"])]
    pdir = engine.pdir
    for d in (pdir, os.path.dirname(pdir)):
        st = os.stat(d)
        objs.append((GOBJ_DIR, kernel_dev(st.st_dev), st.st_ino))
    for entry in os.listdir(pdir):
        st = os.stat(os.path.join(pdir, entry))
        objs.append((GOBJ_FILE, kernel_dev(st.st_dev), st.st_ino))
    return objs


def refusal_event(what: str, count: int, pid: int, comm: str, arg: int, host: str,
                  version: str) -> dict:
    """The ECS document of refusals of one kind (the last caller's pid and name)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    detail = {"signal": arg} if what == "signal" else {"arg": arg}
    return {
        "@timestamp": f"{stamp}.{int(time.time() * 1e6) % 1000000:06d}Z",
        "ecs": {"version": ecs.ECS_VERSION},
        "event": {"id": f"guard-{time.time_ns():x}", "action": "self-protection",
                  "kind": "alert", "category": ["intrusion_detection"], "type": ["denied"],
                  "outcome": "failure"},
        "rule": {"id": RULE_ID, "name": what},
        "host": {"name": host},
        "agent": {"type": ecs.AGENT_TYPE, "version": version},
        "process": {"pid": pid, "name": comm},
        "message": f"refused {what} aimed at the agent ({count}x, last by {comm} pid {pid})",
        "edrfleet": {"refused": {"what": what, "count": count, **detail}},
    }
