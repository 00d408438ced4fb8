"""Deploy from an INI inventory with the SSH user, key and inventory coming only from
ansible.cfg (lab hosts, real SSH, real agents): the inventory has no ansible_user /
ansible_ssh_private_key_file, and no command is given an inventory."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import yaml

from edrfleet.cli.main import main


@pytest.fixture
def cfg_only(lab_hosts, tmp_path: Path, monkeypatch) -> Path:
    """The lab's inventory as an Ansible shop writes one: INI hosts with their own variables on
    the host lines, the group's in group_vars/lab.yml beside it, and neither the user nor the
    key anywhere in it: an ansible.cfg beside it names the inventory, the user and the key.
    The working directory is there."""
    doc = yaml.safe_load(lab_hosts.inventory.read_text())["all"]["children"]["lab"]
    group = doc["vars"]
    user, key = group.pop("ansible_user"), group.pop("ansible_ssh_private_key_file")
    group.pop("ansible_ssh_common_args")  # OpenSSH options for ansible-playbook only
    group["edrfleet_known_hosts_file"] = str(lab_hosts.inventory.parent / "known_hosts")
    work = tmp_path / "project"
    (work / "group_vars").mkdir(parents=True)
    work.chmod(0o755)
    lines = ["[lab]"]
    for name, hv in doc["hosts"].items():  # INI host-line values are Python literals
        lines.append(" ".join([name] + [f"{k}={shlex.quote(repr(v))}" for k, v in hv.items()]))
    (work / "hosts.ini").write_text("\n".join(lines) + "\n")
    (work / "group_vars" / "lab.yml").write_text(yaml.safe_dump(group, sort_keys=False))
    (work / "ansible.cfg").write_text(
        f"[defaults]\ninventory = hosts.ini\nremote_user = {user}\nprivate_key_file = {key}\n"
        "host_key_checking = True\nforks = 3\ntimeout = 5\n")
    for name in [k for k in os.environ if k.startswith("ANSIBLE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(work)
    return work


def test_without_the_config_the_hosts_cannot_be_reached(lab_hosts, cfg_only, capsys):
    (cfg_only / "ansible.cfg").rename(cfg_only / "moved.cfg")
    try:
        assert main(["status", "-i", "hosts.ini", "--connect-timeout", "5"]) == 1
    finally:
        (cfg_only / "moved.cfg").rename(cfg_only / "ansible.cfg")
    err = capsys.readouterr().err
    assert "[Errno None]" not in err and "No existing session" not in err
    for name in lab_hosts.names:
        line = next(x for x in err.splitlines() if x.startswith(f"{name}:"))
        assert line.count(name) == 1, line  # the host named once
        assert "no key to offer" in line or "authentication" in line, line


def test_deploy_from_ansible_cfg_blocks_the_canary_on_every_host(lab_hosts, cfg_only, capsys):
    assert main(["config", "--only-changed"]) == 0
    shown = capsys.readouterr().out
    assert f"remote_user({cfg_only / 'ansible.cfg'}) = root" in shown
    name = lab_hosts.names[0]
    assert main(["inventory", "--host", name]) == 0  # the INI line's literal is a list
    assert json.loads(capsys.readouterr().out)["edrfleet_scope_cgroups"] == \
        lab_hosts.hosts[name].vars["edrfleet_scope_cgroups"]
    try:
        assert main(["deploy"]) == 0, capsys.readouterr()
        out, err = capsys.readouterr()
        for name in lab_hosts.names:
            assert f"edrfleet deploy: {name}: apply" in err  # progress lines: not a terminal
            rc, survived = lab_hosts.canary_attack(name)
            assert rc == 137 and survived  # Killed before rm ran
        assert main(["status", "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert {r["host"]: r["state"] for r in rows} == dict.fromkeys(lab_hosts.names,
                                                                      "enforcing")
    finally:
        assert main(["uninstall", "--purge"]) == 0
        lab_hosts.restore_dirs()
