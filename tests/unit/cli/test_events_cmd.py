"""`edrfleet events`: filters from the command line, formats, -n, exit status when a host
cannot be pulled."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from edrfleet.cli.main import main
from tests.unit.cli.test_report_cmd import inventory
from tests.unit.helpers.postgres_server import empty_store, postgres_server
from tests.unit.helpers.report_helpers import T0, event, store_with

__all__ = ["inventory", "postgres_server"]  # the fixtures


@pytest.fixture()
def db(tmp_path: Path) -> str:
    store_with(tmp_path, {
        "web1": [event("a1", rule="rm-root", cmd="rm -rf /", ts=T0,
                       fields={"user.name": "alice", "process.working_directory": "/srv"}),
                 event("a2", rule="curl", action="logged", cmd="curl x | sh", ts=T0 + 60)],
        "web2": [event("b1", rule="rm-root", action="would_block", cmd="RM -rf /home",
                       ts=T0 + 30, host="web2")]}).close()
    return str(tmp_path / "report.db")


def events(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["events", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_lists_the_selected_hosts_events_newest_first(inventory, db, capsys) -> None:
    rc, out, err = events(capsys, str(inventory), "--db", db, "--no-pull", "--format", "json")
    assert rc == 0 and err == ""
    assert [r["id"] for r in json.loads(out)] == ["a2", "b1", "a1"]
    rc, out, _ = events(capsys, str(inventory), "--db", db, "--no-pull", "--format", "json",
                        "-l", "web2")
    assert [r["id"] for r in json.loads(out)] == ["b1"]


def test_filters_combine(inventory, db, capsys) -> None:
    def ids(*flags: str) -> list[str]:
        rc, out, err = events(capsys, str(inventory), "--db", db, "--no-pull", "--format",
                              "json", *flags)
        assert rc == 0, err
        return [r["id"] for r in json.loads(out)]

    assert ids("--rule", "rm-root") == ["b1", "a1"]
    assert ids("--action", "would_block") == ["b1"]
    assert ids("--search", "rm -RF") == ["b1", "a1"]
    assert ids("--search", "rm", "--action", "blocked", "-l", "web1") == ["a1"]
    assert ids("--since", "2026-12-01T05:00:30Z") == ["a2", "b1"]
    assert ids("--rule", "rm-root", "--since", "2026-12-01T05:00:31Z") == []


def test_max_keeps_the_newest_and_says_more_match(inventory, db, capsys) -> None:
    rc, out, err = events(capsys, str(inventory), "--db", db, "--no-pull", "--format", "json",
                          "-n", "1")
    assert rc == 0 and [r["id"] for r in json.loads(out)] == ["a2"]
    assert "more match" in err and "-n 0" in err
    rc, out, err = events(capsys, str(inventory), "--db", db, "--no-pull", "--format", "json",
                          "-n", "0")
    assert len(json.loads(out)) == 3 and err == ""


def test_table_ndjson_and_csv(inventory, db, capsys) -> None:
    rc, out, _ = events(capsys, str(inventory), "--db", db, "--no-pull")
    assert rc == 0 and "alice" in out and "/srv" in out and "rm -rf /" in out
    rc, out, _ = events(capsys, str(inventory), "--db", db, "--no-pull", "--format", "ndjson")
    assert [json.loads(x)["event"]["id"] for x in out.splitlines()] == ["a2", "b1", "a1"]
    rc, out, _ = events(capsys, str(inventory), "--db", db, "--no-pull", "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:3] == ["time", "host", "user"] and len(rows) == 4


def test_db_takes_a_postgresql_uri(inventory, postgres_server, capsys) -> None:
    uri = empty_store(postgres_server)
    store_with(uri, {"web1": [event("p1", cmd="dd of=/dev/sda")]}).close()
    rc, out, err = events(capsys, str(inventory), "--db", uri, "--no-pull", "--format",
                          "json", "--search", "DEV/SDA")
    assert rc == 0, err
    assert [r["id"] for r in json.loads(out)] == ["p1"]


def test_an_unpullable_host_exits_1_and_the_store_is_still_listed(inventory, db, capsys):
    rc, out, err = events(capsys, str(inventory), "--db", db, "--format", "json", "-l", "web2")
    assert rc == 1 and "edrfleet: web2: not pulled: Unreachable" in err
    assert [r["id"] for r in json.loads(out)] == ["b1"]


@pytest.mark.parametrize("flags, says", [
    (["--since", "soon"], "--since 'soon'"),
    (["--search", ""], "--search ''"),
    (["--search", "a\x00b"], "--search"),
    (["-l", "~web("], "error"),
])
def test_bad_input_is_one_line_and_exit_2(inventory, db, capsys, flags, says) -> None:
    rc, _out, err = events(capsys, str(inventory), "--db", db, "--no-pull", *flags)
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1


def test_a_negative_max_is_a_usage_error(inventory, db, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["events", str(inventory), "--db", db, "-n", "-3"])
    assert e.value.code == 2 and "0 for all" in capsys.readouterr().err


def test_takes_the_fleet_options_of_every_inventory_command(inventory, db, capsys) -> None:
    rc, out, err = events(capsys, "-i", str(inventory), "-l", "web2", "--db", db, "--no-pull",
                          "--format", "json", "-f", "3", "--connect-timeout", "2")
    assert rc == 0, err
    assert [r["id"] for r in json.loads(out)] == ["b1"]


def test_verbose_pull_lines_name_the_command(inventory, db, capsys) -> None:
    rc, _out, err = events(capsys, str(inventory), "-l", "web2", "--db", db, "-v",
                           "--connect-timeout", "2")
    assert rc == 1 and "edrfleet events: web2: not pulled" in err
