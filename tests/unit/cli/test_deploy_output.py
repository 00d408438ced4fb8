"""What deploy/status print where nobody watches a terminal: a diff that stays a diff, progress
lines, status's exit (no host is contacted)."""

from __future__ import annotations

import io
import subprocess
from types import SimpleNamespace

from rich.console import Console

from edrfleet.cli.deploy_cmd import LiveProgress, cmd_status, not_as_wanted, print_diffs
from edrfleet.fleet.deploy.results import HostResult


def test_a_diff_is_written_as_is_and_patch_applies_it(tmp_path, capsys) -> None:
    import difflib

    old = "version: 1\nrules:\n  - id: a\n"
    new = old + "  - id: " + "x" * 300 + "\n"  # wider than any console
    (tmp_path / "policy.yaml").write_text(old)
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        "a/policy.yaml", "b/policy.yaml"))
    print_diffs([HostResult("web1", "changed", diff=diff), HostResult("web2", "ok")])
    out = capsys.readouterr().out
    assert out == diff
    subprocess.run(["patch", "-s", "-p1"], input=out, text=True, cwd=tmp_path, check=True)
    assert (tmp_path / "policy.yaml").read_text() == new


def test_progress_is_one_line_per_host_phase_when_stderr_is_not_a_terminal() -> None:
    buf = io.StringIO()
    with LiveProgress(Console(file=buf, width=40), 2, "deploy") as live:
        for phase in ("facts", "policy", "apply", "done"):
            live.event("web1", phase)
    assert buf.getvalue().splitlines() == [f"edrfleet deploy: web1: {p}" for p in
                                           ("facts", "policy", "apply", "done")]


def test_progress_on_a_terminal_is_the_bar_unless_lines_are_asked_for() -> None:
    term = Console(file=io.StringIO(), force_terminal=True)
    assert not LiveProgress(term, 1, "deploy").lines
    assert LiveProgress(term, 1, "deploy", lines=True).lines


def _row(name: str, state: str, reachable: bool = True) -> SimpleNamespace:
    return SimpleNamespace(name=name, state=state, reachable=reachable, message="",
                           last_error="", backend="", policy_sha256="", release_id="", pid=0,
                           counters={}, to_dict=lambda: {"host": name, "state": state})


def test_status_fails_for_every_agent_not_in_the_mode_its_inventory_asks_for() -> None:
    hosts = [SimpleNamespace(name="a", vars={}),
             SimpleNamespace(name="b", vars={"edrfleet_mode": "monitor"}),
             SimpleNamespace(name="c", vars={}), SimpleNamespace(name="d", vars={})]
    rows = [_row("a", "enforcing"), _row("b", "monitoring"), _row("c", "monitoring"),
            _row("d", "stopped")]
    assert not_as_wanted(hosts, rows) == ["c", "d"]
    assert not_as_wanted(hosts[:2], rows[:2]) == []
    assert not_as_wanted(hosts[:1], [_row("a", "unreachable", False)]) == ["a"]


def test_status_exits_1_when_an_agent_is_not_enforcing(tmp_path, monkeypatch, capsys) -> None:
    from edrfleet.fleet.deploy import status

    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    a:\n    b:\n")
    states = {"a": "enforcing", "b": "stopped"}
    monkeypatch.setattr(status, "fleet_status",
                        lambda d, hosts, **kw: [_row(h.name, states[h.name]) for h in hosts])
    args = SimpleNamespace(inventory=str(inv), inventory_opt=None, limit=None, forks=None,
                           connect_timeout=None, format="json")
    assert cmd_status(args) == 1
    states["b"] = "enforcing"
    assert cmd_status(args) == 0


def test_ctrl_c_message_counts_only_pool_steps_as_in_flight() -> None:
    live = LiveProgress(Console(file=io.StringIO()), 4, "deploy")
    for host, phase in (("a", "facts"), ("a", "done"), ("b", "apply"), ("c", "policy"),
                        ("d", "facts")):
        live.event(host, phase)
    assert live.interrupted() == (
        "interrupted: deploy stopped with 1 of 4 hosts done; in flight, let finish that step so "
        "that none is left half-applied: b (apply), d (facts); 1 more not done (edrfleet status "
        "shows each host; run it again to finish)")
    fresh = LiveProgress(Console(file=io.StringIO()), 2, "deploy")
    fresh.event("a", "facts")
    assert "; no host was changed" in fresh.interrupted()
