"""Issue 17's host-side failures, reproduced on real lab hosts, now holding.

* a managed directory another (real, unprivileged) user made: refused, nothing changed;
* a tampered release (agent.pyz modified on the host): the agent refuses to start;
* newline injection into the policy and the unit: refused before any host is touched, or
  inert;
* /etc as config dir, /var/log as spool dir: refused, on the controller, for deploy and
  uninstall;
* ``%h`` injection through ProxyCommand: refused without running anything (no marker file);
* a pid reused by another process: not taken as the agent; deploy restarts it, status says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edrfleet.cli.main import main
from edrfleet.fleet.deploy.deployer import Deployer, DeployOptions
from edrfleet.fleet.deploy.hostpolicy import HostPolicyError
from edrfleet.fleet.deploy.uninstall import fleet_uninstall
from tests.lab.lab_fleet import hosts, run_deploy


def results_of_deploy(lab_hosts, host_list=None, **opts):
    """Deploy to the lab; each host's result by name."""
    return run_deploy(lab_hosts, host_list, **opts)[1]


def snapshot(*tops: Path) -> dict[str, tuple]:
    """Owner, mode and content hash of everything under ``tops`` (spool's status.json aside:
    the agent rewrites it every second)."""
    out: dict[str, tuple] = {}
    for top in tops:
        for p in [top, *sorted(top.rglob("*"))] if top.exists() else []:
            if p.name in ("status.json", "events.jsonl", "agent.log") or p.name.startswith(
                    ".status."):
                continue
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and \
                not p.is_symlink() else ""
            out[str(p)] = (st.st_uid, st.st_gid, st.st_mode, digest)
    return out


def host_dirs(lab_hosts, name: str) -> list[Path]:
    hv = lab_hosts.hosts[name].vars
    return [Path(hv[v]) for v in ("edrfleet_install_dir", "edrfleet_config_dir",
                                  "edrfleet_spool_dir", "edrfleet_run_dir")]


