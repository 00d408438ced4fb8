"""edrfleet.agent.status: the status.json contract and its atomic replacement."""

from __future__ import annotations

import argparse
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

import edrfleet
from edrfleet.agent import status as S
from edrfleet.agent.status import Status, read_status, write_status

CONTRACT = {"state", "backend", "policy_sha256", "rules", "pid", "version", "execs_seen",
            "blocked", "logged", "events_lost"}
EXTRAS = {"would_block", "started_at", "enforcing_since", "start_seconds", "policy_source",
          "last_error", "last_reload"}


def test_a_fresh_status_has_every_contract_field_and_is_starting() -> None:
    d = Status().to_dict()
    assert set(d) >= CONTRACT | EXTRAS
    assert d["state"] == "starting" and d["pid"] == os.getpid()
    assert d["version"] == edrfleet.__version__
    assert all(d[k] == 0 for k in ("execs_seen", "blocked", "logged", "events_lost",
                                   "would_block"))
    assert abs(d["started_at"] - time.time()) < 5
    assert json.loads(json.dumps(d)) == d  # JSON-friendly as is


def test_unknown_states_are_refused() -> None:
    with pytest.raises(ValueError, match="'armed' is not one of starting, enforcing"):
        Status(state="armed")


def test_write_then_read_round_trips_and_stamps_updated_at(tmp_path: Path) -> None:
    st = Status(state="enforcing", backend="sigkill", policy_sha256="ab" * 32, rules=12,
                execs_seen=100, blocked=2, logged=5, start_seconds=0.83,
                policy_source="policy.yaml", outputs={"syslog": {"sent": 3, "dropped": 0}},
                last_reload={"at": time.time(), "ok": True, "sha256": "ab" * 32})
    path = write_status(str(tmp_path), st)
    assert path == str(tmp_path / "status.json")
    got = read_status(str(tmp_path))
    assert got == st.to_dict()
    assert abs(got["updated_at"] - time.time()) < 5
    assert Status.from_dict(got) == st


def test_from_dict_ignores_keys_a_newer_agent_added() -> None:
    d = Status(state="monitoring").to_dict() | {"some_future_field": [1, 2]}
    assert Status.from_dict(d).state == "monitoring"


def test_a_plain_dict_is_written_as_given(tmp_path: Path) -> None:
    # the agent's own dict, with a state the contract does not list (readers tolerate it)
    d = {"state": "stopped", "last_error": "load: EPERM ✗", "generation": 3}
    write_status(str(tmp_path), d)
    assert read_status(str(tmp_path)) == d
    assert Status.from_dict(d).generation == 3


