"""roles/edrfleet_agent: its templates are the repository's, Ansible renders them as edrfleet
does, and it passes ansible-lint.

roles/edrfleet_agent/templates/ links to templates/ (one copy of the policy); this renders the
link with ansible-core's own template module (the role's options) and compares it with
edrfleet's renderer for the same host variables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edrfleet.fleet.deploy.render import render_policy
from edrfleet.lab.netns import LAB_CANARY_RULE

REPO = Path(__file__).resolve().parents[3]
ROLE_TEMPLATES = REPO / "roles" / "edrfleet_agent" / "templates"
PLAYBOOK = """
- name: Render as the role does
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Render the policy
      ansible.builtin.template:
        src: {src}
        dest: {dest}
        mode: "0600"
        trim_blocks: false
"""
HOST_VARS = [
    {},
    {"edrfleet_mode": "monitor", "edrfleet_extra_rules": [LAB_CANARY_RULE],
     "edrfleet_scope_cgroups": ["/edrfleet-lab/web1"], "edrfleet_strict": True,
     "edrfleet_disabled_rules": ["python-http-server"],
     "edrfleet_exceptions": [{"id": "allow-backup-rm", "description": "nightly cleanup",
                              "severity": "low", "match": {"executable": ["rm"],
                                                           "args": [{"glob": "/srv/backup/*"}]}}]},
    # hostile values (no `{{`: Ansible templates variables, unless the inventory says !unsafe)
    {"edrfleet_mode": "x\nbackend: sigkill", "edrfleet_unscanned": "allow\nscope: {}",
     "edrfleet_protected_agents": ["a'b\n  - id: planted", "$(id)", "x.y|.*"],
     "edrfleet_scope_cgroups": ["/a\"\nb", "%h"]},
]


def test_the_role_templates_are_links_to_the_repository_templates():
    for name in ("policy.yaml.j2", "edrfleet-agent.service.j2"):
        link = ROLE_TEMPLATES / name
        assert link.is_symlink(), link
        assert link.resolve() == REPO / "templates" / name


@pytest.mark.parametrize("host_vars", HOST_VARS, ids=["defaults", "lab-host", "hostile"])
def test_ansible_renders_the_policy_as_edrfleet_does(tmp_path, host_vars):
    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_bin.exists() and not shutil.which("ansible-playbook"):
        pytest.skip("ansible-core is not installed (pip install -e '.[dev]')")
    out = tmp_path / "policy.yaml"
    play = tmp_path / "play.yml"
    play.write_text(PLAYBOOK.format(src=ROLE_TEMPLATES / "policy.yaml.j2", dest=out))
    (tmp_path / "vars.json").write_text(json.dumps(host_vars))
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
           "ANSIBLE_HOME": str(tmp_path / "home"), "ANSIBLE_NOCOLOR": "1"}
    r = subprocess.run([str(playbook_bin), "-i", "localhost,", "-e", f"@{tmp_path / 'vars.json'}",
                        "-e", f"ansible_python_interpreter={sys.executable}", str(play)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ours = render_policy(host_vars).splitlines(keepends=True)
    theirs = out.read_text().splitlines(keepends=True)
    # Only the `ansible_managed` comment differs (Ansible defines the variable, edrfleet not).
    assert [a for a, b in zip(ours, theirs, strict=True) if a != b] == [
        "# Managed by edrfleet (templates/policy.yaml.j2): local edits are overwritten.\n"]
    assert "# Ansible managed\n" in theirs


def test_the_role_passes_ansible_lint_at_the_default_profile(tmp_path):
    lint = Path(sys.executable).parent / "ansible-lint"
    if not lint.exists():
        pytest.skip("ansible-lint is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "PATH": f"{lint.parent}:{os.environ.get('PATH', '')}",
           "ANSIBLE_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    r = subprocess.run([str(lint), "--offline", "--nocolor", "roles/edrfleet_agent"], cwd=REPO,
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "Passed: 0 failure(s), 0 warning(s)" in r.stdout + r.stderr


def test_the_role_refuses_the_system_directories_deploy_refuses():
    import yaml

    from edrfleet.fleet.deploy.hostvars import SYSTEM_DIRS

    role_vars = yaml.safe_load((REPO / "roles/edrfleet_agent/vars/main.yml").read_text())
    assert set(role_vars["__edrfleet_agent_system_dirs"]) == SYSTEM_DIRS
    dirs_sh = role_vars["__edrfleet_agent_dirs_sh"].replace("{{ role_path }}",
                                                            str(REPO / "roles/edrfleet_agent"))
    assert Path(dirs_sh).resolve() == REPO / "edrfleet/fleet/deploy/host/dirs.sh"
