"""The supervisor really double-forks, restarts a dying agent, forwards SIGHUP and stops on
SIGTERM.  The "agent" is a stand-in zipapp whose `run` records its pid and the signals it gets
(the real agent needs BPF; the lab tier runs the real one under this supervisor)."""

from __future__ import annotations

import argparse
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from edrfleet.agent import supervise

REPO = Path(__file__).resolve().parents[3]

FAKE_MAIN = '''
import argparse, os, signal, sys, time
from edrfleet.agent import supervise
if sys.argv[1] == "supervise":
    sys.exit(supervise.main(sys.argv[2:]))
if sys.argv[1] == "service":
    p = argparse.ArgumentParser()
    supervise.add_service_arguments(p)
    sys.exit(supervise.service(p.parse_args(sys.argv[2:])))
if "--out" in sys.argv:
    out = sys.argv[sys.argv.index("--out") + 1]
else:  # started by `service`: records in the spool, with the argv it was given
    out = sys.argv[sys.argv.index("--spool") + 1] + "/runs"
    with open(out + ".argv", "w") as f:
        f.write(" ".join(sys.argv[1:]))
def hup(*_):
    with open(out + ".hup", "a") as f:
        f.write(f"{os.getpid()}\\n")
signal.signal(signal.SIGHUP, hup)
with open(out, "a") as f:
    f.write(f"{os.getpid()}\\n")
while True:
    time.sleep(0.1)
'''


@pytest.fixture
def fake_pyz(tmp_path: Path) -> Path:
    pyz = tmp_path / "agent.pyz"
    with zipfile.ZipFile(pyz, "w") as zf:
        zf.writestr("__main__.py", FAKE_MAIN)
        zf.write(REPO / "edrfleet" / "__init__.py", "edrfleet/__init__.py")
        zf.writestr("edrfleet/agent/__init__.py", "")
        zf.write(REPO / "edrfleet" / "agent" / "supervise.py", "edrfleet/agent/supervise.py")
    return pyz


def wait_for(cond, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_supervisor_restarts_forwards_hup_and_stops_on_term(fake_pyz: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.setattr(supervise, "BACKOFF_FIRST", 0.2)
    pidfile, agent_pid, out = tmp_path / "sup.pid", tmp_path / "agent.pid", tmp_path / "runs"
    cmd = [sys.executable, str(fake_pyz), "supervise", "--pidfile", str(pidfile),
           "--agent-pidfile", str(agent_pid), "--log", str(tmp_path / "log"),
           "--", "run", "--out", str(out)]
    started = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert started.returncode == 0, started.stderr
    sup = int(pidfile.read_text())
    try:
        first = wait_for(lambda: pids(out))[0]
        assert wait_for(lambda: agent_pid.exists() and int(agent_pid.read_text())) == first
        # a second supervisor on the same pidfile is refused, naming the running one
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        assert again.returncode == 1 and f"pid {sup}" in again.stderr
        os.kill(sup, signal.SIGHUP)
        assert wait_for(lambda: pids(Path(f"{out}.hup"))) == [first]
        os.kill(first, signal.SIGKILL)  # the agent dies: a new one is started
        second = wait_for(lambda: len(pids(out)) > 1 and pids(out)[1])
        assert second != first and int(agent_pid.read_text()) == second
    finally:
        os.kill(sup, signal.SIGTERM)
    wait_for(lambda: not alive(sup))
    assert not alive(second)
    assert not pidfile.exists() and not agent_pid.exists()


def test_supervise_without_a_command_says_what_to_give(tmp_path: Path) -> None:
    rc = supervise.main(["--pidfile", str(tmp_path / "p"), "--foreground"])
    assert rc == 2


def test_service_starts_reloads_restarts_and_stops_the_supervised_agent(
        fake_pyz: Path, tmp_path: Path) -> None:
    release = tmp_path / "opt" / "releases" / "r1"
    (release / "bpf").mkdir(parents=True)
    (release / "agent.pyz").write_bytes(fake_pyz.read_bytes())
    (tmp_path / "opt" / "current").symlink_to("releases/r1")
    spool, run = tmp_path / "spool", tmp_path / "run"
    spool.mkdir()
    out = spool / "runs"

    def service(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(tmp_path / "opt" / "current" / "agent.pyz"), "service", action,
             "--install-dir", str(tmp_path / "opt"), "--config-dir", str(tmp_path / "etc"),
             "--spool", str(spool), "--run-dir", str(run), "--host-name", "h1"],
            capture_output=True, text=True, timeout=60)

    r = service("stop")
    assert r.returncode == 0 and r.stdout == "", r.stderr  # nothing running: nothing to do
    r = service("reload")
    assert r.returncode == 1 and r.stderr.strip() == "no supervisor running to reload"
    r = service("start")
    assert r.returncode == 0 and r.stdout == "started\n", r.stderr
    sup = supervise.supervisor_pid(str(run))
    try:
        first = wait_for(lambda: pids(out))[0]
        assert stat.S_IMODE(run.stat().st_mode) == 0o700
        assert (spool / "runs.argv").read_text() == (
            f"run --policy {tmp_path}/etc/policy.json --spool {spool} "
            f"--bpf-dir {tmp_path}/opt/current/bpf --outputs {tmp_path}/etc/outputs.json "
            "--host-name h1")
        assert service("start").stdout == ""  # already running: left alone
        assert supervise.supervisor_pid(str(run)) == sup
        assert service("reload").returncode == 0
        assert wait_for(lambda: pids(Path(f"{out}.hup"))) == [first]
        r = service("restart")
        assert r.returncode == 0 and r.stdout == "stopped\nstarted\n", r.stderr
        assert not alive(sup) and not alive(first)
        sup = supervise.supervisor_pid(str(run))
        assert sup and wait_for(lambda: len(pids(out)) > 1)
    finally:
        r = service("stop")
    assert r.returncode == 0 and r.stdout == "stopped\n", r.stderr
    assert not alive(sup) and supervise.supervisor_pid(str(run)) == 0



FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$SYSTEMCTL_LOG"
case "$1" in
    is-active) [ -f "$SYSTEMCTL_ACTIVE" ] ;;
    "$SYSTEMCTL_FAIL") exit 1 ;;
