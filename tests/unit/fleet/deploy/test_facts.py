"""The facts script, run for real (locally) against a host layout in a tmp dir."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edrfleet.fleet.deploy.facts import HostPaths, gather_facts, parse_facts, parse_os_release
from edrfleet.fleet.deploy.release import FILES
from edrfleet.fleet.transport.local import LocalTransport


class Counting(LocalTransport):
    """The local transport, counting the commands it runs (round trips over SSH)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def run(self, argv, **kw):
        self.calls.append(list(argv))
        return super().run(argv, **kw)


def layout(tmp: Path) -> HostPaths:
    return HostPaths(install_dir=str(tmp / "opt"), config_dir=str(tmp / "etc"),
                     spool_dir=str(tmp / "spool"), run_dir=str(tmp / "run"),
                     unit_path=str(tmp / "unit.service"))


def test_facts_of_an_empty_host_say_nothing_is_installed(tmp_path: Path) -> None:
    t = Counting()
    facts = gather_facts(t, layout(tmp_path))
    assert len(t.calls) == 1  # one round trip
    assert facts["release_id"] == "" and facts["policy_sha256"] == ""
    assert facts["status"] is None and not facts["agent_active"]
    assert facts["kernel_release"] and facts["cgroup2_mount"].startswith("/")
    assert facts["python"]["version"].startswith("3.")
    assert facts["distribution"]["id"]
    assert facts["bpf_lsm"] == ("bpf" in facts["lsm"])


def test_facts_read_release_policy_status_and_live_pids(tmp_path: Path) -> None:
    p = layout(tmp_path)
    rel = tmp_path / "opt" / "releases" / "abc"
    (rel / "bpf").mkdir(parents=True)
    (rel / "agent.pyz").write_bytes(b"zip")
    (tmp_path / "opt" / "current").symlink_to("releases/abc")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "policy.json").write_text("{}\n")
    (tmp_path / "etc" / "policy.yaml").write_text("version: 1\n")
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "status.json").write_text(json.dumps({"state": "enforcing"}))
    (tmp_path / "run").mkdir()
    import os
    (tmp_path / "run" / "agent.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "run" / "supervisor.pid").write_text("999999999\n")  # stale
    facts = gather_facts(LocalTransport(), p, want_release="abc", want_yaml=True)
    assert facts["release_id"] == "abc"
    assert facts["release_sha256"]["agent.pyz"] == hashlib.sha256(b"zip").hexdigest()
    assert facts["release_sha256"]["bpf/edrfleet.c"] == ""
    assert list(facts["release_sha256"]) == list(FILES)  # every file of a release, no other
    assert facts["wanted_release_sha256"] == facts["release_sha256"]
    assert facts["policy_sha256"] == hashlib.sha256(b"{}\n").hexdigest()
    assert facts["policy_yaml"] == "version: 1\n"
    assert facts["status"] == {"state": "enforcing"}
    assert facts["agent_pid"] == os.getpid() and facts["agent_active"]
    assert facts["supervisor_pid"] == 0


def test_paths_with_spaces_and_quotes_stay_one_word(tmp_path: Path) -> None:
    odd = tmp_path / "it's a dir; rm -rf x"
    odd.mkdir()
    (odd / "policy.json").write_text("x")
    p = HostPaths(config_dir=str(odd), install_dir=str(odd), spool_dir=str(odd),
                  run_dir=str(odd), unit_path=str(odd / "u"))
    facts = gather_facts(LocalTransport(), p)
    assert facts["policy_sha256"] == hashlib.sha256(b"x").hexdigest()


def test_missing_bcc_and_headers_name_the_packages() -> None:
    facts = parse_facts("kernel_release=6.1.0-9-amd64\npython_version=3.11.2\n", HostPaths())
    assert facts["missing_packages"] == ["python3-bpfcc", "linux-headers-6.1.0-9-amd64"]
    ok = parse_facts("kernel_release=6.1\npython_bcc=1\nkernel_headers=1\n", HostPaths())
    assert ok["missing_packages"] == []


def test_os_release_is_parsed_with_shell_quoting() -> None:
    text = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    assert parse_os_release(text) == {"id": "debian", "version_id": "12",
                                      "pretty_name": "Debian GNU/Linux 12 (bookworm)"}


def test_garbage_status_is_none_not_a_crash() -> None:
    facts = parse_facts("status=!!notbase64\n", HostPaths())
    assert facts["status"] is None
