"""Inventory loading: the example fleet, merge rules, error messages (FILE:LINE and fix), speed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from edrfleet.cli.main import main
from edrfleet.fleet.deploy.render import render_policy
from edrfleet.fleet.inventory.load import Host, InventoryError, load_inventory
from edrfleet.policy import load_policy_text, reference_decide

EXAMPLE = Path(__file__).parents[4] / "inventories" / "example" / "inventory.yml"


def _no_stat(path: bytes):
    raise FileNotFoundError(path)


def write(tmp_path: Path, text: str, name: str = "inventory.yml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- the example fleet -------------------------------------------------------------------

def test_example_inventory_resolves_groups_connection_and_policy_vars() -> None:
    inv = load_inventory(EXAMPLE)
    assert list(inv.hosts) == [
        "bastion.example.net", "web01.example.net", "web02.example.net", "web03.example.net",
        "web04.example.net", "db1.example.net", "db2.example.net"]
    web01, db2, bastion = (inv.hosts[n] for n in
                           ("web01.example.net", "db2.example.net", "bastion.example.net"))
    assert web01.groups == ("all", "canary", "prod", "web")
    assert web01.vars["edrfleet_mode"] == "monitor"
    assert db2.vars["edrfleet_mode"] == "enforce"
    assert db2.vars["ansible_ssh_common_args"] == "-o ProxyJump=deploy@198.51.100.10:2222"
    assert "ansible_ssh_common_args" not in bastion.vars
    assert (bastion.vars["ansible_host"], bastion.vars["ansible_port"]) == ("198.51.100.10", 2222)
    assert [e["id"] for e in db2.vars["edrfleet_exceptions"]] == ["db2-scratch-wipe"]
    assert inv.warnings == []
    assert [h.name for h in inv.select("prod:!canary:&web")] == [
        "web02.example.net", "web03.example.net", "web04.example.net"]


def test_example_policies_render_and_validate_with_each_hosts_exceptions() -> None:
    inv = load_inventory(EXAMPLE)
    policies = {}
    for host in inv.hosts.values():
        text = render_policy(host.template_vars(), host=host.name)
        assert yaml.safe_load(text)["mode"] == host.vars["edrfleet_mode"]
        policies[host.name] = load_policy_text(text, f"{host.name}.yaml")

    def action(host: str, argv: list[str]) -> str:
        return reference_decide(policies[host], argv, stat=_no_stat).action

    wipe = ["mkfs.ext4", "/dev/vdc"]
    assert (action("db2.example.net", wipe), action("db1.example.net", wipe)) == ("allow", "block")
    cleanup = ["find", "/var/log/webapp", "-name", "*.gz", "-delete"]
    assert action("web01.example.net", cleanup) == "allow"
    assert action("db1.example.net", cleanup) != "allow"
    assert action("db1.example.net", ["python3", "-m", "http.server"]) == "allow"
    assert action("web02.example.net", ["python3", "-m", "http.server"]) != "allow"


def test_cli_prints_the_list_and_one_host(capsys) -> None:
    assert main(["inventory", str(EXAMPLE), "--limit", "db"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(doc["_meta"]["hostvars"]) == ["db1.example.net", "db2.example.net"]
    assert doc["db"] == {"hosts": ["db1.example.net", "db2.example.net"]}
    assert "web" not in doc and doc["prod"] == {"children": ["web", "db"]}
    assert main(["inventory", str(EXAMPLE), "--host", "web01.example.net"]) == 0
    assert json.loads(capsys.readouterr().out)["edrfleet_mode"] == "monitor"


def test_cli_prints_the_graph(capsys) -> None:
    assert main(["inventory", str(EXAMPLE), "--graph", "prod"]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == [
        "@prod:", "  |--@web:", "  |  |--web01.example.net"]
    assert main(["inventory", str(EXAMPLE), "--graph", "nosuch"]) == 2
    assert "--graph 'nosuch' is not a group" in capsys.readouterr().err


def test_cli_warns_about_a_name_that_matches_nothing(capsys) -> None:
    assert main(["inventory", str(EXAMPLE), "--limit", "db,dbz"]) == 0
    assert "edrfleet: warning: could not match supplied host pattern, ignoring: dbz" in \
        capsys.readouterr().err


def test_cli_maps_a_bad_limit_to_exit_2_with_the_pattern(capsys) -> None:
    assert main(["inventory", str(EXAMPLE), "--limit", "webz"]) == 2
    err = capsys.readouterr().err
    assert "--limit 'webz' matches no host" in err and "fix:" in err


# ---- merge rules -------------------------------------------------------------------------

def test_port_of_a_later_mention_is_ignored_and_explicit_port_wins(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, """
all:
  children:
    a:
      hosts:
        h1:2201:
        h2:2202:
          ansible_port: 22
    b:
      hosts:
        h1:2999:
