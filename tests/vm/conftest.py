"""VM tier: real Debian 12 guests under qemu (software emulation), where BPF LSM loads.

Needs root, qemu and debootstrap (scripts/setup.sh installs them).  The image is built once
and cached under .edrfleet/vm/ by its recipe hash; a fresh machine builds it (~2.5 min).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edrfleet.fleet import vm

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
    reason = _vm_ready()
    for item in items:
        if "tests/vm" in str(item.fspath):
            item.add_marker(pytest.mark.vm)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


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
    """The host agent as it is pushed: edrfleet/__init__.py, edrfleet/agent/, bpf/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(REPO / "edrfleet" / "__init__.py", "edrfleet/__init__.py")
        for f in sorted((REPO / "edrfleet" / "agent").glob("*.py")):
            tar.add(f, f"edrfleet/agent/{f.name}")
        for f in sorted((REPO / "bpf").iterdir()):
            tar.add(f, f"bpf/{f.name}")
    return buf.getvalue()
