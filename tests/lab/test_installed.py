"""The controller installed like any Python tool: the wheel in a fresh venv, run from elsewhere.

The checkout's files are copied aside and built into a wheel there (the build writes build/
and *.egg-info beside its sources, never into this checkout); the wheel goes into a fresh venv
made with --system-site-packages (Debian's python3-bpfcc is BCC); from an unrelated temporary
directory that venv's `edrfleet` brings up a one-host lab, deploys to it, a canary attack is
blocked, `edrfleet report` counts it, and `lab down` removes the lab.  Its state lands in that
directory's .edrfleet/, none in site-packages; the release on the host is the checkout's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edrfleet import paths
from edrfleet.fleet.deploy.release import build_release
from edrfleet.lab import netns as lab
from tests.lab.lab_fleet import LabFleet, load_lab_hosts

SYSTEM_PYTHON = "/usr/bin/python3"  # the one Debian's python3-bpfcc is installed for


def _run(argv: list[str], cwd: Path, timeout: float = 600, **env: str) -> str:
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **env})
    assert p.returncode == 0, f"{argv} exited {p.returncode}:\n{p.stdout[-3000:]}\n" \
                              f"{p.stderr[-3000:]}"
    return p.stdout


def _build_wheel(tmp: Path) -> Path:
    """The wheel of this checkout's files (tracked and new, not ignored), built in a copy."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                            cwd=paths.REPO, capture_output=True, check=True).stdout
    src = tmp / "src"
    for name in filter(None, listed.decode().split("\0")):
        f = paths.REPO / name
        if f.is_file() or f.is_symlink():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, src / name, follow_symlinks=False)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(tmp / "dist"), str(src)], tmp)
    (wheel,) = (tmp / "dist").glob("edrfleet-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv with the wheel installed (its dependencies from the index)."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    venv = tmp / "venv"
    _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], tmp)
    _run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
          str(wheel)], tmp, timeout=900)
    return venv / "bin"


@pytest.fixture
def elsewhere(tmp_path) -> Iterator[Path]:
    """An unrelated working directory; a lab left in it is removed."""
    work = tmp_path / "work"
    work.mkdir()
    yield work
    if (work / ".edrfleet" / "lab" / lab.STATE).exists():
        lab.down(work / ".edrfleet" / "lab", log=lambda _m: None)


def test_the_installed_package_reads_its_data_from_site_packages(installed, elsewhere):
    where = json.loads(_run([str(installed / "python"), "-c", (
        "import json; from edrfleet import paths; "
        "from edrfleet.fleet.deploy.release import build_release; "
        "print(json.dumps({'installed': paths.INSTALLED, 'bpf': str(paths.BPF), "
        "'role': str(paths.ROLE), 'state': str(paths.STATE), "
        "'release': build_release().id}))")], elsewhere))
    site = str(installed.parent / "lib")
    assert where["installed"] and where["bpf"].startswith(site)
    assert (Path(where["role"]) / "tasks" / "main.yml").is_file()
    assert (Path(where["role"]) / "templates" / "policy.yaml.j2").is_file()  # link followed
    assert where["state"] == str(elsewhere / ".edrfleet")
    assert where["release"] == build_release().id  # byte-identical to the checkout's
    role = _run([str(installed / "edrfleet"), "paths", "role"], elsewhere).strip()
    assert role == where["role"]


def test_installed_edrfleet_deploys_blocks_and_reports_from_another_directory(
        installed, elsewhere):
    edrfleet = str(installed / "edrfleet")
    _run([edrfleet, "lab", "up", "--hosts", "1"], elsewhere)
    workdir = elsewhere / ".edrfleet" / "lab"
    inventory = workdir / "inventory.yml"
    assert inventory.is_file()
    _run([edrfleet, "deploy", "-i", str(inventory), "--connect-timeout", "5"], elsewhere)
    fleet = LabFleet(workdir, inventory, load_lab_hosts(inventory))
    (name,) = fleet.names
    assert fleet.facts(name)["release_id"] == build_release().id
    rc, survived = fleet.canary_attack(name)
    assert rc == 137 and survived  # killed before rm ran
    out = elsewhere / "report.json"
    deadline = time.monotonic() + 30
    while True:  # a block made during the agent's hand-over to its resident image waits in
        # the ring buffer until that image reads it (a second or two), then reaches the spool
        _run([edrfleet, "report", str(inventory), "--format", "json", "-o", str(out)],
             elsewhere)
        summary = json.loads(out.read_text())
        if summary["totals"]["blocked"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert summary["totals"]["blocked"] >= 1, summary["totals"]
    assert (elsewhere / ".edrfleet" / "report.db").is_file()  # the store: in the working dir
    _run([edrfleet, "uninstall", str(inventory), "--purge"], elsewhere)
    _run([edrfleet, "lab", "down"], elsewhere)
    assert not (workdir / lab.STATE).exists()
    site = installed.parent / "lib"
    assert not list(site.rglob(".edrfleet")), "state written into site-packages"
