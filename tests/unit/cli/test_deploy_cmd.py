"""The fleet commands' parsing and one-line errors (no host is contacted here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edrfleet.cli.main import main

INVENTORY = """all:
  hosts:
    web1:
      ansible_host: 127.0.0.1
      edrfleet_mode: monitor
    web2:
      edrfleet_extra_rules:
        - {id: bad-regex, description: x, severity: low, action: block,
           match: {executable: [rm], args: [{regex: '(x'}]}}
"""


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = tmp_path / "inventory.yml"
    p.write_text(INVENTORY)
    return p


def test_policy_render_prints_the_hosts_policy(inventory: Path, capsys) -> None:
    assert main(["policy", "render", str(inventory), "web1", "--no-facts"]) == 0
    out, err = capsys.readouterr()
    assert "\nversion: 1\nmode: monitor\n" in out
    assert err.startswith("web1: ") and "sha256" in err


def test_policy_render_of_a_bad_host_is_one_line_naming_host_rule_and_fix(inventory: Path,
                                                                          capsys) -> None:
    assert main(["policy", "render", str(inventory), "web2", "--no-facts"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "host web2:" in err[0] and "rule 'bad-regex'" in err[0]
    assert "(fix:" in err[0]


def test_policy_render_of_an_unknown_host_names_the_hosts(inventory: Path, capsys) -> None:
    assert main(["policy", "render", str(inventory), "db9", "--no-facts"]) == 2
    assert "no host 'db9' (fix: one of web1, web2)" in capsys.readouterr().err


@pytest.mark.parametrize("serial", ["0", "abc", "200%"])
def test_a_bad_serial_is_a_usage_error(inventory: Path, serial: str, capsys) -> None:
    assert main(["deploy", str(inventory), "--serial", serial]) == 2
    assert "--serial" in capsys.readouterr().err


def test_a_limit_matching_nothing_is_a_usage_error(inventory: Path, capsys) -> None:
    assert main(["deploy", str(inventory), "--limit", "nomatch"]) == 2
    assert "nomatch" in capsys.readouterr().err


def test_recap_names_every_host_and_its_result() -> None:
    import io

    from rich.console import Console

    from edrfleet.cli.deploy_cmd import LiveProgress, print_recap
    from edrfleet.fleet.deploy.results import HostResult

    buf = io.StringIO()
    con = Console(file=buf, width=160)
    with LiveProgress(con, 2, "deploy") as live:  # quiet when not a terminal
        live.event("web1", "facts")
        live.event("web1", "done")
    print_recap(con, [HostResult("web1", "changed", "policy -> abc", seconds=1.5),
                      HostResult("db1", "unreachable", "connection refused")])
    text = buf.getvalue()
    assert "web1" in text and "changed" in text and "policy -> abc" in text
    assert "db1" in text and "unreachable" in text and "connection refused" in text
    assert live.active == {}


UNREACHABLE = """all:
  hosts:
    web1:
      ansible_host: 127.0.0.1
      ansible_port: 1
"""


def test_policy_render_of_an_unreachable_host_is_a_host_failure(tmp_path: Path,
                                                                 capsys) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(UNREACHABLE)  # nothing listens on port 1: refused at once
    assert main(["policy", "render", str(inventory), "web1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edrfleet: error: web1: cannot connect")


def test_policy_render_whose_facts_command_fails_is_one_line_not_a_traceback(
        inventory: Path, monkeypatch, capsys) -> None:
    from edrfleet.fleet.deploy import preview
    from edrfleet.fleet.transport.base import RemoteError

    def fail(host, inventory_dir, connect_timeout=10.0):
        raise RemoteError(host.name, "python3 - (facts)", 127, b"python3: not found")

    monkeypatch.setattr(preview, "host_facts", fail)
    assert main(["policy", "render", str(inventory), "web1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edrfleet: error: web1: python3 - (facts) exited 127: python3: not found"]
