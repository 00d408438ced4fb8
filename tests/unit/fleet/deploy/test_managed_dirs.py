"""host/dirs.sh through the apply script, run for real (locally, as root): a managed directory
or parent another user owns or may write is refused before anything changes; the rest is
created or taken over as root:root 0700."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.unit.fleet.deploy.test_hostscripts import FULL, apply, desired, release

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
NOBODY = 65534


def snapshot(top: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(top)): (p.lstat().st_uid, stat.S_IMODE(p.lstat().st_mode))
            for p in sorted(top.rglob("*"))}


def refused(tmp_path: Path, fragment: str) -> None:
    before = snapshot(tmp_path)
    res, out = apply(desired(tmp_path, release(b"1")), FULL)
    assert res.rc == 1 and out["result"] == "failed", res.stderr
    assert out["error"].startswith("refusing to deploy: edrfleet_install_dir: ")
    assert fragment in out["error"] and "(fix: " in out["error"]
    assert not [k for k in out if k.startswith("touched_")]
    assert snapshot(tmp_path) == before  # nothing created, chowned or chmodded


def test_a_managed_directory_another_user_owns_is_refused(tmp_path: Path) -> None:
    (tmp_path / "opt").mkdir()
    os.chown(tmp_path / "opt", NOBODY, NOBODY)
    refused(tmp_path, f"{tmp_path}/opt is owned by nobody:")


def test_a_parent_another_user_owns_is_refused(tmp_path: Path) -> None:
    (tmp_path / "opt").mkdir()
    os.chown(tmp_path, NOBODY, 0)
    try:
        refused(tmp_path, f"{tmp_path} is owned by nobody:")
    finally:
        os.chown(tmp_path, 0, 0)


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777])
def test_a_parent_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    (tmp_path / "opt").mkdir()
    tmp_path.chmod(mode)
    refused(tmp_path, f"{tmp_path} is writable by group or others")


def test_a_managed_directory_that_is_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "opt").symlink_to(tmp_path / "elsewhere")
    refused(tmp_path, f"{tmp_path}/opt is a symbolic link")


def test_a_root_owned_sticky_parent_is_accepted_and_the_rest_made_root_0700(
        tmp_path: Path) -> None:
    """/tmp-like: others may create entries there but not rename or remove ours."""
    tmp_path.chmod(0o1777)
    (tmp_path / "spool").mkdir(mode=0o755)
    (tmp_path / "spool").chmod(0o755)
    res, out = apply(desired(tmp_path, release(b"1")), FULL)
    assert out["result"] == "ok", res.stderr + res.stdout
    for d in ("opt", "opt/releases", "etc", "spool", "run"):
        st = (tmp_path / d).lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o700), d
