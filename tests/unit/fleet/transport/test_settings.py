"""Settings from host variables: defaults, become, proxies, bad values."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from edrfleet.fleet.transport.settings import (
    Hop,
    Proxy,
    Settings,
    as_bool,
    parse_common_args,
    parse_jump,
)

T = Hop("10.0.0.5", 2222, "deploy")



def test_connection_variables_default_like_ansible(tmp_path):
    s = Settings.from_vars("web1", {}, tmp_path)
    assert s.target == Hop("web1", 22, getpass.getuser())
    assert s.key_file is None and s.become_prefix == () and not s.accept_new
    assert s.known_hosts_files == (Path("~/.ssh/known_hosts").expanduser(),
                                   tmp_path / "known_hosts")


def test_connection_variables_are_read_from_the_host(tmp_path):
    s = Settings.from_vars("web1", {
        "ansible_host": "10.1.1.1", "ansible_port": "2200", "ansible_user": "ops",
        "ansible_ssh_private_key_file": "~/k", "edrfleet_known_hosts_file": "keys/kh",
        "edrfleet_host_key_policy": "accept-new"}, tmp_path)
    assert s.target == Hop("10.1.1.1", 2200, "ops")
    assert s.key_file == str(Path("~/k").expanduser())
    assert s.record_file == tmp_path / "keys" / "kh" and s.accept_new


def test_known_hosts_file_relative_to_the_inventory_is_normalised(tmp_path):
    s = Settings.from_vars("h", {"edrfleet_known_hosts_file": "../x/kh"}, tmp_path / "inv")
    assert s.record_file == tmp_path / "x" / "kh"


@pytest.mark.parametrize("user, become, become_user, prefix", [
    ("ops", True, None, ("sudo", "-n", "--")),
    ("ops", "yes", "root", ("sudo", "-n", "--")),
    ("ops", True, "app", ("sudo", "-n", "-u", "app", "--")),
    ("root", True, None, ()),
    ("ops", False, None, ()),
    ("ops", "no", None, ()),
])
def test_become_prefixes_sudo_only_when_the_user_differs(tmp_path, user, become, become_user,
                                                         prefix):
    hv = {"ansible_user": user, "ansible_become": become}
    if become_user:
        hv["ansible_become_user"] = become_user
    assert Settings.from_vars("h", hv, tmp_path).become_prefix == prefix


@pytest.mark.parametrize("var, value, message", [
    ("ansible_become", "maybe", "ansible_become: 'maybe' is not a boolean"),
    ("ansible_port", "ssh", "ansible_port 'ssh' is not a number"),
    ("edrfleet_host_key_policy", "yolo", "'yolo' is not strict or accept-new"),
    ("ansible_ssh_common_args", "-o 'ProxyCommand=nc", "balance the quotes"),
])
def test_bad_host_variables_fail_with_one_line_naming_host_and_variable(tmp_path, var, value,
                                                                        message):
    with pytest.raises(ValueError, match=message) as e:
        Settings.from_vars("web9", {var: value}, tmp_path)
    assert str(e.value).startswith("web9: ") and "\n" not in str(e.value)


@pytest.mark.parametrize("extra, message", [
    ({"ansible_become_method": "su"}, "ansible_become_method 'su': only sudo"),
    ({"ansible_become_password": "hunter2"}, "ansible_become_password is not used"),
    ({"ansible_become_pass": "hunter2"}, "ansible_become_pass is not used"),
])
def test_become_settings_sudo_n_would_ignore_are_refused(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_vars("h", {"ansible_become": True, "ansible_user": "ops", **extra},
                           tmp_path)
    # without become they change nothing, as in Ansible
    assert Settings.from_vars("h", {"ansible_user": "ops", **extra}, tmp_path).become_prefix == ()


@pytest.mark.parametrize("value, expected", [
    (True, True), ("True", True), ("on", True), ("1", True), (1, True),
    (False, False), ("off", False), ("0", False), (0, False), ("", False),
])
def test_ansible_booleans(value, expected):
    assert as_bool(value, host="h", var="v") is expected


@pytest.mark.parametrize("args, proxy", [
    ("", Proxy()),
    ("-o StrictHostKeyChecking=no -o ServerAliveInterval=5", Proxy()),
    ("-o ProxyCommand='ssh -W %h:%p bastion'", Proxy(command="ssh -W 10.0.0.5:2222 bastion")),
    ("-oProxyCommand=\"nc %h %p # %r %%\"", Proxy(command="nc 10.0.0.5 2222 # deploy %")),
    ("-o 'ProxyCommand nc %h %p'", Proxy(command="nc 10.0.0.5 2222")),
    ("-o ProxyCommand=none", Proxy()),
    ("-o ProxyJump=bastion", Proxy(jumps=(Hop("bastion", 22, "deploy"),))),
    ("-J admin@b1:2200,b2", Proxy(jumps=(Hop("b1", 2200, "admin"), Hop("b2", 22, "deploy")))),
    ("-Jb1", Proxy(jumps=(Hop("b1", 22, "deploy"),))),
    ("-o proxyjump=ssh://u@[fd00::1]:2022", Proxy(jumps=(Hop("fd00::1", 2022, "u"),))),
])
def test_proxy_arguments_are_parsed_like_ssh(args, proxy):
    assert parse_common_args(args, T, host="h") == proxy


def test_proxy_command_and_jump_together_are_refused():
    with pytest.raises(ValueError, match="both ProxyCommand and ProxyJump"):
        parse_common_args("-J b1 -o ProxyCommand='nc %h %p'", T, host="h")


def test_a_jump_without_host_is_refused():
    with pytest.raises(ValueError, match="empty host"):
        parse_jump("u@", default_user="x")




@pytest.mark.parametrize("host, user", [
    ("$(touch /tmp/x)10.0.0.5", "deploy"), ("10.0.0.5;id", "deploy"), ("a b", "deploy"),
    ("`id`", "deploy"), ("-oProxyCommand=x", "deploy"), ("10.0.0.5\nid", "deploy"),
    ("10.0.0.5", "u$(id)"), ("10.0.0.5", "u'x"), ("10.0.0.5", "u|x"),
])
def test_proxy_command_refuses_shell_metacharacters_in_h_and_r(host, user):
    # OpenSSH >= 9.6 refuses these names: the expanded command runs under sh -c
    with pytest.raises(ValueError, match="shell metacharacters"):
        parse_common_args("-o ProxyCommand='nc %h %p # %r'", Hop(host, 22, user), host="h")


def test_proxy_command_without_h_or_r_takes_any_name():
    assert parse_common_args("-o ProxyCommand='nc gw %p # %%h'", Hop("$(x)", 22, "u;v"),
                             host="h") == Proxy(command="nc gw 22 # %h")
    assert parse_common_args("-o ProxyCommand='nc %h %p'", Hop("fe80::1%eth0", 22, "u"),
                             host="h") == Proxy(command="nc fe80::1%eth0 22")


def test_certificate_file_comes_from_the_ssh_args_first_one_wins(tmp_path):
    assert Settings.from_vars("web1", {}, tmp_path).cert_file is None
    hv = {"ansible_ssh_common_args": "-o 'CertificateFile ~/a-cert.pub' -o CertificateFile=b",
          "ansible_ssh_extra_args": "-o CertificateFile=c"}
    s = Settings.from_vars("web1", hv, tmp_path)
    assert s.cert_file == str(Path.home() / "a-cert.pub")
