"""The resident agent (no BCC: pinned maps through bpfsys) with the rest of the agent: both
ring buffers read in one poll, logged execs folded in the per-CPU map "logagg" and summed up,
the identity keeper writing "inodes" from its thread, and a tamper check that restores a
foreign edit of a policy map but never the keeper's own writes.  The fixture disarms."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from edrfleet.agent.pinned import bpfsys, tamper
from tests.kernel.conftest import harmless_copy

POLICY = """\
version: 1
mode: enforce
scope: {{cgroups: [{cgroup}]}}
rules:
  - id: res-protected
    description: a protected file by path (a copy of /bin/true)
    severity: high
    action: block
    match:
      executable: ["{d}/prot"]
  - id: res-flood
    description: logged by the hundred
    severity: low
    action: log
    match:
      executable: [edr-res-flood]
"""
LOGS = 200  # well over EDR_LOGAGG_BURST (32) in one window: folded
LOOP = 'i=0; while [ $i -lt "$1" ]; do "$2"; i=$((i+1)); done'


def _killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in (-9, 137)


def _inode_keys(pdir: str) -> tuple[int, list[bytes]]:
    fd = bpfsys.obj_get(f"{pdir}/map_inodes")
    return fd, bpfsys.map_keys(fd, bpfsys.map_info(fd)["key_size"])


def test_the_resident_agent_folds_logs_keeps_identities_and_guards_its_maps(
        start_agent, cgroup, standins, tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    harmless_copy(home / "prot")
    agent = start_agent(POLICY.format(cgroup=cgroup.name, d=home))
    st = agent.wait_resident()
    pdir = st["pinned"]
    assert _killed(cgroup.run([str(home / "prot")]))

    # logged execs flood while blocks go on: both ring buffers, one reader
    flood = subprocess.Popen(["sh", "-c", LOOP, "flood", str(LOGS),
                              str(standins("edr-res-flood"))], preexec_fn=cgroup.enter)
    # a file renamed over the protected path (dpkg): its key comes from the keeper's thread,
    # written through the pinned maps, before the exec goes on (fanotify)
    new = harmless_copy(home / ".prot.dpkg-new")
    os.rename(new, home / "prot")
    assert _killed(cgroup.run([str(home / "prot")]))
    assert flood.wait(timeout=120) == 0

    # the keeper's writes are the agent's own: three checks later, nothing "tampered"
    time.sleep(3 * tamper.CHECK_EVERY)
    st = agent.status()
    assert "tampered" not in st, st["tampered"]
    assert st["identities"]["keys_added"] >= 1 and st["identities"]["errors"] == 0, st
    assert st["bcc_loaded"] is False

    # a foreign edit of a map the keeper also writes is still restored and reported
    fd, keys = _inode_keys(pdir)
    try:
        assert keys
        for k in keys:
            bpfsys.map_delete(fd, k)
        deadline = time.monotonic() + 3 * tamper.CHECK_EVERY
        while sorted(bpfsys.map_keys(fd, len(keys[0]))) != sorted(keys):
            assert time.monotonic() < deadline, "inodes never restored"
            time.sleep(0.02)
    finally:
        os.close(fd)
    found = agent.wait_events(lambda e: e.get("event.action") == "tampered")
    assert found and "inodes[" in found[0]["message"] and "removed" in found[0]["message"]
    assert _killed(cgroup.run([str(home / "prot")]))

    assert agent.stop() == 0  # reads what is left, sums up the last folded execs
    st = agent.status()
    events = agent.events()
    blocks = [e for e in events if e.get("rule.id") == "res-protected"]
    logs = [e for e in events if e.get("rule.id") == "res-flood"]
    assert len(blocks) == st["blocked"] == 3  # from "events_block"
    assert st["logged"] == LOGS  # from "events", folded in "logagg" and summed up
    assert sum(e["edrfleet.count"] for e in logs) + st["drops"]["log"] == LOGS
    assert st["log_folded"] > 0 and len(logs) < LOGS