def wait_for(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def deployed(lab_hosts):
    by_name = results_of_deploy(lab_hosts)
    assert {r.status for r in by_name.values()} == {"changed"}, by_name
    for name in lab_hosts.names:  # deploy returns at "enforcing"; the hand-over to the
        # resident image comes after and rewrites spool/pinned.json: snapshots wait for it
        status = Path(lab_hosts.hosts[name].vars["edrfleet_spool_dir"]) / "status.json"
        wait_for(lambda status=status: status.exists()
                 and json.loads(status.read_text()).get("bcc_loaded") is False)
    yield by_name
    main(["uninstall", str(lab_hosts.inventory), "--purge"])
    lab_hosts.restore_dirs()


@pytest.fixture
def other_user() -> Iterator[pwd.struct_passwd]:
    """A real unprivileged user, made for the test and removed after it."""
    name = f"edrfx{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


# --- 1. managed directories -------------------------------------------------------------------
@pytest.mark.parametrize("where", ["managed", "parent"])
def test_a_managed_directory_another_user_made_is_refused_and_nothing_changes(
        lab_hosts, deployed, other_user, where):
    name = lab_hosts.names[0]
    base = Path(lab_hosts.hosts[name].vars["edrfleet_install_dir"]).parent
    planted = base / f"planted-{secrets.token_hex(3)}"
    planted.mkdir(mode=0o755)
    planted.chmod(0o755)
    os.chown(planted, other_user.pw_uid, other_user.pw_gid)
    install = planted if where == "managed" else planted / "install"
    try:
        before = snapshot(planted, *host_dirs(lab_hosts, name))
        pids = lab_hosts.agent_pids()
        by_name = results_of_deploy(lab_hosts, hosts(lab_hosts, **{
            name: {"edrfleet_install_dir": str(install)}}))
        r = by_name[name]
        assert r.status == "failed"
        assert f"{planted} is owned by {other_user.pw_name}:" in r.message
        assert "(uid " in r.message and "mode 755" in r.message and "(fix: chown root:root" \
            in r.message and "nothing was changed on the host" in r.message
        assert snapshot(planted, *host_dirs(lab_hosts, name)) == before
        assert lab_hosts.agent_pids() == pids  # nothing restarted either
        assert all(by_name[n].status == "ok" for n in lab_hosts.names if n != name)
    finally:
        shutil.rmtree(planted)


# --- 2. a tampered release --------------------------------------------------------------------
def test_a_tampered_release_makes_the_agent_refuse_to_start(lab_hosts, deployed):
    name = lab_hosts.names[1]
    hv = lab_hosts.hosts[name].vars
    pyz = Path(hv["edrfleet_install_dir"], "current", "agent.pyz")
    spool = Path(hv["edrfleet_spool_dir"])
    original = pyz.read_bytes()
    old = lab_hosts.facts(name)["agent_pid"]
    with open(pyz, "ab") as f:  # a zipapp still runs with bytes appended
        f.write(b"\n# planted by the test\n")
    os.kill(old, signal.SIGKILL)  # the supervisor restarts it: the start must refuse

    def refused():
        st = json.loads((spool / "status.json").read_text())
        return st if st.get("pid") != old and st.get("state") == "failed" else None

    st = wait_for(refused, 60)
    assert st["last_error"].startswith("verify release: ")
    assert "agent.pyz has sha256" in st["last_error"] and "modified after deploy" in \
        st["last_error"]
    assert "verify release" in (spool / "agent.log").read_text()
    assert not lab_hosts.facts(name)["agent_active"]
    # deploy sees a release that differs from what it wants, pushes it again, and enforces
    by_name = results_of_deploy(lab_hosts)
    assert by_name[name].status == "changed", by_name[name].message
    assert pyz.read_bytes() == original
    assert by_name[name].agent["state"] == "enforcing"
    rc, survived = lab_hosts.canary_attack(name)
    assert rc == 137 and survived


# --- 3. newline injection -----------------------------------------------------------------------
@pytest.mark.parametrize("var, value", [
    ("edrfleet_mode", "monitor\nscope:\n  cgroups: [/nowhere]"),
    ("edrfleet_unscanned", "allow\nbackend: sigkill"),
    ("ansible_managed", "x\nmode: monitor"),
    ("edrfleet_protected_agents", ["auditd'\n  - id: planted\n    action: allow"]),
])
def test_newline_injection_into_the_policy_is_refused_before_any_host_is_touched(
        lab_hosts, deployed, var, value):
    name = lab_hosts.names[0]
    before = {n: snapshot(*host_dirs(lab_hosts, n)[:2]) for n in lab_hosts.names}
    with pytest.raises(HostPolicyError, match=var):
        results_of_deploy(lab_hosts, hosts(lab_hosts, **{name: {var: value}}))
    assert {n: snapshot(*host_dirs(lab_hosts, n)[:2]) for n in lab_hosts.names} == before
    rc, survived = lab_hosts.canary_attack(name)
    assert rc == 137 and survived  # still enforcing the policy deployed before


def test_newline_injection_into_the_unit_is_refused_and_other_values_inert(
        lab_hosts, deployed, tmp_path):
    """The lab's hosts run the supervisor (no systemd as PID 1): the unit is planned as for a
    systemd host, and what systemd would read is checked with systemd-analyze."""
    from edrfleet.fleet.deploy.deployer import Session

    d = Deployer(lab_hosts.inventory.parent, DeployOptions(connect_timeout=5))
    facts = {**lab_hosts.facts(lab_hosts.names[0]), "systemd": True}
    host = hosts(lab_hosts, **{lab_hosts.names[0]: {"edrfleet_service_manager": "systemd"}})[0]
    s = Session(dataclasses.replace(host, name="lab01\nExecStartPre=/bin/touch /tmp/pwned"))
    s.facts = facts
    d.prepare(s)
    assert s.result is not None and s.result.status == "failed"
    assert "line break" in s.result.message
    s = Session(dataclasses.replace(host, name="lab 01 '%h' $(id) \"x\""))
    s.facts = facts
    d.prepare(s)
    assert s.result is None and s.desired is not None and s.desired.unit
    assert "--host-name \"lab 01 '%%h' $$(id) \\\"x\\\"\"\n" in s.desired.unit
    if shutil.which("systemd-analyze"):
        unit = tmp_path / "edrfleet-agent.service"
        unit.write_text(s.desired.unit)
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                           capture_output=True, text=True, timeout=60)
        assert "Unknown key" not in r.stderr and "specifier" not in r.stderr, r.stderr


