"""The agent's status file: ``<spool>/status.json``, replaced atomically.

Contract fields (docs/status.md): ``state`` (starting | enforcing | monitoring |
failed; the agent also writes ``stopped`` on a clean exit), ``backend``, ``policy_sha256``,
``rules``, ``pid``, ``version`` and the counters ``execs_seen``, ``blocked``, ``logged``,
``events_lost``.  The rest are extras that readers may use and must not require.  Readers
ignore keys and tolerate states they do not know, so fields are only ever added.  Times are
Unix epoch seconds (``time.time()``), durations seconds.

Writes go to a temporary file in the same directory, are fsync-ed and renamed over
``status.json``: a reader (``edrfleet status`` over SSH, a monitoring check) sees the old or
the new file whole, never a torn one, even if the agent dies mid-write.

``agent.pyz wait`` (:func:`wait_main`, at the end) is the reader deploy's host scripts and the
Ansible role share: it waits until status.json shows a policy in force, or a failure.

Example::

    >>> st = Status(state="enforcing", backend="sigkill", rules=12, policy_sha256="ab…")
    >>> path = write_status("/var/lib/edrfleet/spool", st)    # .../status.json
    >>> read_status("/var/lib/edrfleet/spool")["state"]
    'enforcing'
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any

from edrfleet import __version__

STATUS_FILE = "status.json"
STATES = ("starting", "enforcing", "monitoring", "failed", "stopped")


@dataclasses.dataclass
class Status:
    """What status.json says.  Mutate the fields, then :func:`write_status`."""

    # the contract
    state: str = "starting"
    backend: str = ""  # "sigkill" | "lsm"; "" until probed
    policy_sha256: str = ""
    rules: int = 0
    pid: int = dataclasses.field(default_factory=os.getpid)
    version: str = __version__
    execs_seen: int = 0
    blocked: int = 0
    logged: int = 0
    events_lost: int = 0
    # extras
    would_block: int = 0
    started_at: float = dataclasses.field(default_factory=time.time)
    enforcing_since: float | None = None  # when state became enforcing/monitoring
    start_seconds: float | None = None  # process start to enforcing/monitoring
    policy_source: str = ""  # the policy file the bundle came from
    last_error: str = ""
    last_reload: dict[str, Any] | None = None  # {"at": epoch, "ok": bool, "sha256"|"error"}
    mode: str = ""  # "enforce" | "monitor"
    generation: int = 0  # policy generation in force
    errors: int = 0  # kernel-side errors counted by the program
    candidates_dropped: int = 0  # execs with rule groups the kernel did not evaluate
    updated_at: float | None = None  # set by write_status
    outputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # stats()

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"status state {self.state!r} is not one of {', '.join(STATES)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (every value a str, number, bool, None, list or dict)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Status:
        """Inverse of :meth:`to_dict`; keys this version does not know are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def write_status(spool_dir: str, status: Status | dict[str, Any]) -> str:
    """Atomically replace ``<spool_dir>/status.json`` (mode 0644); returns its path.

    A :class:`Status` gets ``updated_at`` stamped; a plain dict is written as given.

    Raises:
        OSError: the directory is missing or not writable.
        TypeError: a value that JSON cannot encode.
    """
    if isinstance(status, Status):
        status.updated_at = time.time()
        data = status.to_dict()
    else:
        data = status
    # Encode before touching the disk: a TypeError must not leave a temporary file behind.
    body = (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    directory = os.fspath(spool_dir)
    path = os.path.join(directory, STATUS_FILE)
    fd, tmp = tempfile.mkstemp(prefix=".status.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; status is for any local reader
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)  # the rename itself survives a crash
    finally:
        os.close(dfd)
    return path


def read_status(spool_dir: str) -> dict[str, Any] | None:
    """The status as a dict, or None if there is none yet.

    Raises:
        ValueError: the file is not a JSON object (not written by this module).
        OSError: it exists but cannot be read.
    """
    path = os.path.join(os.fspath(spool_dir), STATUS_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


# --- `agent.pyz wait`: the one wait for a policy in force (deploy's scripts and the role) ------
WAIT_OK, WAIT_FAILED, WAIT_TIMEOUT = 0, 1, 3  # exit codes (2 is argparse's usage error)


def add_wait_arguments(p: Any) -> None:
    p.add_argument("--spool", required=True, help="the agent's spool directory (status.json)")
    p.add_argument("--policy-sha", default="",
                   help="sha256 of the bundle that must be in force (default: any)")
    p.add_argument("--timeout", type=float, default=300, help="seconds (default %(default)s)")
    p.add_argument("--action", choices=("start", "restart", "reload"), default=None,
                   help="what was done at --since: a reload must be answered after it, a "
                        "start by an agent started after it")
    p.add_argument("--since", type=float, default=0.0,
                   help="Unix time of the action: earlier status.json files do not count")
    p.add_argument("--old-pid", type=_pid, default=0,
                   help="pid of the agent before a start: its status.json does not count")
    p.add_argument("--live-pid", choices=("supervisor", "systemd"), default=None,
                   help="count only status.json of the agent running now (its pid from "
                        "<run-dir>/agent.pid or systemd's MainPID of --unit)")
    p.add_argument("--run-dir", default="/run/edrfleet", help="(default %(default)s)")
    p.add_argument("--unit", default="edrfleet-agent.service", help="(default %(default)s)")
    p.add_argument("--format", choices=("json", "kv"), default="json",
                   help="json: status.json on stdout, the reason on stderr; kv: result=, "
                        "error=, status=<base64> lines (deploy's scripts)")


def _pid(text: str) -> int:
    """A pid as a pidfile or ``systemctl show`` gives it ("" or "0": none)."""
    return int(text.strip()) if text.strip().isdigit() else 0


def live_agent_pid(manager: str, run_dir: str, unit: str) -> int:
    """The pid of the agent running now (0 when none)."""
    if manager == "systemd":
        import subprocess

        r = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit],
                           capture_output=True, text=True, check=False)
        text = r.stdout
    else:
        try:
            with open(os.path.join(run_dir, "agent.pid")) as f:
                text = f.read()
        except OSError:
            return 0
    return _pid(text)


