"""The host-side scripts are files: found through importlib.resources, shipped as package data,
and clean under shellcheck (when it is installed: `scripts/setup.sh --test` installs it)."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from edrfleet.fleet.deploy.hostfiles import SCRIPTS, host_file

REPO = Path(__file__).resolve().parents[4]
DATA_DIRS = {"edrfleet.fleet.deploy": REPO / "edrfleet/fleet/deploy/host",
             "edrfleet.lab.vm": REPO / "edrfleet/lab/vm/guest"}


def test_every_host_script_is_a_file_of_the_package() -> None:
    on_disk = sorted(p.name for p in DATA_DIRS["edrfleet.fleet.deploy"].iterdir()
                     if p.is_file())
    assert on_disk == sorted(SCRIPTS)
    for name in SCRIPTS:
        assert host_file(name) == (DATA_DIRS["edrfleet.fleet.deploy"] / name).read_text()
    with pytest.raises(KeyError):
        host_file("../hostscripts.py")


def test_pyproject_ships_the_host_and_guest_files_as_package_data() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_data = data["tool"]["setuptools"]["package-data"]
    for package, folder in DATA_DIRS.items():
        root = REPO.joinpath(*package.split("."))
        for f in folder.iterdir():
            rel = f.relative_to(root).as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in package_data[package]), rel


def test_the_host_and_guest_shell_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed: run scripts/setup.sh --test (make lint does)")
    files = sorted(str(f) for d in DATA_DIRS.values() for f in d.glob("*.sh"))
    r = subprocess.run(["shellcheck", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
