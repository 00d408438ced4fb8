"""process.executable comes from the kernel (bpf/exe_path.c): the file really executed, by its
full path in the mount namespace, never a guess from the path as typed.

A chroot holds a static program named rm at /usr/bin/rm: the kernel program blocks it by its
name, and the event must name the jail's file, not the host's /usr/bin/rm that the as-typed
path resolves to outside the chroot.
"""

from __future__ import annotations

import os
import subprocess

import pytest

MARK = "edrfleet-exe-path-marker"
LOG_MARK = "edrfleet-exe-path-logged"
POLICY = """\
version: 1
mode: enforce
scope:
  cgroups: [{cgroup}]
rules:
  - id: rm-marked
    description: rm with the marker, whatever file it is
    severity: high
    action: block
    match:
      executable: [rm]
      args:
        - any: [{mark}]
  - id: rm-logged
    description: rm with the log marker is reported (the process runs on and is gone before
      the agent reads the event, so /proc cannot tell which file it was)
    severity: low
    action: log
    match:
      executable: [rm]
      args:
        - any: [{log_mark}]
"""
STATIC_C = "int main(void) { return 0; }\n"


@pytest.fixture
def jail(tmp_path):
    src = tmp_path / "true.c"
    src.write_text(STATIC_C)
    root = tmp_path / "jail"
    (root / "usr" / "bin").mkdir(parents=True)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(root / "usr/bin/rm"), str(src)],
                   check=True)
    return root


def run(cgroup, argv) -> int:
    try:
        return cgroup.run(argv).returncode
    except PermissionError:  # the lsm backend refuses the exec
        return -1


def test_a_chrooted_copy_of_rm_is_reported_as_the_jail_file(start_agent, cgroup, jail):
    agent = start_agent(POLICY.format(cgroup=cgroup.name, mark=MARK, log_mark=LOG_MARK))
    assert run(cgroup, ["chroot", str(jail), "/usr/bin/rm"]) == 0  # the twin: no marker
    assert run(cgroup, ["chroot", str(jail), "/usr/bin/rm", MARK]) != 0
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "rm-marked")
    assert ev["edrfleet.as_executed"] == "/usr/bin/rm"
    assert ev["process.executable"] == str(jail / "usr/bin/rm")
    assert os.path.realpath("/usr/bin/rm") != ev["process.executable"]


def test_a_logged_chrooted_rm_that_is_gone_is_still_the_jail_file(start_agent, cgroup, jail):
    agent = start_agent(POLICY.format(cgroup=cgroup.name, mark=MARK, log_mark=LOG_MARK))
    assert run(cgroup, ["chroot", str(jail), "/usr/bin/rm", LOG_MARK]) == 0
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "rm-logged")
    assert ev["process.executable"] == str(jail / "usr/bin/rm")
