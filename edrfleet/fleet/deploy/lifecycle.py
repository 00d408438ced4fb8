"""``edrfleet status`` and ``edrfleet uninstall``: one round trip per host, in the pool.

Uninstall stops the agent (supervisor or systemd), removes the unit, the release directories,
the config and the run dir.  The spool (events.jsonl, status.json, agent.log) is KEPT unless
``purge``: uninstalling the EDR must not destroy the evidence `edrfleet report` has not pulled
yet.  With ``purge`` nothing edrfleet made is left on the host.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edrfleet.fleet.deploy.deployer import HostResult, Session, default_connect, error_result
from edrfleet.fleet.deploy.facts import HostPaths, gather_facts
from edrfleet.fleet.deploy.hostscripts import parse_output, script_on_stdin, uninstall_script
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
    connect = connect or default_connect(connect_timeout)

    def one(host: Any) -> HostStatus:
        with connect(host, inventory_dir) as t:
            return host_status(host.name, gather_facts(t, HostPaths.from_vars(host.vars)))

    def failed(host: Any, exc: BaseException) -> HostStatus:
        r = error_result(Session(host), exc)
        return HostStatus(host.name, False, r.status, r.message)

    return run_pool(list(hosts), one, forks=forks, on_error=failed)


def fleet_uninstall(inventory_dir: Path, hosts: Sequence[Any], *, purge: bool = False,
                    forks: int = DEFAULT_FORKS,
                    connect: Callable[[Any, Path], Any] | None = None,
                    connect_timeout: float = 10,
                    on_done: Callable[[Any, HostResult], None] | None = None) -> list[HostResult]:
    connect = connect or default_connect(connect_timeout)

    def one(host: Any) -> HostResult:
        s = Session(host, started=time.monotonic())
        script = uninstall_script(HostPaths.from_vars(host.vars), host.name, purge)
        with connect(host, inventory_dir) as t:
            argv, stdin = script_on_stdin(script, "edrfleet-uninstall")
            res = t.run(argv, input=stdin, timeout=120, check=False)
        out = parse_output(res.stdout)
        if res.rc == 0 and out.get("result") == "ok":
            return s.finish("changed", "removed" + (" (spool too)" if purge else
                                                    " (spool kept)"))
        return s.finish("failed", out.get("error") or res.stderr.decode(errors="replace")[-300:])

    return run_pool(list(hosts), one, forks=forks,
                    on_error=lambda h, e: error_result(Session(h), e), on_done=on_done)