"""))
    assert inv.hosts["h1"].vars == {"ansible_port": 2201}
    assert inv.hosts["h2"].vars == {"ansible_port": 22}


def test_host_is_hashable_and_template_vars_add_magic_names(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "g:\n  hosts:\n    web1.example.com:\n"))
    host = inv.hosts["web1.example.com"]
    assert isinstance(host, Host) and {host: 1}[host] == 1
    assert host.template_vars() == {"inventory_hostname": "web1.example.com",
                                    "inventory_hostname_short": "web1", "group_names": ["g"]}
    assert host.where.endswith("inventory.yml:3")


def test_warns_about_files_ansible_silently_ignores(tmp_path: Path) -> None:
    path = write(tmp_path, "web:\n  hosts:\n    w1:\n  vars:\n    mode: monitor\n")
    write(tmp_path, "x: 1\n", "group_vars/webservers.yml")
    write(tmp_path, "x: 1\n", "group_vars/web")
    write(tmp_path, "x: 2\n", "group_vars/web.yml")
    write(tmp_path, "mode: enforce\n", "group_vars/all.yml")
    write(tmp_path, "x: 1\n", "host_vars/w2.yml")
    warnings = "\n".join(load_inventory(path).warnings)
    assert "group_vars/webservers.yml: no group is named 'webservers'" in warnings
    assert "group_vars/web.yml: not read, 'web' is read instead" in warnings
    assert "host_vars/w2.yml: no host is named 'w2'" in warnings
    assert "inventory.yml:5: 'mode' of group 'web' is overridden by group_vars/all" in warnings


def test_known_vars_accept_templates_and_ansible_booleans(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, """
all:
  hosts:
    w1:
      ansible_port: "{{ lookup('env', 'PORT') }}"
      ansible_become: "yes"
      vars:
        x: 1
"""))
    assert inv.hosts["w1"].vars["ansible_become"] == "yes"
    assert inv.warnings == [f"{tmp_path / 'inventory.yml'}:7: host 'w1' has a variable named "
                            "'vars', which Ansible takes as a plain variable (write the host's "
                            "variables directly under the host)"]


def test_thousand_hosts_load_well_under_a_second(tmp_path: Path) -> None:
    lines = ["all:", "  vars: {edrfleet_mode: enforce}", "  children:"]
    for g in range(10):
        lines += [f"    g{g}:", "      vars:", f"        rack: {g}", "      hosts:"]
        lines += [f"        h{g}-{i:03d}:\n          ansible_host: 10.0.{g}.{i}"
                  for i in range(100)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    for i in range(0, 1000, 10):
        write(tmp_path, f"note: {i}\n", f"host_vars/h{i // 100}-{i % 100:03d}.yml")
    start = time.process_time()  # CPU time: steadier than wall time on a shared machine
    inv = load_inventory(path)
    elapsed = time.process_time() - start
    assert len(inv.hosts) == 1000 and inv.hosts["h3-040"].vars["note"] == 340
    assert len(inv.select("g1:g2:!h1-00*")) == 190
    assert elapsed < 0.5, f"1000 hosts took {elapsed:.2f} s of CPU"


# ---- errors: FILE:LINE: what (fix: ...) --------------------------------------------------

ERRORS = [
    ("all:\n  hosts:\n\tweb1:\n", 3, "YAML syntax error", "indent with spaces"),
    ("", 1, "the inventory is empty", "start with 'all:'"),
    ("- web1\n- web2\n", 1, "must be a mapping of group names, not a list", "all:"),
    ("all:\n  hosts:\n    - web1\n", 2, "'hosts' of group 'all' must be a mapping, not a list",
     "one per line: 'web1:'"),
    ("all:\n  host:\n    web1:\n", 2, "unknown key 'host' in group 'all'", "did you mean 'hosts'"),
    ("web:\n  vars:\n    a: 1\n  web1:\n", 4, "unknown key 'web1' in group 'web'",
     "host variables under the host"),
    ("all:\n  hosts:\n    web[1:a]:\n", 3, "host range 'web[1:a]'", "web[01:20]"),
    ("all:\n  hosts:\n    web[5:1]:\n", 3, "must have begin <= end", "web[01:20]"),
    ("all:\n  hosts:\n    web[01:100]:\n", 3, "same number of digits", "web[01:20]"),
    ("all:\n  hosts:\n    web[1:5:0]:\n", 3, "step of 1 or more", "web[01:20]"),
    ("all:\n  hosts:\n    'web[1:5':\n", 3, "without a closing ']'", "web[01:20]"),
    ("all:\n  hosts:\n    web[1]:\n", 3, "must be [begin:end]", "web[01:20]"),
    ("web:\n  hosts:\n    db:\ndb:\n  hosts:\n    d1:\n", 3, "'db' is both a host and a group",
     "rename"),
    ("a:\n  children:\n    b:\n      children:\n        a:\n", 3, "makes a loop of children",
     "remove 'b' from the children of 'a'"),
    ("all:\n  hosts:\n    w1:\n    w1:\n", 4, "key 'w1' is written twice", "keep one"),
    ("all:\n  hosts:\n    1:\n", 3, "host 1 in group 'all' is not a string", "quote it"),
    ("all:\n  hosts:\n    w1: down\n", 3, "variables of host 'w1' must be a mapping",
     "'name: value' lines"),
    ("web: [w1, w2]\n", 1, "group 'web' must be a mapping with hosts/children/vars, not a list",
     "'hosts:' indented"),
    ("web:\n  vars:\n    ansible_group_priority: high\n", 3,
     "ansible_group_priority of group 'web' must be a whole number", "ansible_group_priority: 10"),
    ("hosts:\n  web1:\n", 1, "'hosts' at the top level", "under a group"),
    ("plugin: aws_ec2\n", 0, "ansible-inventory", "ansible-inventory -i"),
    ("[web]\nweb1 ansible_host=1.2.3.4\nweb2 ansible_port\n", 3,
     "expected key=value after the host name, got 'ansible_port'", "web2 ansible_host="),
    ("web:\n  children:\n    all:\n", 3, "group 'all' cannot be a child", "remove it"),
    ("all:\n  vars:\n    pw: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n", 3, "Ansible Vault",
     "decrypt"),
    ("all:\n  vars:\n    a: {b: 1\n", 4, "YAML syntax error", "check"),
    ("all:\n  hosts:\n    w1:\n      ansible_port: ssh\n", 4,
     "ansible_port of host 'w1' must be a port number (1-65535), not 'ssh'", "ansible_port: 2222"),
    ("web:\n  vars:\n    edrfleet_mode: monitoring\n", 3,
     "edrfleet_mode of group 'web' must be enforce or monitor", "edrfleet_mode: monitor"),
    ("web:\n  vars:\n    edrfleet_install_packages: 'no'\n", 3,
     "edrfleet_install_packages of group 'web' must be true or false", "true"),
    ("web:\n  vars:\n    edrfleet_exceptions: {id: x}\n", 3,
     "edrfleet_exceptions of group 'web' must be a list", "[{id: ...}]"),
]


@pytest.mark.parametrize(("text", "line", "what", "fix"), ERRORS,
                         ids=[e[2][:40] for e in ERRORS])
def test_error_names_file_line_and_fix(tmp_path: Path, text: str, line: int, what: str,
                                       fix: str) -> None:
    path = write(tmp_path, text, "hosts" if text.startswith("[") else "inventory.yml")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: " if line else f"{path}: "), message
    assert what in message
    assert "(fix: " in message and fix in message.split("(fix: ", 1)[1], message
    assert "\n" not in message


@pytest.mark.parametrize(("name", "text", "line", "what"), [
    ("group_vars/web.yml", "- a\n- b\n", 1, "must be a mapping of variable names, not a list"),
    ("group_vars/web/10.yml", "a: [1\n", 2, "YAML syntax error"),
    ("host_vars/w1", "a: 1\na: 2\n", 2, "key 'a' is written twice"),
    ("group_vars/all.yml", b"a: \xff\n", 1, "not UTF-8"),
    ("group_vars/web/20.yml", "x: 1\nedrfleet_host_key_policy: yes\n", 2,
     "edrfleet_host_key_policy of group_vars/web/20.yml must be strict or accept-new, not True"),
])
def test_vars_file_errors_name_that_file(tmp_path: Path, name: str, text: str | bytes,
                                         line: int, what: str) -> None:
    path = write(tmp_path, "web:\n  hosts:\n    w1:\n")
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value).startswith(f"{target}:{line}: ") and what in str(caught.value)
    assert "(fix: " in str(caught.value)


def test_empty_directory_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# ignored, as Ansible ignores *.md\n")
    with pytest.raises(InventoryError, match=r"no inventory source in it could be read"):
        load_inventory(tmp_path)
    with pytest.raises(InventoryError, match=r"nope.yml: no such file or directory \(fix: "):
        load_inventory(tmp_path / "nope.yml")