def _fresh(st: dict[str, Any], args: Any) -> bool:
    """Whether this status.json answers the action that was done (not an older agent's)."""
    if args.live_pid and st.get("pid") != live_agent_pid(args.live_pid, args.run_dir, args.unit):
        return False
    if args.action == "reload":
        return (st.get("last_reload") or {}).get("at", 0) >= args.since
    if args.action in ("start", "restart"):
        return st.get("pid") != args.old_pid and st.get("started_at", 0) >= args.since - 1
    return True


def _verdict(st: dict[str, Any], args: Any) -> tuple[int, str] | None:
    """(exit code, reason) once this status settles the wait; None to keep waiting."""
    if not _fresh(st, args):
        return None
    reload = st.get("last_reload") or {}
    if args.action == "reload" and not reload.get("ok", True):
        return WAIT_FAILED, "reload refused: " + str(reload.get("error", ""))
    if st.get("state") in ("enforcing", "monitoring") and \
            (not args.policy_sha or st.get("policy_sha256") == args.policy_sha):
        return WAIT_OK, ""
    if st.get("state") in ("failed", "stopped"):
        return WAIT_FAILED, st.get("last_error") or "agent " + str(st.get("state"))
    return None


def wait_for_policy(args: Any) -> tuple[int, str, dict[str, Any] | None]:
    """Poll status.json until the policy is in force, the agent fails, or the timeout."""
    deadline = time.monotonic() + args.timeout
    last: dict[str, Any] | None = None
    while True:
        try:
            st = read_status(args.spool)
        except (OSError, ValueError):
            st = None
        if st is not None:
            last = st
            verdict = _verdict(st, args)
            if verdict is not None:
                return verdict[0], verdict[1], last
        if time.monotonic() > deadline:
            state = (last or {}).get("state", "no status.json")
            error = (f"agent not enforcing after {args.timeout:g}s (state {state}): "
                     f"{(last or {}).get('last_error', '')}")
            return WAIT_TIMEOUT, error, last
        time.sleep(0.1)


def wait_main(args: Any) -> int:
    code, error, last = wait_for_policy(args)
    if args.format == "kv":
        import base64

        result = {WAIT_OK: "ok", WAIT_FAILED: "failed"}.get(code, "timeout")
        sys.stdout.write(f"result={result}\nerror={' '.join(error.split())[:500]}\nstatus="
                         f"{base64.b64encode(json.dumps(last).encode()).decode()}\n")
    else:
        print(json.dumps(last))
        if error:
            print(f"wait: {error}", file=sys.stderr)
    return code
