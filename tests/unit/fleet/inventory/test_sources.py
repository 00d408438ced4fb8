"""Inventory sources that cannot be read: one line naming the file (and line) and the fix.

Also what is skipped with a warning instead (as Ansible skips it), the plugin path when
ansible-core is missing, and edrfleet's own INI value rules.
"""

from __future__ import annotations

import doctest
import importlib
import json
import shlex
import stat
from pathlib import Path

import pytest

from edrfleet.cli.main import main
from edrfleet.fleet.inventory import plugin, sources
from edrfleet.fleet.inventory.data import InventoryData
from edrfleet.fleet.inventory.ini import literal
from edrfleet.fleet.inventory.ini import split_host_line as ini_split
from edrfleet.fleet.inventory.load import InventoryError, load_inventory
from edrfleet.fleet.inventory.script import read_script
from edrfleet.fleet.inventory.yaml_lines import Unsafe

DATA = Path(__file__).parents[2] / "data" / "inventories"


def write(path: Path, text: str, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def one_line_error(source: Path | str) -> str:
    with pytest.raises(InventoryError) as caught:
        load_inventory(source)
    message = str(caught.value)
    assert "\n" not in message and "(fix: " in message, message
    return message


@pytest.mark.parametrize(("text", "line", "what"), [
    ("[web]\nweb1\nweb2 ansible_port\n", 3, "expected key=value after the host name"),
    ("[web]\nweb1 x='unclosed\n", 2, "No closing quotation"),
    ("[web:kids]\nweb1\n", 1, "has an unknown type 'kids'"),
    ("[web]\n[ bad section ]\n", 2, "invalid section"),
    ("[web:vars]\nx=1\n", 1, "section [web:vars] is for a group that is never declared"),
    ("[prod:children]\nweb\n", 2, "names group 'web', which is never declared"),
    ("[web]\nweb1:\n", 2, "ends in ':'"),
    ("[web]\nweb[3:1]\n", 2, "host range 'web[3:1]'"),
    ("[web]\n---\n", 2, "looks like a YAML file"),
    ("[web:vars]\nnovalue\n[web]\n", 2, "expected key=value in [web:vars]"),
    ("[web]\nw1 ansible_port=ssh\n", 2, "ansible_port of host 'w1' must be a port number"),
    ("[web]\nw1\n[web:vars]\nedrfleet_mode=monitoring\n", 4,
     "edrfleet_mode of group 'web' must be enforce or monitor"),
    ("[a:children]\nb\n[b:children]\na\n", 4, "makes a loop of children"),
])
def test_a_broken_ini_line_names_file_and_line(tmp_path: Path, text: str, line: int,
                                               what: str) -> None:
    path = write(tmp_path / "hosts", text)
    message = one_line_error(path)
    assert message.startswith(f"{path}:{line}: ") and what in message, message


@pytest.mark.parametrize(("text", "what"), [
    ("[web\n", "TOML syntax error"),
    ("", "the inventory is empty"),
    ('plugin = "constructed"\n', "plugin configuration, not a TOML inventory"),
    ("[web]\nhosts = [\"a\"]\n", "'hosts' of group 'web' must be a table"),
    ("[web.hosts]\na = 1\n", "host 'a' of group 'web' must be a table of variables"),
    ("[web.hosts]\na = { ansible_port = 0 }\n", "ansible_port of host 'a' must be a port"),
])
def test_a_broken_toml_inventory_names_the_file(tmp_path: Path, text: str, what: str) -> None:
    path = write(tmp_path / "hosts.toml", text)
    message = one_line_error(path)
    assert message.startswith(f"{path}") and what in message, message


def test_ini_booleans_are_words_as_in_ansible(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts", "[web]\nw1 edrfleet_install_packages=true\n")
    assert load_inventory(path).hosts["w1"].vars["edrfleet_install_packages"] == "true"


@pytest.mark.parametrize(("text", "value"), [
    ("80", 80), ("'80'", "80"), ("[1, 'a']", [1, "a"]), ("(1, 2)", [1, 2]), ("{1, 1}", [1]),
    ("{'a': (1,)}", {"a": [1]}), ("True", True), ("true", "true"), ("None", None),
    ("...", "..."), ("1j", "1j"), ("b'x'", "x"), ("set()", []), ("hello world", "hello world"),
    ("1 # c", 1), ("x # c", "x # c"), ("", ""), ("1e3", 1000.0), ("0x10", 16),
])
def test_ini_values_are_python_literals_or_text(text: str, value: object) -> None:
    assert literal(text) == value


def test_ini_bytes_are_unsafe_text_as_ansible_shows_them() -> None:
    assert isinstance(literal("b'{{ x }}'"), Unsafe) and not isinstance(literal("'x'"), Unsafe)


def test_an_ini_file_named_yml_is_read_as_ini_like_ansible(tmp_path: Path) -> None:
    path = write(tmp_path / "inventory.yml", "[web]\nw1 x=1\n")
    assert load_inventory(path).hosts["w1"].vars == {"x": 1}


def script(tmp_path: Path, body: str, name: str = "inv.py") -> Path:
    return write(tmp_path / name, f"#!/bin/sh\n{body}\n", executable=True)


@pytest.mark.parametrize(("body", "what"), [
    ("echo 'cannot reach the CMDB' >&2; exit 3",
     "failed (exit status 3): cannot reach the CMDB"),
    ("echo 'not json at all'", "printed something that is not JSON (Expecting value at line 1"),
    ("echo '[1, 2]'", "the inventory JSON is a list, not an object of groups"),
    ("echo '{\"web\": {\"hosts\": \"w1\"}}'", "'web.hosts' of the inventory JSON is a string"),
    ("echo '{\"_meta\": {\"hostvars\": []}}'", "'_meta.hostvars' of the inventory JSON"),
    ("kill -9 $$", "failed (signal 9)"),
    ("echo '{\"g\": {\"hosts\": [\"h\"], \"vars\": {\"ansible_port\": \"ssh\"}}}'",
     "ansible_port of group 'g' must be a port number"),
    ("printf ''", "printed nothing"),
])
def test_a_failing_script_names_itself_and_what_it_said(tmp_path: Path, body: str,
                                                        what: str) -> None:
    path = script(tmp_path, body)
    message = one_line_error(path)
    assert message.startswith(f"{path}: inventory script") and what in message, message
    fix = message.split("(fix: ", 1)[1]
    assert fix.startswith((f"run '{path} --list' by hand", "print ", "write e.g.")), message


def test_a_script_that_hangs_is_ended_after_its_timeout(tmp_path: Path) -> None:
    path = script(tmp_path, "sleep 30")
    inv = InventoryData()
    inv.source = str(path)
    with pytest.raises(InventoryError, match=r"did not finish in 0 s"):
        read_script(inv, str(path), timeout=0.3)


def test_a_script_without_meta_is_asked_for_each_host(tmp_path: Path) -> None:
    path = script(tmp_path, 'if [ "$1" = --list ]; then echo \'{"g": ["h1", "h2"]}\'; '
                  'else echo "{\\"me\\": \\"$2\\"}"; fi')
    inv = load_inventory(path)
    assert {n: h.vars for n, h in inv.hosts.items()} == {"h1": {"me": "h1"}, "h2": {"me": "h2"}}
    assert any("no '_meta.hostvars'" in w for w in inv.warnings)


def test_a_file_no_plugin_reads_is_skipped_in_a_directory_with_a_warning(tmp_path: Path) -> None:
    write(tmp_path / "10-good", "[web]\nw1\n")
    bad = write(tmp_path / "20-bad", "[db]\ndb1 broken\n")
    write(tmp_path / "30-also-good.yml", "db:\n  hosts:\n    db2:\n")
    inv = load_inventory(tmp_path)
    assert list(inv.hosts) == ["w1", "db2"]
    assert [w for w in inv.warnings if w.startswith(f"{bad}:2: expected key=value")]
    one_line_error(bad)  # given alone, the same file is an error


def test_ignored_names_in_a_directory(tmp_path: Path) -> None:
    for name in ["a.md", "b.txt", "c.bak", "d~", "e.cfg", "f.retry", "g.orig", ".h",
                 "group_vars", "host_vars", "vars_plugins"]:
        write(tmp_path / name, "[ignored]\nnobody\n") if "vars" not in name else \
            write(tmp_path / name / "x.yml", "a: 1\n")
    write(tmp_path / "z.ini", "[kept]\nsomebody\n")
    assert list(load_inventory(tmp_path).hosts) == ["somebody"]


def test_plugin_configuration_without_ansible_core_says_what_to_install(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(plugin, "find_ansible_inventory", lambda: None)
    path = write(tmp_path / "aws_ec2.yml", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n")
    message = one_line_error(path)
    assert message.startswith(f"{path}: the inventory plugin 'amazon.aws.aws_ec2' is read by "
                              "ansible-core, which is not installed"), message
    assert "pip install ansible-core" in message


def test_a_plugin_file_not_named_yml_is_not_a_plugin_configuration(tmp_path: Path) -> None:
    path = write(tmp_path / "aws_ec2.json", '{"plugin": "amazon.aws.aws_ec2"}')
    message = one_line_error(path)
    assert "inventory plugin configuration, not a YAML inventory" in message
    assert "name it *.yml or *.yaml" in message


def test_host_list_and_its_ports() -> None:
    inv = load_inventory("web1, db1:2222 ,[fe80::1]:22,web[1:2],")
    assert {n: h.vars for n, h in inv.hosts.items()} == {
        "web1": {}, "db1": {"ansible_port": 2222}, "fe80::1": {"ansible_port": 22},
        "web[1:2]": {}}
    assert inv.base_dir == Path.cwd()


def test_a_path_without_a_comma_that_does_not_exist(tmp_path: Path) -> None:
    message = one_line_error(tmp_path / "hosts")
    assert "no such file or directory" in message and "'host1,host2,'" in message


def test_base_dir_of_a_directory_is_the_directory() -> None:
    assert load_inventory(DATA / "dir_mixed").base_dir == DATA / "dir_mixed"
    assert load_inventory(DATA / "ini_rules" / "hosts").base_dir == \
        (DATA / "ini_rules").resolve()


def test_source_list_order_and_kinds() -> None:
    assert sources.source_list(Path("a")) == ["a"]
    assert sources.source_list(["a", Path("b"), "", "c,d"]) == ["a", "b", "c,d"]


def test_cli_prints_odd_keys_without_crashing(capsys) -> None:
    # Ansible's own test inventory has an integer dict key; json.dump(sort_keys=True) would
    # fail on mixed key types if they were not made strings as ansible-inventory's JSON does.
    assert main(["inventory", str(DATA / "odd_keys" / "inventory.yml")]) == 0
    out, err = capsys.readouterr()
    hostvars = json.loads(out)["_meta"]["hostvars"]["h1"]
    assert hostvars["x"] == {"0": 2, "a": 1} and hostvars["7.2"] == "seven"
    assert "accepting inventory variable with invalid name 7.2" in err
    assert main(["inventory", str(DATA / "odd_keys" / "inventory.yml"), "--host", "h1"]) == 0
    assert json.loads(capsys.readouterr().out)["9"] == "nine"


def test_cli_reads_an_ini_inventory_and_a_directory(capsys) -> None:
    assert main(["inventory", str(DATA / "ini_rules" / "hosts"), "--graph", "prod"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["@prod:", "  |--@web:"]
    assert main(["inventory", str(DATA / "dir_mixed"), "--limit", "cache"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"] == {"hosts": ["cache1", "cache2"]}


@pytest.mark.parametrize("name", ["ini", "toml", "load", "hostrange", "patterns", "checks",
                                  "yaml_lines"])
def test_the_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(f"edrfleet.fleet.inventory.{name}"))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("line", [
    "web1 a=1 b=2", "web1\ta=1  \t b=x\r", "web1 a=\u00a0b", "web1 a='x y' b=\"z\"",
    "web1 a=1 # c", "web1 a=x\\ y", "w[1:3]:22 k=[1,2]", "web1 a=b#c"])
def test_the_fast_host_line_split_is_shlexs(line: str) -> None:
    assert ini_split(line) == shlex.split(line, comments=True)
