"""The facts script, run for real (locally) against a host layout in a tmp dir."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
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
    # the same machine id the report's pull reads (half of the host's identity in the store)
    from edrfleet.agent.pull import read_machine_id
    assert facts["machine_id"] == read_machine_id()


FAKE_AGENT = b"import time\ntime.sleep(120)\n"  # python runs a source file named agent.pyz


def installed(tmp_path: Path, status: dict) -> HostPaths:
    rel = tmp_path / "opt" / "releases" / "abc"
    (rel / "bpf").mkdir(parents=True)
    (rel / "agent.pyz").write_bytes(FAKE_AGENT)
    (tmp_path / "opt" / "current").symlink_to("releases/abc")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "policy.json").write_text("{}\n")
    (tmp_path / "etc" / "policy.yaml").write_text("version: 1\n")
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "status.json").write_text(json.dumps(status))
    (tmp_path / "run").mkdir()
    return layout(tmp_path)


@contextmanager
def fake_agent(p: HostPaths, command: str = "run") -> Iterator[subprocess.Popen]:
    """A process whose command line is this install's `agent.pyz run --spool …`."""
    proc = subprocess.Popen([sys.executable, f"{p.install_dir}/current/agent.pyz", command,
                             "--spool", p.spool_dir])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_facts_read_release_policy_status_and_live_pids(tmp_path: Path) -> None:
    p = installed(tmp_path, {"state": "enforcing"})
    (tmp_path / "run" / "supervisor.pid").write_text("999999999\n")  # stale
    with fake_agent(p) as agent:
        (tmp_path / "run" / "agent.pid").write_text(f"{agent.pid}\n")
        facts = gather_facts(LocalTransport(), p, want_release="abc", want_yaml=True)
    assert facts["release_id"] == "abc"
    assert facts["release_sha256"]["agent.pyz"] == hashlib.sha256(FAKE_AGENT).hexdigest()
    assert facts["release_sha256"]["bpf/edrfleet.c"] == ""
    assert list(facts["release_sha256"]) == list(FILES)  # every file of a release, no other
    assert facts["wanted_release_sha256"] == facts["release_sha256"]
    assert facts["policy_sha256"] == hashlib.sha256(b"{}\n").hexdigest()
    assert facts["policy_yaml"] == "version: 1\n"
    assert facts["status"] == {"state": "enforcing"}
    assert facts["agent_pid"] == agent.pid and facts["agent_active"], facts["agent_not_alive"]
    assert facts["supervisor_pid"] == 0


def test_a_live_pid_that_is_not_this_installs_agent_is_not_alive(tmp_path: Path) -> None:
    """The pidfile names a live process that is not the agent (a reused pid): not alive."""
    p = installed(tmp_path, {"state": "enforcing"})
    (tmp_path / "run" / "agent.pid").write_text(f"{os.getpid()}\n")  # pytest, alive
    (tmp_path / "run" / "supervisor.pid").write_text(f"{os.getpid()}\n")
    facts = gather_facts(LocalTransport(), p)
    assert facts["agent_pid"] == 0 and not facts["agent_active"]
    assert facts["supervisor_pid"] == 0
    assert "is not this install's agent" in facts["agent_not_alive"]


def test_an_agent_started_after_its_pidfile_was_written_is_a_reused_pid(tmp_path: Path) -> None:
    p = installed(tmp_path, {"state": "enforcing"})
    with fake_agent(p) as agent:
        pidfile = tmp_path / "run" / "agent.pid"
        pidfile.write_text(f"{agent.pid}\n")
        old = time.time() - 3600
        os.utime(pidfile, (old, old))
        facts = gather_facts(LocalTransport(), p)
    assert not facts["agent_active"] and "reused pid" in facts["agent_not_alive"]


def test_an_agent_of_another_install_or_command_is_not_ours(tmp_path: Path) -> None:
    p = installed(tmp_path, {"state": "enforcing"})
    with fake_agent(p, command="pull") as agent:
        (tmp_path / "run" / "agent.pid").write_text(f"{agent.pid}\n")
        facts = gather_facts(LocalTransport(), p)
    assert not facts["agent_active"]
    other = replace(p, spool_dir=str(tmp_path / "other-spool"))
    with fake_agent(p) as agent:
        (tmp_path / "run" / "agent.pid").write_text(f"{agent.pid}\n")
        facts = gather_facts(LocalTransport(), other)
    assert not facts["agent_active"]


def test_a_stale_status_json_is_not_a_live_agent(tmp_path: Path) -> None:
    p = installed(tmp_path, {"state": "enforcing", "updated_at": time.time() - 100})
    with fake_agent(p) as agent:
        (tmp_path / "run" / "agent.pid").write_text(f"{agent.pid}\n")
        facts = gather_facts(LocalTransport(), p)
    assert facts["agent_pid"] == agent.pid and not facts["agent_active"]
    # 100 s, and a little more on a busy machine
    assert re.search(r"last written 1\d\d s ago", facts["agent_not_alive"])


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
