"""``edrfleet status``: every host's facts in one round trip each, in the pool, as a
:class:`HostStatus` (an unreachable host is a row too, never an abort)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edrfleet.fleet.deploy.facts import HostPaths, gather_facts
from edrfleet.fleet.deploy.results import Session, error_result
from edrfleet.fleet.transport.connection import connector
from edrfleet.fleet.transport.pool import DEFAULT_FORKS, run_pool

STATUS_COUNTERS = ("execs_seen", "blocked", "would_block", "logged", "events_lost")


@dataclass
class HostStatus:
    name: str
    reachable: bool
    state: str               # the agent's state, "not installed", "stopped", or "unreachable"
    message: str = ""
    backend: str = ""
    policy_sha256: str = ""
    release_id: str = ""
    pid: int = 0
    counters: dict[str, int] | None = None
    last_error: str = ""
    kernel: str = ""  # the host's kernel release (facts), so a mixed fleet shows what runs where

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.name, "reachable": self.reachable, "state": self.state,
                "message": self.message, "backend": self.backend,
                "policy_sha256": self.policy_sha256, "release_id": self.release_id,
                "pid": self.pid, "counters": self.counters or {}, "last_error": self.last_error,
                "kernel": self.kernel}


def _count(value: Any) -> int:
    """A status.json counter, 0 when not a count: a malformed file is the agent's state to
    show, not a reason to call the host unreachable."""
    if type(value) is str and value.isascii() and value.isdigit():
        value = int(value)
    return value if type(value) is int and value >= 0 else 0


def host_status(name: str, facts: dict[str, Any]) -> HostStatus:
    st = facts.get("status") or {}
    if not facts.get("release_id") and not st:
        return HostStatus(name, True, "not installed", kernel=str(facts.get("kernel_release", "")))
    state = str(st.get("state", "unknown"))
    if not facts.get("agent_active"):
        state = "stopped" if state in ("enforcing", "monitoring", "starting") else state
    return HostStatus(
        name, True, state, message=str(facts.get("agent_not_alive") or ""),
        backend=str(st.get("backend", "")),
        policy_sha256=str(st.get("policy_sha256", "")), release_id=facts.get("release_id", ""),
        pid=int(facts.get("agent_pid") or 0),
        counters={k: _count(st.get(k)) for k in STATUS_COUNTERS},
        last_error=str(st.get("last_error", "")),
        kernel=str(facts.get("kernel_release", "")),
    )


def fleet_status(inventory_dir: Path, hosts: Sequence[Any], *, forks: int = DEFAULT_FORKS,
                 connect: Callable[[Any, Path], Any] | None = None,
                 connect_timeout: float = 10) -> list[HostStatus]:
    connect = connect or connector(connect_timeout)

    def one(host: Any) -> HostStatus:
        with connect(host, inventory_dir) as t:
            return host_status(host.name, gather_facts(t, HostPaths.from_vars(host.vars)))

    def failed(host: Any, exc: BaseException) -> HostStatus:
        r = error_result(Session(host), exc)
        return HostStatus(host.name, False, r.status, r.message)

    return run_pool(list(hosts), one, forks=forks, on_error=failed)
