"""agent check: the role's validate: on the host (bundle read, header parsed, maps laid out)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edrfleet.agent.check import check_loads_here
from edrfleet.fleet.deploy.release import build_release, write_release
from edrfleet.fleet.deploy.render import render_policy
from edrfleet.paths import BPF
from edrfleet.policy import compile_policy, dump_bundle, load_policy_text


def _bundle(tmp_path: Path, **vars) -> Path:
    text = render_policy(vars)
    path = tmp_path / "policy.json"
    path.write_text(dump_bundle(compile_policy(load_policy_text(text, "policy.yaml"))))
    return path


def test_a_compiled_default_policy_checks_ok(tmp_path):
    line = check_loads_here(_bundle(tmp_path), BPF)
    assert line.startswith(f"{tmp_path / 'policy.json'}: ok: enforce, ")
    assert "sha256 " in line


def test_the_released_zipapp_checks_a_bundle_and_refuses_an_edited_one(tmp_path):
    top = write_release(build_release(), tmp_path / "rel")
    bundle = _bundle(tmp_path)
    argv = [sys.executable, str(top / "agent.pyz"), "check", "--bpf-dir", str(top / "bpf")]
    ok = subprocess.run([*argv, str(bundle)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(bundle.read_text())
    data["mode"] = "monitor"  # edited after compiling: the checksum no longer holds
    bundle.write_text(json.dumps(data))
    bad = subprocess.run([*argv, str(bundle)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith("sha256 does not match the content (truncated or edited?)")
    assert bad.stderr.count("\n") == 1


def test_a_scope_cgroup_missing_on_the_host_fails_the_check(tmp_path):
    bundle = _bundle(tmp_path, edrfleet_scope_cgroups=["/edrfleet-no-such-cgroup-h-vm"])
    with pytest.raises(ValueError, match="edrfleet-no-such-cgroup-h-vm"):
        check_loads_here(bundle, BPF)
