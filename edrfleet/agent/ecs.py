"""The event schema: kernel record -> one JSON object with Elastic Common Schema field names.

This is the one module that knows the event's fields; the spool, the outputs and the fleet
report (``edrfleet.fleet``) all read events through the names defined here.

Fields (flat, dotted keys; docs/events.md says what each holds)::

    @timestamp event.id event.action host.name process.pid process.parent.pid
    process.executable process.name process.command_line process.args process.args_truncated
    user.id group.id rule.id rule.severity rule.description edrfleet.backend
    edrfleet.policy_sha256 edrfleet.as_executed edrfleet.stage edrfleet.reason
    edrfleet.cgroup_id edrfleet.args_bytes edrfleet.unscanned edrfleet.fileless
    process.parent.executable process.parent.name process.working_directory user.name
    tags (the rule's) threat.technique.id (MITRE ids of its attack.tNNNN[.NNN] tags)

Command-line bytes are decoded as UTF-8 with invalid bytes escaped (``\\xNN``), so hostile
bytes survive as visible text and the JSON line stays valid.
"""

from __future__ import annotations

import ctypes as ct
import functools
import os
import pwd
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

# field names other modules use
TIMESTAMP = "@timestamp"
EVENT_ID = "event.id"
ACTION = "event.action"
HOST = "host.name"
RULE_ID = "rule.id"
SEVERITY = "rule.severity"
COMMAND_LINE = "process.command_line"
BACKEND = "edrfleet.backend"
POLICY_SHA = "edrfleet.policy_sha256"

EVENT_ACTIONS = {1: "blocked", 2: "would_block", 3: "logged"}
BACKENDS = {1: "sigkill", 2: "lsm"}
STAGES = {1: "exec", 2: "lsm"}
STAGE_LSM = 2
REASONS = {1: "rule", 2: "recheck", 3: "unscanned"}
UNSCANNED_RULE_ID = "edrfleet-unscanned-args"
FLAG_ARGS_TRUNCATED = 1
FLAG_FILENAME_TRUNCATED = 2
FLAG_UNSCANNED = 4
FLAG_CWD_TRUNCATED = 8
FLAG_CWD_UNKNOWN = 16
FLAG_FILELESS = 32
TECHNIQUE_TAG = re.compile(r"attack\.(t\d{4}(?:\.\d{3})?)\Z", re.IGNORECASE)


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def field_bytes(struct: ct.Structure, name: str, length: int) -> bytes:
    """Bytes of a char array field, NULs included (ctypes stops char arrays at the first NUL)."""
    return ct.string_at(ct.addressof(struct) + getattr(type(struct), name).offset, length)


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
        when = datetime.fromtimestamp(self.boot_wall + boot_ns / 1e9, tz=UTC)
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
    """Decode one ring-buffer record (must be called while the record is valid)."""
    args = split_args(field_bytes(ev, "args", ev.args_len))
    rule: dict = {}
    if generation and ev.rule < len(generation.rules):
        rule = generation.rules[ev.rule]
    reason = REASONS.get(ev.reason, str(ev.reason))
    rule_id = rule.get("id") or (UNSCANNED_RULE_ID if reason == "unscanned" else "")
    as_executed = text(field_bytes(ev, "filename", ev.filename_len))
    out = {
        TIMESTAMP: clock.iso(ev.ts_ns),
        EVENT_ID: f"{boot_id[:8]}-{ev.ts_ns:x}-{ev.pid:x}",
        ACTION: EVENT_ACTIONS.get(ev.action, str(ev.action)),
        HOST: host,
        "process.pid": ev.pid,
        "process.parent.pid": ev.ppid,
        "process.executable": executable,
        "process.name": text(ev.exe_name),
        COMMAND_LINE: " ".join(text(a) for a in args),
        "process.args": [text(a) for a in args],
        "process.args_truncated": bool(ev.flags & FLAG_ARGS_TRUNCATED),
        "user.id": str(ev.uid),
        "group.id": str(ev.gid),
        RULE_ID: rule_id,
        SEVERITY: rule.get("severity", "critical" if reason == "unscanned" else ""),
        "rule.description": rule.get("description", ""),
        BACKEND: BACKENDS.get(ev.backend, str(ev.backend)),
        POLICY_SHA: generation.sha256 if generation else "",
        "edrfleet.as_executed": as_executed,
        "edrfleet.stage": STAGES.get(ev.stage, str(ev.stage)),
        "edrfleet.reason": reason,
        "edrfleet.cgroup_id": ev.cgroup_id,
        "edrfleet.args_bytes": ev.args_total,
        "edrfleet.unscanned": bool(ev.flags & FLAG_UNSCANNED),
        "edrfleet.fileless": bool(ev.flags & FLAG_FILELESS),
    }
    out.update(context_fields(ev, parent_executable))
    tags = list(rule.get("tags") or [])
    if tags:
        out["tags"] = tags
        techniques = technique_ids(tags)
        if techniques:
            out["threat.technique.id"] = techniques
    return out


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


def context_fields(ev: ct.Structure, parent_executable: str) -> dict:
    """Parent executable, working directory and user name of the exec."""
    cwd = text(field_bytes(ev, "cwd", ev.cwd_len))
    if ev.flags & FLAG_CWD_UNKNOWN:
        cwd = "..." + cwd  # deeper than the kernel walks: the tail of the path
    parent_name = text(ev.parent_name)
    out = {
        "process.parent.executable": parent_executable or parent_name,
        "process.parent.name": parent_name,
        "process.working_directory": cwd,
    }
    name = user_name(ev.uid)
    if name:
        out["user.name"] = name
    return out


@functools.lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


def resolve_parent(ppid: int, name: str) -> str:
    """Path of the parent's executable: /proc (the parent usually outlives the exec), else
    the basename the kernel read."""
    try:
        return os.readlink(f"/proc/{ppid}/exe")
    except OSError:
        return name


FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd|proc/thread-self/fd)/(\d+)\Z")


def resolve_executable(pid: int, identity: tuple[int, int], known: dict, as_executed: str,
                       committed: bool = True) -> str:
    """Path of the real executable: the policy's own table, /proc, then the as-executed path.

    ``committed``: the exec happened (stage exec), so /proc/PID/exe is the new image; an exec
    the LSM hook refused never replaced the caller, whose /proc/PID/exe is the caller itself.
    """
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
