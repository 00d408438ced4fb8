"""VM tier: real Debian 12 guests under qemu (software emulation), where BPF LSM loads.

Needs root, qemu and debootstrap (scripts/setup.sh installs them).  The image is built once
and cached under .edrfleet/vm/ by its recipe hash; a fresh machine builds it (~2.5 min).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edrfleet.agent import ecs
from edrfleet.fleet.deploy.release import AGENT_SHARED_MODULES
from edrfleet.fleet.deploy.render import render_policy
from edrfleet.lab.netns import LAB_CANARY_RULE
from edrfleet.lab.vm import qemu as vm
from edrfleet.policy import compile_policy, dump_bundle, load_policy_text
from tests.tiers import mark_tier

REPO = Path(__file__).resolve().parents[2]


def _vm_ready() -> str:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("qemu-system-x86_64", "debootstrap", "mkfs.ext4", "qemu-img"):
        if not shutil.which(tool):
            return f"needs {tool} (scripts/setup.sh installs it)"
    if not os.environ.get("EDRFLEET_VM"):
        # `make test` and `make test-vm` set it; a bare pytest run does not boot VMs.
        return "set EDRFLEET_VM=1 (make test, make test-vm) to boot VMs"
    return ""


def pytest_collection_modifyitems(config, items):
    mark_tier(items, "tests/vm", pytest.mark.vm, _vm_ready())


@dataclass(frozen=True)
class VmLab:
    workdir: Path
    inventory: Path      # written by `edrfleet lab up --vm` (group vms)
    guest: vm.VmHandle   # its one VM


@pytest.fixture(scope="session")
def vm_lab(tmp_path_factory) -> Iterator[VmLab]:
    """One VM for the whole tier (a TCG boot costs a minute or more), made the way a user
    makes it: `edrfleet lab up --vm --hosts 1`, stopped by `edrfleet lab down --vm`."""
    from edrfleet.cli.main import main

    workdir = tmp_path_factory.mktemp("vm-lab")
    assert main(["lab", "up", "--vm", "--hosts", "1", "--dir", str(workdir)]) == 0
    try:
        (handle,) = vm.load_handles(workdir)
        yield VmLab(workdir, workdir / "inventory.yml", handle)
    finally:
        main(["lab", "down", "--vm", "--dir", str(workdir)])


@pytest.fixture(scope="session")
def guest(vm_lab) -> vm.VmHandle:
    return vm_lab.guest


def agent_tarball() -> bytes:
    """The host agent as the release carries it: edrfleet/agent/ and the modules it shares
    (release.AGENT_SHARED_MODULES), and bpf/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in AGENT_SHARED_MODULES:
            tar.add(REPO / "edrfleet" / name, f"edrfleet/{name}")
        agent = REPO / "edrfleet" / "agent"
        for f in sorted(agent.rglob("*.py")):  # with its subpackages (agent/outputs/)
            tar.add(f, f"edrfleet/agent/{f.relative_to(agent).as_posix()}")
        for f in sorted((REPO / "bpf").iterdir()):
            tar.add(f, f"bpf/{f.name}")
    return buf.getvalue()


# parent and cwd decided by the LSM hook too (a copy of true run by a copy of dash named
# edrvm-sh, in a directory under /tmp/edrvm-ctx); the prefix must exist when the agent starts
CTX_RULE = {
    "id": "vm-ctx-canary", "description": "the stand-in only under edrvm-sh, in /tmp/edrvm-ctx",
    "severity": "high", "action": "block",
    "match": {"executable": ["edrvm-ctx-canary"], "parent": {"executable": ["edrvm-sh"]},
              "cwd": ["/tmp/edrvm-ctx"]},
}
CTX_SETUP = ("mkdir -p /tmp/edrvm-ctx/sub /tmp/edrvm-bin && cp /bin/true "
             "/tmp/edrvm-bin/edrvm-ctx-canary && cp /bin/dash /tmp/edrvm-bin/edrvm-sh")


def sh(guest: vm.VmHandle, cmd: str, timeout: float = 600,
       input: str | bytes | None = None):
    return vm.ssh(guest, cmd, timeout=timeout, input=input)


def events(guest: vm.VmHandle) -> list[dict]:
    """The guest's spooled events by ECS dotted field name (``e["rule.id"]``)."""
    out = sh(guest, "cat /var/lib/edrfleet/events.jsonl 2>/dev/null || true").stdout
    return [ecs.flatten(json.loads(line)) for line in out.splitlines() if line]


