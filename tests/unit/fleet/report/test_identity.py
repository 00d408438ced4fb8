"""Host identity in the report store (issues 15 and 17): two fleets with alike host names
stay apart, a host cannot overwrite or suppress another's events, a host whose machine id
changed is reported as such, an uninstalled host is still pulled and shown uninstalled, and
events dated out of any sane window are stored but drive no timeline.

The host side is the real pull program the controller ships, run here as a subprocess; each
fake host has its own machine-id file (they all share this machine's /etc/machine-id).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edrfleet.agent.spool import Spool
from edrfleet.fleet.report.backends import open_store
from edrfleet.fleet.report.pull import pull_hosts
from edrfleet.fleet.report.store import EventFilter, host_key
from edrfleet.fleet.report.summary import summarize
from edrfleet.fleet.report.view import FleetView, fleet_keys
from tests.unit.fleet.report.test_pull import LocalRunner, ev, machine_id, make_host
from tests.unit.helpers.report_helpers import event, line

__all__ = ["install_dir"]
from tests.unit.fleet.report.test_pull import install_dir  # noqa: E402  (the fixture)

A_ID, B_ID = "a" * 32, "b" * 32


def connect(_h):
    return LocalRunner()


def summary_of(store, names, pulls=None):
    pulled = {n: p.machine_id for n, p in (pulls or {}).items()}
    view = FleetView(store, fleet_keys(store, names, pulled))
    return {h["name"]: h for h in summarize(view, names, pulls=pulls)["hosts"]}


def test_two_fleets_with_alike_names_stay_apart_in_one_store(tmp_path, install_dir,
                                                             store_db) -> None:
    fleet_a = [make_host(tmp_path / "a", install_dir, n, A_ID[:-1] + str(k))
               for k, n in enumerate(("lab01", "lab02"))]
    fleet_b = [make_host(tmp_path / "b", install_dir, n, B_ID[:-1] + str(k))
               for k, n in enumerate(("lab01", "lab02"))]
    for h, n in zip(fleet_a, (425, 3), strict=True):
        with Spool(h.vars["edrfleet_spool_dir"]) as s:
            s.append([ev(h.name, i) for i in range(n)])  # ids alike across the fleets too
    for h in fleet_b:
        with Spool(h.vars["edrfleet_spool_dir"]) as s:
            s.append([ev(h.name, i) for i in range(7)])
    store = open_store(store_db)
    ra = pull_hosts(fleet_a, store, connect)
    rb = pull_hosts(fleet_b, store, connect)
    assert ra["lab01"].inserted == 425 and rb["lab01"].inserted == 7  # nothing suppressed
    assert not rb["lab01"].lost  # no false "spool rotated past cursor"
    assert rb["lab01"].identity_changed == A_ID[:-1] + "0"  # said, not hidden
    view_b = FleetView(store, fleet_keys(store, ["lab01", "lab02"], {
        n: p.machine_id for n, p in rb.items()}))
    listed = view_b.events(EventFilter(["lab01"]), None)  # what `edrfleet events` lists
    assert len(listed) == 7 and {r[1] for r in listed} == {"lab01"}
    sb = summary_of(store, ["lab01", "lab02"], rb)
    assert sb["lab01"]["blocked"] == 7 and sb["lab02"]["blocked"] == 7
    sa = summary_of(store, ["lab01", "lab02"], ra)
    assert sa["lab01"]["blocked"] == 425 and sa["lab02"]["blocked"] == 3
    # each fleet again: nothing new, and each from its own cursor
    again = pull_hosts(fleet_b, store, connect)
    assert all(r.ok and r.inserted == 0 and not r.lost for r in again.values())
    assert store.count() == 425 + 3 + 7 + 7


def test_a_host_can_neither_overwrite_nor_suppress_anothers_events(tmp_path, install_dir,
                                                                  store_db) -> None:
    lab01, lab02 = (make_host(tmp_path, install_dir, n) for n in ("lab01", "lab02"))
    real = event("lab02-blocked-1", host="lab02", cmd="rm -rf /tmp/edrfleet-canary-real")
    forged = event("lab02-blocked-1", host="lab02", cmd="forged by lab01", action="logged")
    with Spool(lab01.vars["edrfleet_spool_dir"]) as s:  # the attacker pulled first
        s.append([forged])
    with Spool(lab02.vars["edrfleet_spool_dir"]) as s:
        s.append([real])
    store = open_store(store_db)
    assert pull_hosts([lab01], store, connect)["lab01"].inserted == 1
    assert pull_hosts([lab02], store, connect)["lab02"].inserted == 1  # not suppressed
    (row,) = store.event_rows(host_key("lab02", machine_id("lab02")))
    assert row[3] == "blocked" and row[6] == "rm -rf /tmp/edrfleet-canary-real"
    s = summary_of(store, ["lab01", "lab02"])
    assert (s["lab02"]["blocked"], s["lab01"]["logged"]) == (1, 1)  # each under its puller


def test_a_host_whose_machine_id_changed_is_reported_and_pulled_from_its_own_start(
        tmp_path, install_dir, store_db) -> None:
    old = make_host(tmp_path, install_dir, "w", A_ID)
    with Spool(old.vars["edrfleet_spool_dir"]) as s:
        s.append([ev("w", i) for i in range(20)])
    store = open_store(store_db)
    pull_hosts([old], store, connect)
    new = make_host(tmp_path, install_dir, "w", B_ID, spool="spool-new")  # reinstalled
    with Spool(new.vars["edrfleet_spool_dir"]) as s:
        s.append([ev("w", i) for i in range(5)])
    r = pull_hosts([new], store, connect)["w"]
    assert r.ok and r.identity_changed == A_ID and r.machine_id == B_ID
    assert r.inserted == 5 and not r.lost
    assert store.latest_key("w") == host_key("w", B_ID)
    assert store.host_rows()[host_key("w", A_ID)]["events"] == 20


def test_after_uninstall_the_spool_is_pulled_and_the_host_shown_uninstalled(
        tmp_path, install_dir, store_db) -> None:
    h = make_host(tmp_path, install_dir, "w")
    h.vars["edrfleet_install_dir"] = str(tmp_path / "uninstalled")  # agent.pyz gone
    with Spool(h.vars["edrfleet_spool_dir"]) as s:
        s.append([ev("w", i) for i in range(3)])
    (Path(h.vars["edrfleet_spool_dir"]) / "status.json").write_text(
        json.dumps({"state": "enforcing", "backend": "lsm"}))
    store = open_store(store_db)
    r = pull_hosts([h], store, connect)["w"]
    assert r.ok and r.inserted == 3 and r.installed is False
    row = summary_of(store, ["w"], {"w": r})["w"]
    assert row["state"] == "uninstalled" and row["blocked"] == 3


def test_long_lines_and_lines_without_an_id_are_counted_not_silent(tmp_path, install_dir,
                                                                  store_db) -> None:
    h = make_host(tmp_path, install_dir, "w")
    spool = Path(h.vars["edrfleet_spool_dir"])
    spool.mkdir(parents=True)
    lines = [line(ev("w", 0)), "{}", "{}", line(ev("w", 1) | {"pad": "x" * 70_000})]
    (spool / "events.jsonl").write_text("".join(x + "\n" for x in lines))
    store = open_store(store_db)
    r = pull_hosts([h], store, connect)["w"]
    assert r.ok and (r.inserted, r.malformed, r.dropped) == (1, 2, 1)
    assert store.host_rows()[host_key("w", machine_id("w"))]["dropped"] == 1


def test_far_future_and_ancient_times_are_stored_but_drive_no_timeline(store_db) -> None:
    store = open_store(store_db)
    now = time.time()
    events = [event("ok", ts=now - 3600), event("y9999", ts=253402300000.0),
              event("y1970", ts=86400.0)]
    store.ingest("w", [line(e) for e in events], cursor=None, status=None, lost=False)
    assert store.count() == 3
    lo, hi = store.time_range()
    assert lo == hi and abs(hi - (now - 3600)) < 1
    s = summarize(FleetView(store, {"w": "w"}), ["w"], now=now)
    assert s["timeline"]["bucket_seconds"] <= 3600 and s["hosts"][0]["blocked"] == 3
    assert s["hosts"][0]["last_event"].startswith(time.strftime("%Y-", time.gmtime(now)))


def test_a_chunk_holding_only_a_dropped_line_does_not_end_the_pull(tmp_path, install_dir,
                                                                  store_db) -> None:
    h = make_host(tmp_path, install_dir, "w")
    spool = Path(h.vars["edrfleet_spool_dir"])
    spool.mkdir(parents=True)
    lines = [line(ev("w", 0)), line(ev("w", 1) | {"pad": "x" * 70_000}), line(ev("w", 2))]
    (spool / "events.jsonl").write_text("".join(x + "\n" for x in lines))
    r = pull_hosts([h], open_store(store_db), connect, max_bytes=100)["w"]
    assert r.ok and (r.inserted, r.dropped, r.chunks) == (2, 1, 3)