def test_the_file_is_0644_whatever_the_umask_and_no_temp_file_is_left(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_status(str(tmp_path), Status())
        write_status(str(tmp_path), Status(state="enforcing"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_value_json_cannot_encode_fails_before_touching_the_disk(tmp_path: Path) -> None:
    write_status(str(tmp_path), Status(state="enforcing"))
    with pytest.raises(TypeError):
        write_status(str(tmp_path), {"state": "failed", "bad": object()})
    assert read_status(str(tmp_path))["state"] == "enforcing"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_failed_rename_removes_the_temp_file(tmp_path: Path, monkeypatch) -> None:
    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(S.os, "rename", boom)
    with pytest.raises(OSError):
        write_status(str(tmp_path), Status())
    assert list(tmp_path.iterdir()) == []


def test_read_status_of_a_missing_or_foreign_file(tmp_path: Path) -> None:
    assert read_status(str(tmp_path)) is None
    (tmp_path / "status.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        read_status(str(tmp_path))
    (tmp_path / "status.json").write_text("[1]")
    with pytest.raises(ValueError, match="not a JSON object"):
        read_status(str(tmp_path))


def test_readers_never_see_a_torn_file_while_it_is_rewritten(tmp_path: Path) -> None:
    stop = threading.Event()
    bad: list[str] = []

    def read_loop() -> None:
        while not stop.is_set():
            try:
                got = read_status(str(tmp_path))
            except ValueError as e:
                bad.append(str(e))
                return
            if got is not None and got["execs_seen"] != got["blocked"]:
                bad.append(repr(got))

    t = threading.Thread(target=read_loop)
    t.start()
    try:
        for i in range(300):
            write_status(str(tmp_path), Status(execs_seen=i, blocked=i,
                                               last_error="x" * (i * 37 % 5000)))
    finally:
        stop.set()
        t.join(10)
    assert bad == []


# --- agent.pyz wait ---------------------------------------------------------------------------
def wait_args(spool: Path, *extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    S.add_wait_arguments(p)
    return p.parse_args(["--spool", str(spool), "--timeout", "0.3", *extra])


def put(spool: Path, **fields) -> None:
    write_status(str(spool), {"state": "enforcing", "pid": 100, "policy_sha256": "new",
                              "started_at": 1000.0, **fields})


def test_wait_prints_the_status_once_the_wanted_policy_is_in_force(tmp_path: Path,
                                                                   capsys) -> None:
    put(tmp_path)
    assert S.wait_main(wait_args(tmp_path, "--policy-sha", "new")) == S.WAIT_OK
    out, err = capsys.readouterr()
    assert json.loads(out)["policy_sha256"] == "new" and err == ""


def test_wait_times_out_on_another_policy_or_an_old_agent(tmp_path: Path, capsys) -> None:
    put(tmp_path, policy_sha256="old", last_error="")
    assert S.wait_main(wait_args(tmp_path, "--policy-sha", "new")) == S.WAIT_TIMEOUT
    assert "agent not enforcing after 0.3s (state enforcing)" in capsys.readouterr().err
    put(tmp_path)  # the wanted policy, but from the agent that ran before the restart
    args = wait_args(tmp_path, "--policy-sha", "new", "--action", "restart", "--since", "1000",
                     "--old-pid", "100")
    assert S.wait_for_policy(args)[0] == S.WAIT_TIMEOUT
    put(tmp_path, pid=101)
    assert S.wait_for_policy(args)[0] == S.WAIT_OK
    put(tmp_path, pid=101, started_at=990.0)  # an agent started before the action
    assert S.wait_for_policy(args)[0] == S.WAIT_TIMEOUT
    assert S.wait_for_policy(wait_args(tmp_path / "none"))[:2] == (
        S.WAIT_TIMEOUT, "agent not enforcing after 0.3s (state no status.json): ")


def test_wait_reports_a_failed_agent_and_a_refused_reload(tmp_path: Path, capsys) -> None:
    put(tmp_path, state="failed", last_error="BPF load failed")
    assert S.wait_for_policy(wait_args(tmp_path, "--policy-sha", "new"))[:2] == (
        S.WAIT_FAILED, "BPF load failed")
    put(tmp_path, policy_sha256="old", last_reload={"at": 2000.0, "ok": False, "error": "bad"})
    args = wait_args(tmp_path, "--policy-sha", "new", "--action", "reload", "--since", "1999")
    assert S.wait_for_policy(args)[:2] == (S.WAIT_FAILED, "reload refused: bad")
    args = wait_args(tmp_path, "--policy-sha", "new", "--action", "reload", "--since", "2001")
    assert S.wait_for_policy(args)[0] == S.WAIT_TIMEOUT  # that refusal was an earlier reload


def test_wait_counts_only_the_live_agent_when_asked(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    put(tmp_path)
    args = wait_args(tmp_path, "--live-pid", "supervisor", "--run-dir", str(run))
    assert S.wait_for_policy(args)[0] == S.WAIT_TIMEOUT  # no agent.pid: none is running
    (run / "agent.pid").write_text("100\n")
    assert S.wait_for_policy(args)[0] == S.WAIT_OK


def test_wait_kv_lines_are_what_deploy_parses(tmp_path: Path, capsys) -> None:
    from edrfleet.fleet.deploy.hostscripts import parse_output

    put(tmp_path, state="failed", last_error="no\nBTF")
    assert S.wait_main(wait_args(tmp_path, "--format", "kv")) == S.WAIT_FAILED
    out = parse_output(capsys.readouterr().out.encode())
    assert out["result"] == "failed" and out["error"] == "no BTF"
    assert out["status"]["last_error"] == "no\nBTF"


def test_wait_reads_the_live_agent_pid_from_systemd(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(  # a stand-in: MainPID of the unit asked for
        '#!/bin/sh\n[ "$*" = "show -p MainPID --value u" ] && echo 100 || echo 0\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    put(tmp_path)
    assert S.wait_for_policy(wait_args(tmp_path, "--live-pid", "systemd", "--unit", "u"))[0] \
        == S.WAIT_OK
    assert S.wait_for_policy(wait_args(tmp_path, "--live-pid", "systemd", "--unit", "v"))[0] \
        == S.WAIT_TIMEOUT
