"""The event schema: kernel record -> one Elastic Common Schema (ECS) document.

This is the one module that knows the event's layout; the spool, the outputs, the fleet
report's store, the demo and the benches read events through the field names defined here
(a tuple path per field, read with :func:`get`), so the layout lives in one place.

Events are nested JSON objects, as ECS documents are written (``{"event": {"id": …},
"process": {"parent": {…}}}``), conforming to ECS :data:`ECS_VERSION`
(docs/events.md says what each field holds; ``tests/unit/data/ecs/`` holds that release's
definitions of the fields used here; a unit test and a kernel test validate real events against
them).  Fields, by dotted name::

    @timestamp ecs.version event.{id,kind,category,type,outcome,severity,action}
    host.name agent.{type,version}
    process.{pid,executable,name,command_line,args,args_count,working_directory}
    process.parent.{pid,executable,name} user.{id,name} group.id
    rule.{id,name,description} tags (the rule's) threat.framework
    threat.technique.id (MITRE ids of its attack.tNNNN[.NNN] tags)
    edrfleet.{severity,backend,policy_sha256,as_executed,stage,reason,args_truncated,
              args_bytes,unscanned,fileless,loader,cgroup_id,count,summary,inet_stdio}

What each action writes.  A block or a would-be block is a detection rule firing on the host,
what ECS calls an ``alert`` (and what an analyst triages, in monitor mode too); a ``log`` rule
records an exec, an ``event``.  ECS expects ``denied`` and ``allowed`` with the category
``intrusion_detection`` (the disposition of a prevention system), not with ``process``; so
decisions carry both categories, and every type is one ECS expects with one of them::

    blocked      kind alert  category [process, intrusion_detection]  type [start, denied]
                 outcome failure
    would_block  kind alert  category [process, intrusion_detection]  type [start, allowed]
                 outcome success
    logged       kind event  category [process]                       type [start]
                 outcome success

``event.severity`` is the rule's severity as a number, higher is worse, on the scale Elastic's
detection rules use for their risk scores: low 21, medium 47, high 73, critical 99; the rule's
word itself is ``edrfleet.severity``.  ``process.parent.executable`` is a path or absent (the
parent exited before the agent could read ``/proc/PPID/exe``, or that pid now runs another
image); ``user.name`` is absent for a uid without a passwd entry; ``tags`` and ``threat.*``
only when the rule has tags.

Command-line bytes are decoded as UTF-8 with invalid bytes escaped (``\\xNN``), so hostile
bytes survive as visible text and the JSON line stays valid.

Events written by agents before the nested layout had flat dotted keys (``"event.id"``);
:func:`get` and :func:`key_paths` read both, so a store keeps pulling an old host's spool.
"""

from __future__ import annotations

import ctypes as ct
import functools
import os
import pwd
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edrfleet import __version__

ECS_VERSION = "9.4.0"
AGENT_TYPE = "edrfleet"

Field = tuple[str, ...]

# field paths other modules use
TIMESTAMP: Field = ("@timestamp",)
EVENT_ID: Field = ("event", "id")
ACTION: Field = ("event", "action")
KIND: Field = ("event", "kind")
CATEGORY: Field = ("event", "category")
TYPE: Field = ("event", "type")
OUTCOME: Field = ("event", "outcome")
EVENT_SEVERITY: Field = ("event", "severity")
HOST: Field = ("host", "name")
PID: Field = ("process", "pid")
EXECUTABLE: Field = ("process", "executable")
PROCESS_NAME: Field = ("process", "name")
COMMAND_LINE: Field = ("process", "command_line")
ARGS: Field = ("process", "args")
WORKING_DIRECTORY: Field = ("process", "working_directory")
PARENT_PID: Field = ("process", "parent", "pid")
PARENT_EXECUTABLE: Field = ("process", "parent", "executable")
PARENT_NAME: Field = ("process", "parent", "name")
USER_ID: Field = ("user", "id")
USER_NAME: Field = ("user", "name")
GROUP_ID: Field = ("group", "id")
RULE_ID: Field = ("rule", "id")
RULE_DESCRIPTION: Field = ("rule", "description")
TAGS: Field = ("tags",)
TECHNIQUE_ID: Field = ("threat", "technique", "id")
SEVERITY: Field = ("edrfleet", "severity")  # the rule's word: low, medium, high, critical
BACKEND: Field = ("edrfleet", "backend")
POLICY_SHA: Field = ("edrfleet", "policy_sha256")
AS_EXECUTED: Field = ("edrfleet", "as_executed")
STAGE: Field = ("edrfleet", "stage")
REASON: Field = ("edrfleet", "reason")
ARGS_TRUNCATED: Field = ("edrfleet", "args_truncated")
ARGS_BYTES: Field = ("edrfleet", "args_bytes")
UNSCANNED: Field = ("edrfleet", "unscanned")
FILELESS: Field = ("edrfleet", "fileless")

