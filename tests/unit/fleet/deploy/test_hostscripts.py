"""The apply/uninstall scripts, run for real (locally) on a tmp layout with no service
action: staging, sha256 checks, atomic swaps, file modes, cleanup."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from edrfleet.fleet.deploy.facts import HostPaths
from edrfleet.fleet.deploy.hostpolicy import HostPolicy
from edrfleet.fleet.deploy.hostscripts import (
    apply_script,
    build_payload,
    check_removable,
    parse_output,
    uninstall_script,
)
from edrfleet.fleet.deploy.operations import Desired, Plan
from edrfleet.fleet.deploy.release import Release, agent_zipapp
from edrfleet.fleet.transport.local import LocalTransport


def paths(tmp: Path) -> HostPaths:
    return HostPaths(install_dir=str(tmp / "opt"), config_dir=str(tmp / "etc"),
                     spool_dir=str(tmp / "spool"), run_dir=str(tmp / "run"),
                     unit_path=str(tmp / "unit.service"))


@functools.cache
def _zipapp() -> bytes:
    return agent_zipapp()


def release(tag: bytes) -> Release:
    """A release of the real agent zipapp (the scripts run its `service` and `wait`), told
    apart by a line before the zip (a zipapp may start with any bytes, like its shebang)."""
    files = {"agent.pyz": b"#pyz" + tag + b"\n" + _zipapp(), "bpf/edrfleet.c": b"c" + tag,
             "bpf/edrfleet.h": b"h"}
    return Release(hashlib.sha256(tag).hexdigest()[:16], files)


def desired(tmp: Path, rel: Release, text: str = "version: 1\n") -> Desired:
    return Desired(name="h1", paths=paths(tmp), release=rel,
                   policy=HostPolicy(text, {"sha256": "s"}, '{"p":"' + text.strip() + '"}\n'),
                   manager="supervisor", unit=None)


def apply(d: Desired, p: Plan, mangle=None):
    payload = build_payload(d, p)
    data = payload.data if payload else None
    if mangle and data:
        data = mangle(data)
    res = LocalTransport().run_script(apply_script(d, p, payload is not None), input=data,
                                      check=False)
    return res, parse_output(res.stdout)


FULL = Plan(push_release=True, swap_release=True, write_policy=True)


def test_first_apply_lays_out_the_release_and_policy_root_only(tmp_path: Path) -> None:
    rel = release(b"1")
    res, out = apply(desired(tmp_path, rel), FULL)
    assert res.rc == 0 and out["result"] == "ok", res.stderr
    assert out["old_release"] == ""
    cur = tmp_path / "opt" / "current"
    assert os.readlink(cur) == f"releases/{rel.id}"
    assert (cur / "agent.pyz").read_bytes() == rel.files["agent.pyz"]
    assert (tmp_path / "etc" / "policy.yaml").read_text() == "version: 1\n"
    for f in (cur / "agent.pyz", tmp_path / "etc" / "policy.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    for d in (tmp_path / "opt", tmp_path / "etc", cur / "bpf"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert not list((tmp_path / "opt").glob(".stage-*"))


def test_upgrade_keeps_the_previous_release_and_policy_for_rollback(tmp_path: Path) -> None:
    r1, r2, r3 = release(b"1"), release(b"2"), release(b"3")
    apply(desired(tmp_path, r1, "version: 1\n"), FULL)
    res, out = apply(desired(tmp_path, r2, "version: 2\n"), FULL)
    assert out["result"] == "ok" and out["old_release"] == r1.id
    assert (tmp_path / "etc" / "policy.yaml.prev").read_text() == "version: 1\n"
    apply(desired(tmp_path, r3), FULL)
    kept = sorted(p.name for p in (tmp_path / "opt" / "releases").iterdir())
    assert kept == sorted([r2.id, r3.id])  # current and the one before it


def test_a_payload_corrupted_in_transit_changes_nothing(tmp_path: Path) -> None:
    r1, r2 = release(b"1"), release(b"2")
    apply(desired(tmp_path, r1), FULL)

    def mangle(data: bytes) -> bytes:
        raw = io.BytesIO(gzip.decompress(data))
        out = io.BytesIO()
        with tarfile.open(fileobj=raw) as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
            for m in src.getmembers():
                body = src.extractfile(m).read()
                if m.name == "release/agent.pyz":
                    body = b"evil" + body[4:]
                dst.addfile(m, io.BytesIO(body))
        return out.getvalue()

    res, out = apply(desired(tmp_path, r2, "version: 2\n"), FULL, mangle)
    assert res.rc != 0 and "sha256 mismatch" in out["error"]
    assert os.readlink(tmp_path / "opt" / "current") == f"releases/{r1.id}"
    assert (tmp_path / "etc" / "policy.yaml").read_text() == "version: 1\n"


def test_payload_carries_only_what_the_plan_changes(tmp_path: Path) -> None:
    d = desired(tmp_path, release(b"1"))
    assert build_payload(d, Plan(write_policy=True)).files == ["policy.json", "policy.yaml"]
    assert build_payload(d, Plan(swap_release=True)) is None


def test_uninstall_removes_everything_but_the_spool_unless_purged(tmp_path: Path) -> None:
    d = desired(tmp_path, release(b"1"))
    apply(d, FULL)
    (tmp_path / "spool" / "events.jsonl").write_text("{}\n")
    t = LocalTransport()
    res = t.run_script(uninstall_script(d.paths, "h1", False), check=False)
    assert parse_output(res.stdout)["result"] == "ok", res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool"]
    t.run_script(uninstall_script(d.paths, "h1", True))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["/", "/etc", "/opt/", "relative/dir", "/opt/../etc", "/var/lib"])
def test_uninstall_refuses_system_directories(bad: str) -> None:
    with pytest.raises(ValueError, match="refusing to remove"):
        check_removable(bad)
    with pytest.raises(ValueError, match="refusing to remove"):
        uninstall_script(HostPaths(install_dir=bad), "h", False)


def every_script(tmp_path: Path) -> list[str]:
    from edrfleet.fleet.deploy.facts import facts_script
    from edrfleet.fleet.deploy.hostscripts import rollback_script

    d = desired(tmp_path, release(b"1"))
    full = Plan(packages=["python3-bpfcc"], push_release=True, swap_release=True,
                write_policy=True, write_unit=True, service="restart")
    return [apply_script(d, full, True), rollback_script(d, "abc", True, restart=True),
            uninstall_script(d.paths, "h1", True), facts_script(d.paths, want_yaml=True)]


def test_every_generated_script_parses_in_sh_and_bash(tmp_path: Path) -> None:
    import subprocess

    for script in every_script(tmp_path):
        for shell in ("sh", "bash"):
            r = subprocess.run([shell, "-n"], input=script.encode(), capture_output=True)
            assert r.returncode == 0, (shell, r.stderr.decode())


def test_every_generated_script_passes_shellcheck_as_it_runs(tmp_path: Path) -> None:
    """Preamble, common.sh and body together: a variable one sets and another reads."""
    import shutil
    import subprocess

    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed: run scripts/setup.sh --test (make lint does)")
    for script in every_script(tmp_path):
        # SC2016: the preamble single-quotes every value on purpose (facts.py holds `$`)
        r = subprocess.run(["shellcheck", "-s", "sh", "-e", "SC2016", "-"], input=script,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout

