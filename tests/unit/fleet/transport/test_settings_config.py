"""Settings.from_vars below the host's variables: ANSIBLE_* and ansible.cfg, in Ansible's
precedence (host variable > environment > file > default)."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from edrfleet.fleet.config import load_config
from edrfleet.fleet.transport.settings import Hop, Proxy, Settings

CFG = """\
[defaults]
remote_user = cfguser
remote_port = 2201
private_key_file = ~/keys/cfg_key
host_key_checking = false
[privilege_escalation]
become = true
become_user = app
[ssh_connection]
ssh_common_args = -o ProxyJump=bastion:2222
"""


def config(tmp_path: Path, text: str | None = CFG, **env: str):
    cfg = tmp_path / "ansible.cfg"
    if text is not None:
        cfg.write_text(text)
    return load_config({"ANSIBLE_CONFIG": str(cfg), "HOME": str(tmp_path), **env},
                       str(tmp_path), str(tmp_path))


def test_without_config_the_defaults_are_edrfleets_own(tmp_path: Path) -> None:
    s = Settings.from_vars("web1", {}, tmp_path, config(tmp_path, None))
    assert s.target == Hop("web1", 22, getpass.getuser())
    assert s.key_file is None and s.become_prefix == () and not s.accept_new
    assert s.proxy == Proxy()


def test_the_file_gives_user_port_key_become_proxy_and_host_key_policy(tmp_path: Path) -> None:
    s = Settings.from_vars("web1", {"ansible_host": "10.0.0.5"}, tmp_path, config(tmp_path))
    assert s.target == Hop("10.0.0.5", 2201, "cfguser")
    assert s.key_file == str(Path("~/keys/cfg_key").expanduser())
    assert s.become_prefix == ("sudo", "-n", "-u", "app", "--")
    assert s.proxy == Proxy(jumps=(Hop("bastion", 2222, "cfguser"),))
    assert s.accept_new  # host_key_checking = false -> accept-new


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    cfg = config(tmp_path, ANSIBLE_REMOTE_USER="envuser", ANSIBLE_HOST_KEY_CHECKING="true",
                 ANSIBLE_PRIVATE_KEY_FILE="/k/env", ANSIBLE_BECOME="false",
                 ANSIBLE_SSH_COMMON_ARGS="-J jump")
    s = Settings.from_vars("web1", {}, tmp_path, cfg)
    assert s.target.user == "envuser" and s.key_file == "/k/env" and not s.accept_new
    assert s.become_prefix == () and s.proxy == Proxy(jumps=(Hop("jump", 22, "envuser"),))


def test_host_variables_win_over_environment_and_file(tmp_path: Path) -> None:
    cfg = config(tmp_path, ANSIBLE_REMOTE_USER="envuser")
    s = Settings.from_vars("web1", {
        "ansible_user": "hostuser", "ansible_port": 2022, "ansible_ssh_private_key_file": "/k/h",
        "ansible_become": False, "ansible_host_key_checking": True,
        "ansible_ssh_common_args": "-o ProxyCommand=none"}, tmp_path, cfg)
    assert s.target == Hop("web1", 2022, "hostuser") and s.key_file == "/k/h"
    assert s.become_prefix == () and not s.accept_new
    assert s.proxy == Proxy()  # the host's ssh_common_args replaces the file's ProxyJump


def test_edrfleet_host_key_policy_wins_over_host_key_checking(tmp_path: Path) -> None:
    s = Settings.from_vars("web1", {"edrfleet_host_key_policy": "strict"}, tmp_path,
                           config(tmp_path))
    assert not s.accept_new


def test_ssh_args_come_before_common_and_extra_args_first_proxy_wins(tmp_path: Path) -> None:
    cfg = config(tmp_path, "[ssh_connection]\nssh_args = -o ProxyJump=first\n"
                 "ssh_extra_args = -o ProxyJump=third\n")
    s = Settings.from_vars("web1", {"ansible_ssh_common_args": "-J second"}, tmp_path, cfg)
    assert s.proxy.jumps[0].host == "first"  # ssh(1) keeps the first value it is given


def test_a_become_method_other_than_sudo_names_where_it_came_from(tmp_path: Path) -> None:
    cfg = config(tmp_path, "[privilege_escalation]\nbecome = true\nbecome_method = su\n")
    with pytest.raises(ValueError, match=r"web1: become_method in .*ansible.cfg 'su': only "
                       "sudo"):
        Settings.from_vars("web1", {"ansible_user": "ops"}, tmp_path, cfg)


def test_a_bad_boolean_host_variable_is_still_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ansible_become: 'maybe' is not a boolean"):
        Settings.from_vars("web1", {"ansible_become": "maybe"}, tmp_path, config(tmp_path))


def test_ansible_ssh_timeout_of_a_host(tmp_path: Path) -> None:
    cfg = config(tmp_path, None)
    assert Settings.from_vars("h", {"ansible_ssh_timeout": "7"}, tmp_path, cfg
                              ).connect_timeout == 7.0
    assert Settings.from_vars("h", {}, tmp_path, cfg).connect_timeout is None
    with pytest.raises(ValueError, match="ansible_ssh_timeout"):
        Settings.from_vars("h", {"ansible_ssh_timeout": "0"}, tmp_path, cfg)


def test_from_vars_without_a_config_reads_the_process_one(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults]\nremote_user = procuser\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "ansible.cfg"))
    assert Settings.from_vars("h", {}, tmp_path).target.user == "procuser"
