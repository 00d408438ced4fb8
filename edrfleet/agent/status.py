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