# flat names of the first event layout that differ from the dotted name of the field
_OLD_FLAT_NAMES = {SEVERITY: "rule.severity", ARGS_TRUNCATED: "process.args_truncated"}

EVENT_ACTIONS = {1: "blocked", 2: "would_block", 3: "logged"}
BACKENDS = {1: "sigkill", 2: "lsm"}
STAGES = {1: "exec", 2: "lsm"}
STAGE_LSM = 2
REASONS = {1: "rule", 2: "recheck", 3: "unscanned", 4: "dropped"}
UNSCANNED_RULE_ID = "edrfleet-unscanned-args"
DROPPED_RULE_ID = "edrfleet-unevaluated-groups"  # more rule groups than the kernel evaluates
FAIL_CLOSED_IDS = {"unscanned": UNSCANNED_RULE_ID, "dropped": DROPPED_RULE_ID}
SEVERITY_SCORES = {"low": 21, "medium": 47, "high": 73, "critical": 99}
FLAG_ARGS_TRUNCATED = 1
FLAG_FILENAME_TRUNCATED = 2
FLAG_UNSCANNED = 4
FLAG_CWD_TRUNCATED = 8
FLAG_CWD_UNKNOWN = 16
FLAG_FILELESS = 32
FLAG_DROPPED = 64  # rule groups not evaluated (the candidate cap): reason dropped if blocked
FLAG_STDIO_INET = 128  # the process's fd 0-2 held a network socket (read for inet_stdio rules)
FLAG_PARENT_STDIO_INET = 256  # its parent's did
FLAG_EXE_PATH_PARTIAL = 512  # exe_path is only a tail of the executable's path
FLAG_LOADER = 1024  # the dynamic loader run directly, judged as the program it runs
TECHNIQUE_TAG = re.compile(r"attack\.(t\d{4}(?:\.\d{3})?)\Z", re.IGNORECASE)
ATTACK_FRAMEWORK = "MITRE ATT&CK"
_DELETED = " (deleted)"

# event.* by action: (kind, category, type, outcome); each event.type value is one ECS
# expects for one of the categories listed with it
_CLASSIFICATION: dict[str, tuple[str, list[str], list[str], str]] = {
    "blocked": ("alert", ["process", "intrusion_detection"], ["start", "denied"], "failure"),
    "would_block": ("alert", ["process", "intrusion_detection"], ["start", "allowed"],
                    "success"),
    "logged": ("event", ["process"], ["start"], "success"),
}


# --- reading events --------------------------------------------------------------------------

def dotted(field: Field) -> str:
    """The field's ECS name: ``("event", "id")`` -> ``event.id``."""
    return ".".join(field)


def get(event: Mapping[str, Any], field: Field, default: Any = None) -> Any:
    """The value of ``field`` in ``event`` (nested; else flat, as older agents wrote it)."""
    node: Any = event
    for key in field:
        if not isinstance(node, Mapping) or key not in node:
            break
        node = node[key]
    else:
        return node
    return event.get(_OLD_FLAT_NAMES.get(field, dotted(field)), default)


def key_paths(field: Field) -> tuple[Field, ...]:
    """Where ``field`` may sit in a stored event, first the current layout: its nested path,
    then the one-key path of the flat layout older agents wrote (``("event.id",)``).  A
    top-level name such as ``@timestamp`` has one."""
    flat = (_OLD_FLAT_NAMES.get(field, dotted(field)),)
    return (field,) if flat == field else (field, flat)


