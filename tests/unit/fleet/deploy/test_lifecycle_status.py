"""`edrfleet status` rows: the host's kernel release rides along with its agent's state."""

from __future__ import annotations

from edrfleet.fleet.deploy.lifecycle import host_status


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
