"""The command line an Ansible user expects: -i/-l everywhere, ansible.cfg's inventory, forks
and timeout from the config, --forks 0 refused, edrfleet config (no host is contacted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edrfleet.cli.main import main

INVENTORY = """all:
  hosts:
    web1:
      ansible_host: 127.0.0.1
    web2:
      edrfleet_mdoe: monitor
      edrfleet_disabled_rules: [rm-recursive-roto]
"""


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = tmp_path / "inventory.yml"
    p.write_text(INVENTORY)
    return p


def _hosts_listed(capsys) -> list[str]:
    doc = json.loads(capsys.readouterr().out)
    return sorted({h for name, g in doc.items() if name != "_meta" for h in g.get("hosts", [])})


def test_dash_i_is_the_positional_inventory(inventory: Path, capsys) -> None:
    assert main(["inventory", str(inventory)]) == 0
    positional = capsys.readouterr().out
    assert main(["inventory", "-i", str(inventory)]) == 0
    assert capsys.readouterr().out == positional
    assert main(["inventory", "--inventory", str(inventory), "-l", "web2"]) == 0
    assert _hosts_listed(capsys) == ["web2"]


def test_without_an_inventory_ansible_cfgs_is_used(inventory: Path, tmp_path: Path,
                                                   monkeypatch, capsys) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "ansible.cfg").write_text("[defaults]\ninventory = ../inventory.yml\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(conf / "ansible.cfg"))
    assert main(["inventory", "-l", "web1"]) == 0  # relative to the file's directory
    assert _hosts_listed(capsys) == ["web1"]
    monkeypatch.setenv("ANSIBLE_INVENTORY", str(inventory))
    assert main(["inventory"]) == 0
    assert _hosts_listed(capsys) == ["web1", "web2"]


def test_no_inventory_anywhere_is_one_line_naming_the_ways_to_give_one(capsys) -> None:
    assert main(["deploy", "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no inventory given" in err[0] and "ansible.cfg" in err[0]


def test_several_sources_are_read_together_as_ansible_reads_them(inventory: Path,
                                                                 tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:
    other = tmp_path / "more"
    other.mkdir()
    (other / "db.ini").write_text("[db]\ndb1 ansible_host=10.0.0.9\n")
    assert main(["inventory", str(inventory), "-i", str(other / "db.ini")]) == 0
    assert _hosts_listed(capsys) == ["db1", "web1", "web2"]
    assert main(["inventory", "-i", "h1,h2,", "-i", str(inventory), "-l", "h*"]) == 0
    assert _hosts_listed(capsys) == ["h1", "h2"]
    (tmp_path / "ansible.cfg").write_text(f"[defaults]\ninventory = inventory.yml, "
                                          f"{other / 'db.ini'}\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "ansible.cfg"))
    assert main(["inventory"]) == 0
    assert _hosts_listed(capsys) == ["db1", "web1", "web2"]


@pytest.mark.parametrize("argv, env, where", [
    (["--forks", "0"], {}, "--forks 0"),
    (["-f", "-3"], {}, "--forks -3"),
    ([], {"ANSIBLE_FORKS": "0"}, "ANSIBLE_FORKS 0"),
])
def test_forks_below_one_is_a_one_line_usage_error(inventory: Path, monkeypatch, capsys, argv,
                                                   env, where) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["deploy", str(inventory), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and where in err[0] and "(fix: 1 or more)" in err[0]


def test_report_takes_dash_l_and_dash_i(inventory: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "r.db"
    assert main(["report", "-i", str(inventory), "-l", "web1", "--no-pull", "--db", str(db),
                 "--format", "json"]) == 0
    assert main(["report", "-l", "nomatch", "-i", str(inventory), "--no-pull",
                 "--db", str(db)]) == 2
    assert "nomatch" in capsys.readouterr().err


def test_forks_and_timeout_come_from_the_config_and_the_flag_wins(inventory: Path,
                                                                  monkeypatch) -> None:
    from edrfleet.fleet.deploy import deployer

    seen = []

    def fake_deploy(inv, limit, opts, **kw):
        seen.append((opts.forks, opts.connect_timeout))
        return deployer.DeployReport([], 0.0)

    monkeypatch.setattr(deployer, "deploy", fake_deploy)
    monkeypatch.setenv("ANSIBLE_FORKS", "3")
    monkeypatch.setenv("ANSIBLE_TIMEOUT", "4")
    assert main(["deploy", str(inventory)]) == 0
    assert main(["deploy", str(inventory), "-f", "9", "--connect-timeout", "2"]) == 0
    assert seen == [(3, 4.0), (9, 2.0)]


def test_deploy_warns_of_variable_and_rule_id_typos(inventory: Path, monkeypatch,
                                                    capsys) -> None:
    from edrfleet.fleet.deploy import deployer

    monkeypatch.setattr(deployer, "deploy", lambda *a, **k: deployer.DeployReport([], 0.0))
    assert main(["deploy", str(inventory)]) == 0
    err = capsys.readouterr().err
    assert "web2: unknown variable edrfleet_mdoe (it is ignored); did you mean " \
           "edrfleet_mode?" in err
    assert "no rule has the id 'rm-recursive-roto'" in err
    assert "did you mean rm-recursive-root?" in err
    assert "web1:" not in err


def test_ctrl_c_says_what_was_interrupted(inventory: Path, monkeypatch, capsys) -> None:
    from edrfleet.fleet.deploy import deployer

    def interrupted(inv, limit, opts, on_event, **kw):
        on_event("web1", "facts")
        on_event("web1", "policy")
        on_event("web1", "apply")
        raise KeyboardInterrupt

    monkeypatch.setattr(deployer, "deploy", interrupted)
    assert main(["deploy", str(inventory)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("edrfleet: interrupted: deploy stopped with 0 of 2 hosts done; in "
                       "flight, let finish that step so that none is left half-applied: web1 "
                       "(apply); 1 more not done (edrfleet status shows each host; run it "
                       "again to finish)")


def test_config_shows_each_setting_and_where_it_came_from(tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults]\nremote_user = deployer\nforks = 7\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "ansible.cfg"))
    monkeypatch.setenv("ANSIBLE_FORKS", "9")
    assert main(["config", "--only-changed"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"CONFIG_FILE() = {tmp_path / 'ansible.cfg'}",
        "forks(env: ANSIBLE_FORKS) = 9",
        f"remote_user({tmp_path / 'ansible.cfg'}) = deployer"]
    assert main(["config", "--format", "json"]) == 0
    doc = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert doc["forks"]["ansible"] == "DEFAULT_FORKS" and doc["forks"]["value"] == 9
    assert doc["timeout"]["origin"] == "default" and doc["timeout"]["value"] == 10


def test_config_for_a_host_shows_its_variables_above_the_config(inventory: Path, tmp_path: Path,
                                                                monkeypatch, capsys) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults]\nremote_user = deployer\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "ansible.cfg"))
    inventory.write_text(INVENTORY.replace("ansible_host: 127.0.0.1",
                                           "ansible_user: ops"))
    assert main(["config", "-i", str(inventory), "--host", "web1", "--only-changed"]) == 0
    assert "remote_user(var: ansible_user) = ops" in capsys.readouterr().out
    assert main(["config", "-i", str(inventory), "--host", "web2", "--only-changed"]) == 0
    assert f"remote_user({tmp_path / 'ansible.cfg'}) = deployer" in capsys.readouterr().out


def test_a_broken_ansible_cfg_is_one_line_exit_2(tmp_path: Path, inventory: Path, monkeypatch,
                                                 capsys) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults]\ntimeout = soon\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "ansible.cfg"))
    assert main(["status", str(inventory)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "timeout" in err[0] and "'soon' is not an integer" in err[0]


def test_policy_render_takes_dash_i_before_or_after_the_host(inventory: Path, capsys) -> None:
    assert main(["policy", "render", str(inventory), "web1", "--no-facts"]) == 0
    positional = capsys.readouterr().out
    assert main(["policy", "render", "-i", str(inventory), "web1", "--no-facts"]) == 0
    assert capsys.readouterr().out == positional
    assert main(["policy", "render", "web1", "--no-facts", "-i", str(inventory)]) == 0
    assert capsys.readouterr().out == positional


def test_a_broken_ansible_cfg_stops_before_any_host_even_with_every_flag_given(
        tmp_path: Path, inventory: Path, monkeypatch, capsys) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "ansible.cfg"))
    assert main(["uninstall", "-i", str(inventory), "-f", "2", "--connect-timeout", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ansible.cfg" in err[0] and "(fix: the INI syntax" in err[0]
