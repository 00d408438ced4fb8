"""The dynamic loader run directly (`ld-linux*.so* [OPTION...] PROGRAM ARG...`) is judged as
PROGRAM (bpf/loader.c): by PROGRAM's name, on the argv PROGRAM receives."""

from __future__ import annotations

import glob

import pytest

from tests.kernel.conftest import harmless_copy

MARK = "edrfleet-loader-marker"
POLICY = """\
version: 1
mode: enforce
scope:
  cgroups: [{cgroup}]
rules:
  - id: rm-marked
    description: rm with the marker
    severity: high
    action: block
    match:
      executable: [rm]
      args:
        - any: [{mark}]
"""
LOADERS = sorted(glob.glob("/lib64/ld-linux*.so*") + glob.glob("/lib/ld-linux*.so*"))


def run(cgroup, argv) -> int:
    try:
        return cgroup.run(argv).returncode
    except PermissionError:  # the lsm backend refuses the exec
        return -1


@pytest.fixture
def agent(start_agent, cgroup):
    return start_agent(POLICY.format(cgroup=cgroup.name, mark=MARK))


@pytest.mark.skipif(not LOADERS, reason="no glibc dynamic loader at /lib64 or /lib")
def test_the_loader_is_judged_as_its_program(agent, cgroup, tmp_path):
    loader = LOADERS[0]
    rm = harmless_copy(tmp_path / "rm")
    twin = harmless_copy(tmp_path / "rmx")
    assert run(cgroup, [loader, str(rm), MARK]) != 0
    assert run(cgroup, [loader, "--argv0", "x", "--inhibit-cache", str(rm), MARK]) != 0
    assert run(cgroup, [loader, str(rm), "harmless"]) == 0  # rm's rules, its argv
    assert run(cgroup, [loader, str(twin), MARK]) == 0  # another program
    # an option's value is not PROGRAM: the program here is the twin
    assert run(cgroup, [loader, "--argv0", "rm", str(twin), MARK]) == 0
    ev = agent.wait_events(lambda e: e["rule.id"] == "rm-marked", count=2)
    assert len(ev) == 2 and all(e["edrfleet.loader"] for e in ev)
    assert ev[0]["process.args"] == [loader, str(rm), MARK]