def flatten(event: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted name -> value of every leaf (a list is a leaf, as in ECS's flat definitions)."""
    out: dict[str, Any] = {}
    for key, value in event.items():
        name = prefix + key
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`: ``{"event.id": 1}`` -> ``{"event": {"id": 1}}``."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


# --- writing events --------------------------------------------------------------------------

def text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def field_bytes(struct: ct.Structure, name: str, length: int) -> bytes:
    """Bytes of a char array field, NULs included (ctypes stops char arrays at the first NUL)."""
    return ct.string_at(ct.addressof(struct) + getattr(type(struct), name).offset, length)


def kernel_exe_path(ev) -> str:
    """The executable's path as the kernel walked it; "" when partial (or from an older
    program without it): the caller falls back to what user space can find."""
    length = getattr(ev, "exe_path_len", 0)
    if not length or ev.flags & FLAG_EXE_PATH_PARTIAL:
        return ""
    return text(field_bytes(ev, "exe_path", length))


def split_args(raw: bytes) -> list[bytes]:
    """argv from the kernel's NUL-separated block (the final NUL ends the last string)."""
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return raw.split(b"\0") if raw else []


@dataclass
class Generation:
    """What the agent knows of one loaded policy, to name the rules an event refers to."""

    sha256: str
    rules: list[dict]


@dataclass
class Clock:
    """Kernel boot-time nanoseconds -> wall clock."""

    boot_wall: float

    @classmethod
    def now(cls) -> Clock:
        import time

        return cls(time.time() - time.clock_gettime(time.CLOCK_BOOTTIME))

    def iso(self, boot_ns: int) -> str:
        when = datetime.fromtimestamp(self.boot_wall + boot_ns / 1e9, tz=timezone.utc)  # noqa: UP017 (3.9)
        return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_ecs(
    ev: ct.Structure,
    *,
    host: str,
    generation: Generation | None,
    clock: Clock,
    boot_id: str,
    executable: str,
    parent_executable: str = "",
) -> dict:
    """Decode one ring-buffer record (must be called while the record is valid).

    ``parent_executable``: :func:`resolve_parent`'s path, "" if unknown (then omitted).
    """
    args = [text(a) for a in split_args(field_bytes(ev, "args", ev.args_len))]
    rule: dict = {}
    if generation and ev.rule < len(generation.rules):
        rule = generation.rules[ev.rule]
    reason = REASONS.get(ev.reason, str(ev.reason))
    rule_id = rule.get("id") or FAIL_CLOSED_IDS.get(reason, "")
    severity = rule.get("severity", "critical" if reason in FAIL_CLOSED_IDS else "")
    action = EVENT_ACTIONS.get(ev.action, str(ev.action))
    event = {"id": f"{boot_id[:8]}-{ev.ts_ns:x}-{ev.pid:x}", "action": action}
    event.update(classify(action))
    if severity in SEVERITY_SCORES:
        event["severity"] = SEVERITY_SCORES[severity]
    process = {
        "pid": ev.pid,
        "executable": executable,
        "name": text(ev.exe_name),
        "command_line": " ".join(args),
        "args": args,
        "args_count": len(args),
        "working_directory": working_directory(ev),
        "parent": parent_fields(ev, parent_executable),
    }
    out = {
        "@timestamp": clock.iso(ev.ts_ns),
        "ecs": {"version": ECS_VERSION},
        "event": event,
        "host": {"name": host},
        "agent": {"type": AGENT_TYPE, "version": __version__},
        "process": process,
        "user": user_fields(ev.uid),
        "group": {"id": str(ev.gid)},
        "rule": {"id": rule_id, "name": rule_id, "description": rule.get("description", "")},
        "edrfleet": {
            "severity": severity,
            "backend": BACKENDS.get(ev.backend, str(ev.backend)),
            "policy_sha256": generation.sha256 if generation else "",
            "as_executed": text(field_bytes(ev, "filename", ev.filename_len)),
            "stage": STAGES.get(ev.stage, str(ev.stage)),
            "reason": reason,
            "args_truncated": bool(ev.flags & FLAG_ARGS_TRUNCATED),
            "args_bytes": ev.args_total,
            "unscanned": bool(ev.flags & FLAG_UNSCANNED),
            "fileless": bool(ev.flags & FLAG_FILELESS),
            "loader": bool(ev.flags & FLAG_LOADER),
            "cgroup_id": ev.cgroup_id,
            "count": getattr(ev, "count", 0) or 1,
        },
    }
    whose = [w for w, f in (("self", FLAG_STDIO_INET), ("parent", FLAG_PARENT_STDIO_INET))
             if ev.flags & f]
    if whose:  # only when a socket was found: other events keep their fields
        out["edrfleet"]["inet_stdio"] = whose
    tags = list(rule.get("tags") or [])
    if tags:
        out["tags"] = tags
        techniques = technique_ids(tags)
        if techniques:
            out["threat"] = {"framework": ATTACK_FRAMEWORK, "technique": {"id": techniques}}
    return out


def classify(action: str) -> dict[str, Any]:
    """event.kind, category, type and outcome of an ``event.action`` ({} for one unknown)."""
    c = _CLASSIFICATION.get(action)
    if c is None:
        return {}
    return {"kind": c[0], "category": list(c[1]), "type": list(c[2]), "outcome": c[3]}


def technique_ids(tags: Sequence[str]) -> list[str]:
    """MITRE ATT&CK technique ids of Sigma-style tags: attack.t1070.003 -> T1070.003."""
    return list(_technique_ids(tuple(tags)))


@functools.lru_cache(maxsize=1024)
def _technique_ids(tags: tuple[str, ...]) -> tuple[str, ...]:
    # a rule's tags are the same in every event it reports: match them once
    out: list[str] = []
    for tag in tags:
        m = TECHNIQUE_TAG.match(tag)
        if m and m.group(1).upper() not in out:
            out.append(m.group(1).upper())
    return tuple(out)


def working_directory(ev: ct.Structure) -> str:
    cwd = text(field_bytes(ev, "cwd", ev.cwd_len))
    if ev.flags & FLAG_CWD_UNKNOWN:
        cwd = "..." + cwd  # deeper than the kernel walks: the tail of the path
    return cwd


def parent_fields(ev: ct.Structure, parent_executable: str) -> dict:
    """process.parent.*: the pid always; the name the kernel read (the basename of the
    parent's executable, "" for a kernel thread) and the path when known."""
    out: dict[str, Any] = {"pid": ev.ppid}
    name = text(ev.parent_name)
    if name:
        out["name"] = name
    if parent_executable:
        out["executable"] = parent_executable
    return out


def user_fields(uid: int) -> dict:
    out = {"id": str(uid)}
    name = user_name(uid)
    if name:
        out["name"] = name
    return out


@functools.lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def resolve_parent(ev: ct.Structure) -> str:
    """Path of the record's parent executable from /proc (the parent usually outlives the
    exec), or "" when unknown: the parent already exited (a shell that did not wait, a double
    fork), or its pid now runs an image whose basename is not the one the kernel read (the
    parent exec'd again, or the pid was reused).  Never the bare basename: before, that
    fallback put ``bash`` in a field that holds paths.
    """
    name = text(ev.parent_name)
    if not name:  # a kernel thread's child: no parent executable
        return ""
    try:
        path = os.readlink(f"/proc/{ev.ppid}/exe")
    except OSError:
        return ""
    # a d_name that fills the kernel's buffer (EDR_NAME_MAX, NUL included) arrives cut
    cut = len(ev.parent_name) >= type(ev).parent_name.size - 1
    return path if names_file(path, name, cut) else ""


def names_file(path: str, name: str, cut: bool = False) -> bool:
    """``name`` (a d_name the kernel read; ``cut``: maybe only its start) is the basename of
    ``path`` (a /proc/PID/exe link: " (deleted)" appended when the file is gone)."""
    base = path.rsplit("/", 1)[-1]
    if base.endswith(_DELETED):
        base = base[:-len(_DELETED)]
    return base.startswith(name) if cut else base == name


FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd|proc/thread-self/fd)/(\d+)\Z")


def resolve_executable(pid: int, identity: tuple[int, int], known: dict, as_executed: str,
                       committed: bool = True, kernel_path: str = "") -> str:
    """Path of the real executable: the path the kernel walked for the event (bpf/exe_path.c),
    else the policy's own table, /proc, then the as-executed path.

    ``committed``: the exec happened (stage exec), so /proc/PID/exe is the new image; an exec
    the LSM hook refused never replaced the caller, whose /proc/PID/exe is the caller itself.
    """
    if kernel_path:
        return kernel_path
    if identity in known:
        return known[identity]
    proc = f"/proc/{pid}"
    if committed:
        try:
            return os.readlink(f"{proc}/exe")
        except OSError:
            pass
    fd = FD_PATH.match(as_executed)
    if fd:  # fexecve/execveat: the exec's descriptor (here it would name one of ours)
        try:
            return os.readlink(f"{proc}/fd/{fd.group(1)}")
        except OSError:
            return as_executed
    if not as_executed.startswith("/") and not committed:
        try:  # a refused exec's caller is still there: its cwd is where the path starts
            as_executed = os.path.join(os.readlink(f"{proc}/cwd"), as_executed)
        except OSError:
            pass
    return os.path.realpath(as_executed) if as_executed.startswith("/") else as_executed


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")
    except OSError:
        return "00000000"
