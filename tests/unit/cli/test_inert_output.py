"""Nothing a host says reaches the terminal raw (issue 17): ANSI/OSC escapes, rich markup and
bidi controls fed through each command's output path (deploy recap, status table and lines,
report notes, errors carrying remote stderr) arrive inert, and a 0-column pty still prints."""

from __future__ import annotations

import io
import os
import pty
import types
from pathlib import Path

from rich.console import Console

from edrfleet.cli import deploy_cmd
from edrfleet.cli.main import main
from edrfleet.cli.report_cmd import pull_notes
from edrfleet.fleet.deploy.deployer import HostResult
from edrfleet.fleet.deploy.status import HostStatus
from edrfleet.fleet.report.inert import terminal_width
from edrfleet.fleet.report.pull import HostPull
from edrfleet.fleet.transport.base import RemoteError

EVIL = "\x1b]0;pwned\x07\x1b[2J\x1bc[blink]BLINK[/blink] \u202eevil\x9b31m"
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def assert_inert(text: str) -> None:
    assert not any(c in text for c in RAW), repr(text)
    assert "[blink]BLINK[/blink]" in text  # shown as text, not parsed as markup
    assert "\\u202e" in text  # the bidi override visible


def test_the_deploy_recap_prints_host_stderr_inert() -> None:
    buf = io.StringIO()
    deploy_cmd.print_recap(Console(file=buf, width=300),
                           [HostResult("web1", "failed", f"apply exited 1: {EVIL}")])
    assert_inert(buf.getvalue())


def test_status_table_and_lines_print_status_json_strings_inert(monkeypatch, capsys) -> None:
    row = HostStatus("web1", True, f"enforcing{EVIL}", backend=EVIL, policy_sha256=EVIL,
                     release_id=EVIL, counters={"blocked": EVIL}, last_error=EVIL)  # type: ignore[dict-item]
    inv = types.SimpleNamespace(path="i.yml", base_dir=Path("."))
    monkeypatch.setattr(deploy_cmd, "_hosts", lambda a: (inv, []))
    monkeypatch.setattr("edrfleet.fleet.deploy.status.fleet_status", lambda *a, **k: [row])
    monkeypatch.setattr(deploy_cmd, "console", lambda stderr=False: Console(
        file=io.StringIO() if stderr else buf, width=400))
    buf = io.StringIO()
    args = types.SimpleNamespace(format="table", forks=1, connect_timeout=1)
    deploy_cmd.cmd_status(args)  # type: ignore[arg-type]
    table = buf.getvalue()
    assert not any(c in table for c in RAW) and "[blink]BLINK" in table
    assert_inert(capsys.readouterr().err)


def test_report_notes_print_pull_errors_and_ids_inert() -> None:
    p = HostPull(f"web1{EVIL}", error=f"RuntimeError: pull exited 1: {EVIL}",
                 identity_changed=EVIL, machine_id="a" * 32, dropped=2)
    for line in pull_notes([p]):
        assert not any(c in line for c in RAW), repr(line)
    assert any("not pulled" in x and "[blink]BLINK[/blink]" in x for x in pull_notes([p]))


def test_an_error_carrying_remote_stderr_is_printed_inert(monkeypatch, capsys) -> None:
    def boom(args):
        raise RemoteError("web1", "sh -s", 1, EVIL.encode())

    monkeypatch.setattr("edrfleet.cli.report_cmd._run", boom)
    assert main(["report", "inventory.yml"]) == 1
    assert_inert(capsys.readouterr().err)


def test_a_zero_column_pty_still_gets_a_width() -> None:
    leader, follower = pty.openpty()  # a fresh pty reports 0 columns until someone sizes it
    try:
        assert os.get_terminal_size(follower).columns == 0
        assert terminal_width(follower) == 120
    finally:
        os.close(leader)
        os.close(follower)


def test_a_malformed_status_json_leaves_the_host_reachable() -> None:
    from edrfleet.fleet.deploy.status import host_status

    st = {"state": ["x"], "blocked": "many", "last_error": {"a": 1}, "errors": -3}
    row = host_status("web1", {"release_id": "r1", "status": st, "agent_active": True})
    assert row.reachable and row.counters == {k: 0 for k in row.counters}
