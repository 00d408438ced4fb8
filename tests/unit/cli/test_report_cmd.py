"""`edrfleet report`: arguments, output file, exit status with a host that cannot be pulled."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from edrfleet.cli.main import main
from tests.unit.helpers.postgres_server import empty_store, postgres_server
from tests.unit.helpers.report_helpers import event, store_with

__all__ = ["postgres_server"]  # the fixture


def closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inventory.yml"
    inv.write_text(f"""all:
  children:
    web:
      hosts:
        web1:
          ansible_host: 127.0.0.1
          ansible_port: {closed_port()}
        web2:
          ansible_host: 127.0.0.1
          ansible_port: {closed_port()}
""")
    return inv


def test_no_pull_prints_the_stored_summary(inventory, tmp_path, capsys) -> None:
    store_with(tmp_path, {"web1": [event("a"), event("b", action="logged")]}).close()
    rc = main(["report", str(inventory), "--db", str(tmp_path / "report.db"), "--no-pull",
               "--format", "json", "--limit", "web1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in out["hosts"]] == ["web1"]
    assert out["totals"]["blocked"] == 1 and out["hosts"][0]["pull"] == "skipped"


def test_db_takes_a_postgresql_uri(inventory, postgres_server, capsys) -> None:
    db = empty_store(postgres_server)
    store_with(db, {"web1": [event("a"), event("b", action="logged")]}).close()
    rc = main(["report", str(inventory), "--db", db, "--no-pull", "--format", "json",
               "--limit", "web1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["db"] == db and out["totals"]["blocked"] == 1


def test_an_unreachable_postgresql_is_one_line_and_exit_2(inventory, tmp_path, capsys):
    rc = main(["report", str(inventory), "--db",
               f"postgresql://me:s3cret@/r?host={tmp_path}&port=1", "--no-pull"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot connect" in err and "s3cret" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unpullable_host_exits_1_names_it_and_still_writes_the_report(inventory, tmp_path,
                                                                        capsys) -> None:
    store_with(tmp_path, {"web1": [event("a")]}).close()
    out = tmp_path / "out" / "report.html"
    rc = main(["report", str(inventory), "--db", str(tmp_path / "report.db"), "--format",
               "html", "-o", str(out), "--limit", "web2", "--since", "3650d"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "edrfleet: web2: not pulled: Unreachable" in err
    assert "Not pulled: web2" in out.read_text()


def test_bad_since_is_one_line_and_exit_2(inventory, tmp_path, capsys) -> None:
    rc = main(["report", str(inventory), "--db", str(tmp_path / "r.db"), "--since", "soon"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--since 'soon'" in err[0]


def test_a_bad_pattern_is_exit_2(inventory, tmp_path, capsys) -> None:
    rc = main(["report", str(inventory), "--db", str(tmp_path / "r.db"), "--limit", "~web(",
               "--no-pull"])
    assert rc == 2 and "error" in capsys.readouterr().err


def test_csv_section_picks_one_table(inventory, tmp_path, capsys) -> None:
    store_with(tmp_path, {"web1": [event("a"), event("b", action="would_block")]}).close()
    db = str(tmp_path / "report.db")
    rc = main(["report", str(inventory), "--db", db, "--no-pull", "--format", "csv",
               "--section", "top"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and out[0].startswith("action,rule,count")
    assert [x.split(",")[0] for x in out[1:]] == ["blocked", "would_block"]
    rc = main(["report", str(inventory), "--db", db, "--no-pull", "--format", "json",
               "--section", "top"])
    err = capsys.readouterr().err
    assert rc == 2 and "--section" in err and "--format csv" in err


def test_html_lists_the_events(inventory, tmp_path, capsys) -> None:
    store_with(tmp_path, {"web1": [event("a", cmd="rm -rf /srv/x",
                                         fields={"user.name": "alice"})]}).close()
    out = tmp_path / "r.html"
    rc = main(["report", str(inventory), "--db", str(tmp_path / "report.db"), "--no-pull",
               "--format", "html", "-o", str(out)])
    html = out.read_text()
    assert rc == 0 and "Newest events" in html and "alice" in html
    assert '<section class="host"><h3>web1</h3>' in html