# --- 4. system directories ----------------------------------------------------------------------
@pytest.mark.parametrize("var, path", [("edrfleet_config_dir", "/etc"),
                                       ("edrfleet_spool_dir", "/var/log"),
                                       ("edrfleet_install_dir", "/usr/")])
def test_a_system_directory_is_refused_by_deploy_and_uninstall(lab_hosts, deployed, var, path):
    name = lab_hosts.names[2]
    st = os.stat(path)
    host_list = [h for h in hosts(lab_hosts, **{name: {var: path}}) if h.name == name]
    r = results_of_deploy(lab_hosts, host_list)[name]
    assert r.status == "failed" and f"{var} is {path!r}, a system directory" in r.message
    (u,) = fleet_uninstall(lab_hosts.inventory.parent, host_list)
    assert u.status == "failed" and "system directory" in u.message
    after = os.stat(path)
    assert (after.st_mode, after.st_uid, after.st_gid) == (st.st_mode, st.st_uid, st.st_gid)
    assert lab_hosts.facts(name)["agent_active"]  # the install in place is untouched


# --- 5. %h injection ----------------------------------------------------------------------------
def test_h_injection_through_proxycommand_runs_nothing(lab_hosts, deployed, capsys):
    name = lab_hosts.names[0]
    marker = Path(f"/tmp/edrfleet-pwned-{secrets.token_hex(4)}")
    hv = lab_hosts.hosts[name].vars
    evil = {"ansible_host": f"$(touch {marker}){hv['ansible_host']}",
            "ansible_ssh_common_args": "-o ProxyCommand='sh -c \"exec cat </dev/null; "
                                       "echo %h %p\"'"}
    host_list = [h for h in hosts(lab_hosts, **{name: evil}) if h.name == name]
    try:
        r = results_of_deploy(lab_hosts, host_list)[name]
        assert r.status == "failed" and "shell metacharacters" in r.message
        assert "ProxyCommand" in r.message and "ansible_host" in r.message
        assert not marker.exists()
    finally:
        marker.unlink(missing_ok=True)


# --- 6. pid reuse -------------------------------------------------------------------------------
def test_a_reused_pid_is_not_the_agent(lab_hosts, deployed, capsys):
    name = lab_hosts.names[2]
    hv = lab_hosts.hosts[name].vars
    run = Path(hv["edrfleet_run_dir"])
    with lab_hosts.transport(name) as t:  # the supervisor and its agent stop (os.kill only)
        t.run(["python3", f"{hv['edrfleet_install_dir']}/current/agent.pyz", "service", "stop",
               "--manager", "supervisor", "--install-dir", hv["edrfleet_install_dir"],
               "--config-dir", hv["edrfleet_config_dir"], "--spool", hv["edrfleet_spool_dir"],
               "--run-dir", hv["edrfleet_run_dir"]])
    # another process now holds the pids the pidfiles name; status.json still says enforcing
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        for f in ("agent.pid", "supervisor.pid"):
            (run / f).write_text(f"{bystander.pid}\n")
        status = json.loads(Path(hv["edrfleet_spool_dir"], "status.json").read_text())
        status.update(state="enforcing", pid=bystander.pid)
        Path(hv["edrfleet_spool_dir"], "status.json").write_text(json.dumps(status))
        facts = lab_hosts.facts(name)
        assert facts["agent_pid"] == 0 and not facts["agent_active"]
        assert "is not this install's agent" in facts["agent_not_alive"]
        # exit 1: an agent is not in force on a host (docs/cli.md, status)
        assert main(["status", str(lab_hosts.inventory), "--format", "json"]) == 1
        row = {r["host"]: r for r in json.loads(capsys.readouterr().out)}[name]
        assert row["state"] == "stopped" and "not this install's agent" in row["message"]
        r = results_of_deploy(lab_hosts)[name]
        assert r.status == "changed" and "start agent (not running: pid" in r.message
        assert bystander.poll() is None  # not signalled by the restart
        rc, survived = lab_hosts.canary_attack(name)
        assert rc == 137 and survived
    finally:
        bystander.kill()
        bystander.wait()
