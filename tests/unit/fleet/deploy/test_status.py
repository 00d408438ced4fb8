"""edrfleet status: facts to a row per host; an unreachable host is a row, not an abort."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edrfleet.fleet.deploy.status import STATUS_COUNTERS, fleet_status, host_status
from edrfleet.fleet.transport.local import LocalTransport


@dataclass(frozen=True)
class Host:
    name: str
    vars: dict = field(default_factory=dict)


def test_a_host_without_release_or_status_is_not_installed() -> None:
    s = host_status("h", {"release_id": "", "status": None})
    assert (s.reachable, s.state, s.counters) == (True, "not installed", None)


def test_a_running_agent_reports_its_state_and_counters() -> None:
    st = {"state": "enforcing", "backend": "lsm", "policy_sha256": "ab" * 32, "blocked": 4,
          "execs_seen": "10", "last_error": ""}
    s = host_status("h", {"release_id": "r1", "status": st, "agent_active": True,
                          "agent_pid": "42"})
    assert (s.state, s.backend, s.release_id, s.pid) == ("enforcing", "lsm", "r1", 42)
    assert s.counters == {k: {"blocked": 4, "execs_seen": 10}.get(k, 0) for k in STATUS_COUNTERS}
    assert s.to_dict()["counters"]["blocked"] == 4 and s.to_dict()["host"] == "h"


def test_a_stale_status_of_a_dead_agent_says_stopped() -> None:
    st = {"state": "enforcing", "last_error": "killed"}
    s = host_status("h", {"release_id": "r1", "status": st, "agent_active": False})
    assert s.state == "stopped" and s.last_error == "killed"
    assert host_status("h", {"release_id": "r1", "status": {"state": "failed"}}).state == \
        "failed"


def test_fleet_status_reads_every_host_and_keeps_the_unreachable_one(tmp_path: Path) -> None:
    def paths(name: str) -> dict:
        return {f"edrfleet_{d}_dir": str(tmp_path / name / d)
                for d in ("install", "config", "spool", "run")}

    hosts = [Host("a", paths("a")), Host("down", paths("down")), Host("c", paths("c"))]

    def connect(host, _inventory_dir):
        if host.name == "down":
            raise ConnectionError("down: cannot connect to root@down:22: refused")
        return LocalTransport(host.name)  # the real facts script, run here

    rows = fleet_status(tmp_path, hosts, forks=2, connect=connect)
    assert [(r.name, r.reachable, r.state) for r in rows] == [
        ("a", True, "not installed"), ("down", False, "unreachable"), ("c", True, "not installed")]
    assert "refused" in rows[1].message

def test_a_status_row_names_the_hosts_kernel():
    facts = {"release_id": "r1", "agent_active": True, "agent_pid": 7,
             "kernel_release": "5.10.0-32-amd64",
             "status": {"state": "enforcing", "backend": "sigkill"}}
    row = host_status("d11-vm0", facts).to_dict()
    assert (row["host"], row["state"], row["backend"], row["kernel"]) == (
        "d11-vm0", "enforcing", "sigkill", "5.10.0-32-amd64")


def test_a_host_without_the_agent_still_names_its_kernel():
    row = host_status("h", {"kernel_release": "6.12.117+deb13-amd64"}).to_dict()
    assert (row["state"], row["kernel"]) == ("not installed", "6.12.117+deb13-amd64")
