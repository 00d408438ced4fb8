"""The agent runs on every supported host's system python: the oldest is Debian 11's 3.9.

The agent ships as a zipapp of edrfleet/agent/ and the modules it shares with the controller
(release.AGENT_SHARED_MODULES); vermin (a static analyser of the minimum Python version a
module needs) reads exactly those files.  The VM matrix test runs the agent on 3.9 for real;
this one names the line the moment 3.10+ syntax or library use creeps in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edrfleet import paths
from edrfleet.fleet.deploy.release import AGENT_SHARED_MODULES

OLDEST_HOST_PYTHON = "3.9"
VERMIN = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))


# Python that runs on hosts outside the zipapp: the facts script, the pull's reader (both sent
# on stdin by the controller), the VM guest's smoke program.
HOST_SIDE = ("fleet/deploy/host/facts.py", "fleet/report/reader.py", "lab/vm/guest/lsm_smoke.py")


def agent_files() -> list[str]:
    shared = [str(paths.PACKAGE / m) for m in AGENT_SHARED_MODULES]
    return shared + sorted(str(f) for f in (paths.PACKAGE / "agent").rglob("*.py"))


def host_side_files() -> list[str]:
    return [str(paths.PACKAGE / f) for f in HOST_SIDE]


@pytest.mark.skipif(not Path(VERMIN).exists(), reason="vermin missing (pip install -e '.[dev]')")
def test_the_agent_needs_nothing_newer_than_the_oldest_host_python() -> None:
    out = subprocess.run([VERMIN, f"-t={OLDEST_HOST_PYTHON}-", "--no-tips", "--violations",
                          "--eval-annotations=no", *agent_files(), *host_side_files()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_it_reads_every_module_the_zipapp_carries() -> None:
    names = {Path(f).name for f in agent_files()}
    assert {"kernel_abi.py", "__main__.py", "run.py", "rfc5424.py"} <= names
    assert all(Path(f).is_file() for f in host_side_files())