# The hand-started agent's transient unit: `systemctl stop` ends it the product's way (SIGTERM
# from systemd, programs detached, final status written).  A `pkill` of the agent is one of
# the commands the default policy blocks, and edrfleet-agent is a protected service name.
AGENT_UNIT = "edrvm-agent"


def run_agent_unit(guest: vm.VmHandle, unit: str, home: str, policy: str, spool: str,
                   host_name: str, timeout: float = 600) -> dict:
    """``python3 -m edrfleet.agent run`` from ``home`` (where agent_tarball() is unpacked) as
    the transient systemd unit ``unit``: it leaves the ssh session at once, holding none of its
    descriptors, and `systemctl stop` ends it the product's way.  Returns its status.json once
    enforcing or failed (the last one read when ``timeout`` passes)."""
    r = sh(guest, f"systemd-run --unit={unit} --working-directory={home} "
                  "--property=KillSignal=SIGTERM --property=TimeoutStopSec=10 "
                  f"/usr/bin/python3 -m edrfleet.agent run --policy {policy} "
                  f"--spool {spool} --host-name {host_name}", timeout=60)
    assert r.returncode == 0, r.stderr
    status: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sh(guest, f"cat {spool}/status.json 2>/dev/null || true").stdout
        status = json.loads(out) if out.strip() else {}
        if status.get("state") in ("enforcing", "failed"):
            break
        time.sleep(3)
    return status


@pytest.fixture(scope="session")
def agent(guest):
    """The agent pushed to the guest, default policy plus the lab canary and context rules,
    whole guest; run as a transient systemd unit, stopped by the unit's stop."""
    text = render_policy({"edrfleet_extra_rules": [LAB_CANARY_RULE, CTX_RULE]})
    assert sh(guest, CTX_SETUP).returncode == 0
    bundle = dump_bundle(compile_policy(load_policy_text(text, "policy.yaml")))
    r = vm.ssh(guest, "mkdir -p /opt/edrfleet /etc/edrfleet && tar -xz -C /opt/edrfleet",
               input=agent_tarball())
    assert r.returncode == 0, r.stderr
    vm.copy_to(guest, bundle, "/etc/edrfleet/policy.json", mode="0600")
    started = time.monotonic()
    status = run_agent_unit(guest, AGENT_UNIT, "/opt/edrfleet", "/etc/edrfleet/policy.json",
                            "/var/lib/edrfleet", "vm1")
    log = sh(guest, f"journalctl -u {AGENT_UNIT} -n 50 --no-pager").stdout
    assert status.get("state") == "enforcing", (status, log)
    print(f"agent start in the VM: {status['start_seconds']} s "
          f"(wall {time.monotonic() - started:.1f} s)")
    yield status
    r = sh(guest, f"systemctl stop {AGENT_UNIT}; systemctl is-active {AGENT_UNIT} || true; "
                  "cat /var/lib/edrfleet/status.json", timeout=120)
    assert r.stdout.splitlines()[0] in ("inactive", "failed"), r
    assert json.loads(r.stdout.split("\n", 1)[1])["state"] == "stopped", r


# The backend each release's kernel allows with its stock command line: BPF LSM is in the
# built-in LSM list of Debian 12's and 13's kernels, built but not enabled in Debian 11's.
MATRIX = {"debian-11": "sigkill", "debian-12": "lsm", "debian-13": "lsm"}


@dataclass(frozen=True)
class MatrixLab:
    workdir: Path
    inventory: Path                  # groups vms and debian_11, debian_12, debian_13
    guests: dict[str, vm.VmHandle]   # by release
    up_seconds: float


@pytest.fixture(scope="session")
def matrix_lab(tmp_path_factory) -> Iterator[MatrixLab]:
    """One guest per Debian release, booted at once by `edrfleet lab up --vm --os …` (images
    built in parallel where not cached), stopped by `edrfleet lab down --vm`."""
    from edrfleet.cli.main import main

    workdir = tmp_path_factory.mktemp("vm-matrix")
    started = time.monotonic()
    rc = main(["lab", "up", "--vm", "--os", ",".join(MATRIX), "--dir", str(workdir)])
    took = time.monotonic() - started
    try:
        assert rc == 0
        handles = {h.os: h for h in vm.load_handles(workdir)}
        for h in handles.values():
            print(f"{h.os}: {h.name} sshd up after {h.boot_seconds} s")
        print(f"matrix lab up (images + boot of {len(handles)} guests): {took:.1f} s")
        yield MatrixLab(workdir, workdir / "inventory.yml", handles, took)
    finally:
        main(["lab", "down", "--vm", "--dir", str(workdir)])
