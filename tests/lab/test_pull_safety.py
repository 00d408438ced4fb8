"""A host can't harm the controller or other hosts' records (issues 15 and 17), on real lab
hosts over SSH with the real ``edrfleet report``:

- two fleets whose hosts are named alike, reported into one store, stay apart;
- each hostile answer to the pull (tests/lab/hostile_pull.py, run on lab01 in place of its
  python3) fails that host with the reason while the others are pulled, and the controller's
  peak RSS stays under 300 MiB (measured with wait4; printed, and kept in
  ``$EDRFLEET_RSS_LOG`` when set);
- a hung pull is ended on the host too; a host answering "more" forever is stopped;
- a host's stderr reaches the operator's terminal inert;
- after the agent is removed (uninstall keeps the spool) the spool is still pulled and the
  host shown uninstalled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edrfleet.agent.spool import Spool
from edrfleet.fleet.inventory.load import load_inventory
from edrfleet.fleet.report.backends import open_store
from edrfleet.fleet.report.pull import pull_hosts
from edrfleet.fleet.transport.ssh import SshTransport
from tests.lab.test_report import EDRFLEET, ReportLab, event, report, report_lab

__all__ = ["report_lab"]  # the fixture

HOSTILE = Path(__file__).with_name("hostile_pull.py")
RSS_GOAL = 300 << 20


def variant(lab: ReportLab, tag: str, mid: str, tweak=None) -> tuple[Path, dict[str, Path]]:
    """A copy of the lab's inventory: the same host names, each host with its own spool under
    ``tag`` and machine id ``mid`` + its index (a second fleet named alike)."""
    doc = yaml.safe_load(lab.inventory.read_text())
    spools = {}
    for k, (name, hv) in enumerate(doc["all"]["children"]["lab"]["hosts"].items()):
        base = Path(hv["edrfleet_spool_dir"]).parent / tag
        base.mkdir(parents=True, exist_ok=True)
        (base / "machine-id").write_text(f"{mid[:-1]}{k}\n")
        hv["edrfleet_machine_id_file"] = str(base / "machine-id")
        spools[name] = base / "spool"
        hv["edrfleet_spool_dir"] = str(spools[name])
        if tweak is not None:
            tweak(k, name, hv, base)
    inv = lab.inventory.with_name(f"{lab.inventory.stem}-{tag}.yml")
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inv, spools


# The CLI is started by this small process, whose wait4 gives its peak RSS: a child forked
# straight from pytest would carry pytest's own high-water mark into its ru_maxrss (Linux
# keeps the old memory's peak across exec).
_MEASURE = """import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_report(inventory: Path, db: Path, *extra: str) -> tuple[int, dict, str, int]:
    """The real CLI; returns (exit status, JSON summary, stderr, peak RSS in bytes)."""
    out, rss = db.with_suffix(".json"), db.with_suffix(".rss")
    p = subprocess.run([sys.executable, "-c", _MEASURE, str(rss), *EDRFLEET, "report",
                        str(inventory), "--db", str(db), "--format", "json", "-o", str(out),
                        *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    summary = json.loads(out.read_text()) if out.exists() else {}
    return p.returncode, summary, p.stderr.decode("utf-8", "replace"), int(rss.read_text())


def test_two_fleets_named_alike_stay_apart_in_one_store(report_lab, tmp_path) -> None:
    inv_a, spools_a = variant(report_lab, "fleet-a", "a" * 32)
    inv_b, spools_b = variant(report_lab, "fleet-b", "b" * 32)
    first = report_lab.names[0]
    for name, spool in spools_a.items():
        with Spool(str(spool)) as s:
            s.append([event(name, i) for i in range(425 if name == first else 5)])
    for name, spool in spools_b.items():
        with Spool(str(spool)) as s:
            s.append([event(name, i) for i in range(7)])  # the same event ids as fleet A's
    db = tmp_path / "one.db"
    rc, sa, err = run_report(inv_a, db)[:3]
    assert rc == 0, err
    rc, sb, err = run_report(inv_b, db)[:3]
    assert rc == 0, err
    assert [h["blocked"] for h in sb["hosts"]] == [7] * len(report_lab.names)
    assert not any(h["lost"] for h in sb["hosts"])  # no false "spool rotated"
    assert f"{first}: host identity changed: machine id {'b' * 31}0, was {'a' * 31}0" in err
    rc, sa, err = run_report(inv_a, db)[:3]  # A again: its own rows and cursors, nothing new
    assert rc == 0, err
    assert [h["blocked"] for h in sa["hosts"]] == [425] + [5] * (len(report_lab.names) - 1)
    assert [h["new_events"] for h in sa["hosts"]] == [0] * len(report_lab.names)
    with open_store(db) as store:
        assert store.count() == 425 + 5 * (len(report_lab.names) - 1) + 7 * len(
            report_lab.names)


def hostile_inventory(lab: ReportLab, tmp: Path, mode: str) -> Path:
    """The lab's hosts with lab01 answering the pull with ``mode``; each host with a few
    true events to pull."""
    first = lab.names[0]
    script = tmp / f"python-{mode}"
    script.write_text(f"#!/bin/sh\nHOSTILE_PIDFILE={tmp}/hostile.pid exec /usr/bin/python3 "
                      f"{HOSTILE} {mode} \"$@\"\n")
    script.chmod(0o755)

    def tweak(_k, name, hv, _base):
        if name == first:
            hv["edrfleet_python"] = str(script)

    inv, spools = variant(lab, f"hostile-{mode}", "c" * 32, tweak)
    for name, spool in spools.items():
        with Spool(str(spool)) as s:
            s.append([event(name, i) for i in range(3)])
    return inv


MODES = {  # mode -> what the failed host's reason says
    "huge_frame": "OutputTooLarge",
    "endless": "OutputTooLarge",
    "zlib_bomb": "raw_bytes 1073741824 is not a size up to",
    "small_bomb": "header says 1000",
    "many_lines": "more than",
    "long_line": "raw_bytes",
}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_hostile_pull_fails_its_host_alone_and_the_controller_stays_small(
        report_lab, tmp_path, mode) -> None:
    inv = hostile_inventory(report_lab, tmp_path, mode)
    t0 = time.monotonic()
    rc, summary, err, rss = run_report(inv, tmp_path / "r.db")
    seconds = time.monotonic() - t0
    line = f"{mode}: peak RSS {rss / (1 << 20):.0f} MiB, {seconds:.1f} s"
    print(line)
    if os.environ.get("EDRFLEET_RSS_LOG"):
        with open(os.environ["EDRFLEET_RSS_LOG"], "a") as f:
            f.write(line + "\n")
    first = report_lab.names[0]
    assert rc == 1, err
    by = {h["name"]: h for h in summary["hosts"]}
    assert by[first]["pull"] == "failed" and MODES[mode] in by[first]["error"], by[first]
    assert all(by[n]["pull"] == "ok" and by[n]["new_events"] == 3
               for n in report_lab.names[1:])
    assert rss <= RSS_GOAL, line


def test_a_hung_pull_is_ended_on_the_host_and_more_forever_is_stopped(report_lab,
                                                                      tmp_path) -> None:
    inv = hostile_inventory(report_lab, tmp_path, "hang")
    hosts = list(load_inventory(inv).hosts.values())

    def connect(h):
        return SshTransport(h, inv.parent, connect_timeout=5)

    store = open_store(tmp_path / "r.db")
    r = pull_hosts(hosts[:1], store, connect, timeout=2)[hosts[0].name]
    assert not r.ok and ("timed out" in r.error or "CommandTimeout" in r.error), r.error
    pid = int((tmp_path / "hostile.pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "the hung pull still runs on the host"

    inv = hostile_inventory(report_lab, tmp_path, "more_forever")
    host = next(iter(load_inventory(inv).hosts.values()))
    r = pull_hosts([host], store, connect, max_chunks=20)[host.name]
    assert not r.ok and "stopped after 20 chunks" in r.error and r.inserted == 20


def test_a_hosts_stderr_reaches_the_terminal_inert(report_lab, tmp_path) -> None:
    inv = hostile_inventory(report_lab, tmp_path, "stderr_escapes")
    rc, _summary, err, _rss = run_report(inv, tmp_path / "r.db")
    assert rc == 1 and "not pulled" in err
    assert not any(c in err for c in ("\x1b", "\x07", "\u202e")), repr(err)
    assert "[blink]BLINK[/blink]" in err


def test_after_the_agent_is_removed_the_spool_is_pulled_and_shown_uninstalled(
        report_lab, tmp_path) -> None:
    first = report_lab.names[0]
    with report_lab.spool(first) as s:
        s.append([event(first, i) for i in range(4)])
    (report_lab.spools[first] / "status.json").write_text(json.dumps({"state": "enforcing"}))
    install = Path(report_lab.hosts[first].vars["edrfleet_install_dir"])
    shutil.rmtree(install)  # what uninstall leaves: no release, the spool kept
    rc, summary, err = report(report_lab, tmp_path / "r.db", tmp_path / "r.json",
                              "--limit", first)
    assert rc == 0, err
    (h,) = summary["hosts"]
    assert (h["state"], h["new_events"], h["blocked"]) == ("uninstalled", 4, 4)
    assert f"{first}: the agent is not installed" in err
