"""edrfleet.agent.release_check: the agent runs only the release deploy wrote, at every start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edrfleet.agent.release_check import MANIFEST, ReleaseMismatch, verify_release
from edrfleet.fleet.deploy.release import build_release, write_release


@pytest.fixture
def release(tmp_path: Path) -> Path:
    top = write_release(build_release(), tmp_path / "releases")
    os.chmod(tmp_path, 0o700)
    return top


def inside(top: Path) -> str:
    """__file__ of release_check.py as Python sees it when it runs from top/agent.pyz."""
    return str(top / "agent.pyz" / "edrfleet" / "agent" / "release_check.py")


def test_the_release_deploy_writes_passes(release: Path) -> None:
    assert "files match" in verify_release(release / "bpf", inside(release))
    assert set(build_release().files) >= {"agent.pyz", "bpf/edrfleet.c", MANIFEST}


def test_a_source_checkout_has_no_release_to_check() -> None:
    assert verify_release(Path("bpf")) == ""


@pytest.mark.parametrize("name", ["agent.pyz", "bpf/edrfleet.c", "bpf/edrfleet.h"])
def test_a_modified_file_is_refused(release: Path, name: str) -> None:
    with open(release / name, "ab") as f:
        f.write(b"\n# planted\n")
    with pytest.raises(ReleaseMismatch, match=f"{name}.*modified after deploy"):
        verify_release(release / "bpf", inside(release))


def test_a_missing_manifest_or_a_foreign_bpf_dir_is_refused(release: Path, tmp_path: Path
                                                           ) -> None:
    with pytest.raises(ReleaseMismatch, match="not this release's bpf"):
        verify_release(tmp_path, inside(release))
    (release / MANIFEST).unlink()
    with pytest.raises(ReleaseMismatch, match="missing"):
        verify_release(release / "bpf", inside(release))


def test_a_release_others_may_write_or_own_is_refused(release: Path) -> None:
    release.chmod(0o770)
    with pytest.raises(ReleaseMismatch, match="writable by group or others"):
        verify_release(release / "bpf", inside(release))
    release.chmod(0o700)
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    os.chown(release.parent, 65534, 65534)
    with pytest.raises(ReleaseMismatch, match="owned by uid 65534"):
        verify_release(release / "bpf", inside(release))


def test_a_file_replaced_by_a_link_is_refused(release: Path, tmp_path: Path) -> None:
    c = release / "bpf" / "edrfleet.c"
    (tmp_path / "copy.c").write_bytes(c.read_bytes())
    c.unlink()
    c.symlink_to(tmp_path / "copy.c")
    with pytest.raises(ReleaseMismatch, match="edrfleet.c"):
        verify_release(release / "bpf", inside(release))


def test_the_agent_refuses_to_start_a_tampered_release(release: Path, tmp_path: Path) -> None:
    """End to end: `agent.pyz run` says so on stderr and in status.json, loads nothing."""
    with open(release / "agent.pyz", "ab") as f:
        f.write(b"\0")  # a zip still opens with trailing bytes
    spool = tmp_path / "spool"
    spool.mkdir()
    r = subprocess.run([sys.executable, str(release / "agent.pyz"), "run", "--policy",
                        str(tmp_path / "none.json"), "--spool", str(spool), "--bpf-dir",
                        str(release / "bpf")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "verify release" in r.stderr and "modified after deploy" in r.stderr
    status = json.loads((spool / "status.json").read_text())
    assert status["state"] == "failed"
    assert status["last_error"].startswith("verify release: ")
