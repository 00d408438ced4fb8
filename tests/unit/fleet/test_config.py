"""edrfleet's view of ansible.cfg and ANSIBLE_* equals ansible-config's, for every setting it
uses: the file found, each value, each origin, and the precedence between them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from edrfleet.fleet import config as cfgmod
from edrfleet.fleet.config import ConfigError, load_config
from tests.unit.helpers.ansible_ref import BIN

ANSIBLE_CONFIG_BIN = BIN / "ansible-config"
needs_ansible_config = pytest.mark.skipif(
    not ANSIBLE_CONFIG_BIN.exists(),
    reason="ansible-core is not installed (it is in the dev extra: bash scripts/setup.sh)")

# edrfleet's key -> where ansible-config dump shows the value the ssh connection (or the
# controller, for base settings) uses
BASE = {"inventory": "DEFAULT_HOST_LIST", "forks": "DEFAULT_FORKS", "become": "DEFAULT_BECOME",
        "become_user": "DEFAULT_BECOME_USER", "become_method": "DEFAULT_BECOME_METHOD"}
SSH = {"timeout": "timeout", "remote_user": "remote_user", "remote_port": "port",
       "private_key_file": "private_key_file", "host_key_checking": "host_key_checking",
       "ssh_args": "ssh_args", "ssh_common_args": "ssh_common_args",
       "ssh_extra_args": "ssh_extra_args"}


class World:
    """A home, a working directory and an environment of our own (no ANSIBLE_* of the
    caller, no /etc/ansible/ansible.cfg)."""

    def __init__(self, tmp: Path) -> None:
        self.home, self.cwd = tmp / "home", tmp / "work"
        self.home.mkdir()
        self.cwd.mkdir(mode=0o755)
        os.chmod(self.cwd, 0o755)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        self.env.update(HOME=str(self.home))

    def edrfleet(self) -> cfgmod.AnsibleConfig:
        return load_config(self.env, str(self.cwd), str(self.home))

    def ansible(self) -> tuple[dict[str, tuple[object, str]], dict[str, tuple[object, str]],
                               str | None, str]:
        """ansible-config dump -t all --only-changed: (base, ssh plugin, config file, stderr)."""
        env = dict(self.env, ANSIBLE_HOME=str(self.home / ".ansible"), ANSIBLE_NOCOLOR="1")
        done = subprocess.run([str(ANSIBLE_CONFIG_BIN), "dump", "-t", "all", "--only-changed",
                               "--format", "json"], capture_output=True, text=True, env=env,
                              cwd=self.cwd, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        base = {d["name"]: (d["value"], d["origin"]) for d in doc if "name" in d}
        ssh: dict[str, tuple[object, str]] = {}
        for d in doc:
            for plugin in d.get("CONNECTION_PLUGINS", []):
                for entry in plugin.get("ssh", []):
                    ssh[entry["name"]] = (entry["value"], entry["origin"])
        return base, ssh, base["CONFIG_FILE"][0], done.stderr


def assert_same_as_ansible(world: World) -> cfgmod.AnsibleConfig:
    ours = world.edrfleet()
    base, ssh, file, _ = world.ansible()
    assert (str(ours.file) if ours.file else None) == file
    for key, value in ours.values.items():
        table, name = (base, BASE[key]) if key in BASE else (ssh, SSH[key])
        theirs = table.get(name)
        if theirs is None:  # at its default for Ansible: so it must be for edrfleet
            assert value.origin == "default", (key, value)
        else:
            assert (value.value, value.origin) == theirs, key
    return ours


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> World:
    monkeypatch.setattr(cfgmod, "SYSTEM_CONFIG", str(tmp_path / "etc-ansible.cfg"))
    return World(tmp_path)


FULL = """\
[defaults]
inventory = inv/hosts.yml , other.yml
remote_user = deployer ; who we are
remote_port = 2222
private_key_file = ~/.ssh/lab_key
forks = 7
timeout = 33
host_key_checking = False
pipelining = True
unknown_setting = ignored
become = yes
[privilege_escalation]
become = true
become_user = 'admin'
become_method = sudo
[ssh_connection]
ssh_args = -o ControlMaster=auto
ssh_common_args = -o ProxyJump=bastion:2200
ssh_extra_args = "-o ProxyCommand=none"
[some_plugin]
x = 1
"""


@needs_ansible_config
def test_every_setting_from_the_file_reads_as_ansible_reads_it(world: World) -> None:
    (world.cwd / "ansible.cfg").write_text(FULL)
    ours = assert_same_as_ansible(world)
    assert ours["inventory"] == [str(world.cwd / "inv/hosts.yml"), str(world.cwd / "other.yml")]
    assert ours["remote_user"] == "deployer" and ours["become_user"] == "admin"
    assert ours["forks"] == 7 and ours["timeout"] == 33 and ours["host_key_checking"] is False
    assert ours["become"] is True  # [privilege_escalation], not [defaults]


@needs_ansible_config
def test_the_environment_wins_over_the_file_and_the_last_variable_of_a_setting_wins(
        world: World) -> None:
    (world.cwd / "ansible.cfg").write_text(FULL)
    world.env.update(ANSIBLE_FORKS="9", ANSIBLE_REMOTE_USER="ops", ANSIBLE_TIMEOUT="5",
                     ANSIBLE_SSH_TIMEOUT="6", ANSIBLE_HOST_KEY_CHECKING="true",
                     ANSIBLE_SSH_HOST_KEY_CHECKING="no", ANSIBLE_INVENTORY="a.yml",
                     ANSIBLE_PRIVATE_KEY_FILE="keys/id", ANSIBLE_BECOME_USER="app")
    ours = assert_same_as_ansible(world)
    assert ours.values["timeout"] == cfgmod.Value(6, "env: ANSIBLE_SSH_TIMEOUT")
    assert ours["host_key_checking"] is False and ours["forks"] == 9
    assert ours["inventory"] == [str(world.cwd / "a.yml")]  # the environment's: from the cwd


@needs_ansible_config
def test_the_last_ini_key_of_a_setting_wins(world: World) -> None:
    (world.cwd / "ansible.cfg").write_text(
        "[defaults]\nhost_key_checking = true\ntimeout = 3\n"
        "[ssh_connection]\nhost_key_checking = false\ntimeout = 4\n")
    ours = assert_same_as_ansible(world)
    assert ours["host_key_checking"] is False and ours["timeout"] == 4


@needs_ansible_config
def test_ansible_config_wins_over_the_working_directory_and_may_name_a_directory(
        world: World, tmp_path: Path) -> None:
    (world.cwd / "ansible.cfg").write_text("[defaults]\nforks = 3\n")
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    (elsewhere / "ansible.cfg").write_text("[defaults]\nforks = 4\ninventory = hosts\n")
    world.env["ANSIBLE_CONFIG"] = str(elsewhere)
    ours = assert_same_as_ansible(world)
    assert ours["forks"] == 4 and ours["inventory"] == [str(elsewhere / "hosts")]


@needs_ansible_config
def test_home_config_when_the_working_directory_has_none_and_defaults_without_any(
        world: World) -> None:
    ours = assert_same_as_ansible(world)
    assert ours.file is None and all(v.origin == "default" for v in ours.values.values())
    assert ours["forks"] == 50  # edrfleet's default (Ansible's is 5: not shown as changed)
    (world.home / ".ansible.cfg").write_text("[defaults]\nremote_user = fromhome\n")
    assert assert_same_as_ansible(world)["remote_user"] == "fromhome"


@needs_ansible_config
def test_a_world_writable_working_directory_is_not_a_config_source(world: World) -> None:
    (world.cwd / "ansible.cfg").write_text("[defaults]\nremote_user = planted\n")
    (world.home / ".ansible.cfg").write_text("[defaults]\nremote_user = mine\n")
    os.chmod(world.cwd, 0o777)
    ours = assert_same_as_ansible(world)
    assert ours["remote_user"] == "mine"
    assert len(ours.warnings) == 1 and "world-writable" in ours.warnings[0]
    assert "world writable" in world.ansible()[3]  # Ansible warns too


@needs_ansible_config
def test_an_empty_variable_is_unset_and_booleans_are_not_strict(world: World) -> None:
    (world.cwd / "ansible.cfg").write_text("[defaults]\nforks = 8\nhost_key_checking = Flase\n")
    world.env.update(ANSIBLE_FORKS="", ANSIBLE_BECOME="maybe")
    ours = assert_same_as_ansible(world)
    # Ansible: an empty variable of a non-string setting falls back to the default, not
    # to the file
    assert ours.values["forks"].origin == "default"
    assert ours["host_key_checking"] is False and ours["become"] is False


def test_a_bad_integer_names_setting_origin_and_fix(world: World) -> None:
    (world.cwd / "ansible.cfg").write_text("[defaults]\nforks = many\n")
    with pytest.raises(ConfigError, match=r"forks \(DEFAULT_FORKS\) from '.*ansible.cfg': "
                       r"'many' is not an integer \(fix: a whole number"):
        world.edrfleet()


def test_a_broken_file_is_one_input_error_naming_it(world: World) -> None:
    (world.cwd / "ansible.cfg").write_text("[defaults]\nforks = 1\nforks = 2\n")
    with pytest.raises(ConfigError, match="ansible.cfg:3: .forks. given twice in \\[defaults\\]"):
        world.edrfleet()


def test_host_variables_win_over_everything(world: World) -> None:
    (world.cwd / "ansible.cfg").write_text("[defaults]\nremote_user = fromfile\n")
    world.env["ANSIBLE_REMOTE_USER"] = "fromenv"
    cfg = world.edrfleet()
    assert cfg.for_host("remote_user", {}) == cfgmod.Value("fromenv", "env: ANSIBLE_REMOTE_USER")
    assert cfg.for_host("remote_user", {"ansible_user": "a", "ansible_ssh_user": "b"}) == \
        cfgmod.Value("b", "var: ansible_ssh_user")  # the last of a setting's variables wins


def test_current_rereads_when_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cfgmod, "SYSTEM_CONFIG", str(tmp_path / "none.cfg"))
    for k in [k for k in os.environ if k.startswith("ANSIBLE_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    os.chmod(tmp_path, 0o755)
    (tmp_path / "ansible.cfg").write_text("[defaults]\nforks = 3\n")
    assert cfgmod.current()["forks"] == 3
    (tmp_path / "ansible.cfg").write_text("[defaults]\nforks = 44\n")
    assert cfgmod.current()["forks"] == 44
    monkeypatch.setenv("ANSIBLE_FORKS", "5")
    assert cfgmod.current()["forks"] == 5