esac
"""


def test_service_under_systemd_runs_systemctl_as_deploy_did(tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    """systemd's path, with a stand-in systemctl (the VM tier runs the real one)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    log, active = tmp_path / "calls", tmp_path / "active"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SYSTEMCTL_LOG", str(log))
    monkeypatch.setenv("SYSTEMCTL_ACTIVE", str(active))
    monkeypatch.setenv("SYSTEMCTL_FAIL", "none")
    parser = argparse.ArgumentParser()
    supervise.add_service_arguments(parser)

    def service(action: str) -> tuple[int, list[str], str, str]:
        log.write_text("")
        rc = supervise.service(parser.parse_args([action, "--manager", "systemd", "--unit", "u"]))
        out, err = capsys.readouterr()
        return rc, log.read_text().splitlines(), out, err.strip()

    assert service("stop") == (0, ["is-active --quiet u"], "", "")
    assert service("start") == (0, ["is-active --quiet u", "enable --quiet u", "start u"],
                                "started\n", "")
    assert service("restart") == (0, ["is-active --quiet u", "enable --quiet u", "restart u"],
                                  "started\n", "")
    active.touch()
    assert service("start") == (0, ["is-active --quiet u"], "", "")
    assert service("reload") == (0, ["reload u"], "", "")
    assert service("stop") == (0, ["is-active --quiet u", "stop u"], "stopped\n", "")
    monkeypatch.setenv("SYSTEMCTL_FAIL", "restart")
    assert service("restart")[::3] == (1, "systemctl restart u failed")
    monkeypatch.setenv("SYSTEMCTL_FAIL", "stop")
    assert service("stop")[::3] == (1, "systemctl stop u failed")


def test_a_pidfile_nobody_holds_names_no_supervisor_even_when_its_pid_is_alive(
        tmp_path: Path) -> None:
    """After a crash the pid may belong to any process: only the pidfile's lock says a
    supervisor is up (a stop would otherwise SIGTERM whatever reused the pid)."""
    (tmp_path / "supervisor.pid").write_text(f"{os.getpid()}\n")
    assert supervise.supervisor_pid(str(tmp_path)) == 0
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"), str(tmp_path / "supervisor.pid")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert supervise.supervisor_pid(str(tmp_path)) == os.getpid()
    finally:
        holder.kill()
        holder.wait()
