"""edrfleet.fleet.report.summary: counts per host and rule, top blocked, --since, timeline."""

from __future__ import annotations

import pytest

from edrfleet.fleet.report.pull import HostPull
from edrfleet.fleet.report.summary import parse_since, summarize
from tests.unit.helpers.report_helpers import T0, event, store_with


def fleet(store_db: str):
    return store_with(store_db, {
        "web1": [event("a1", action="blocked", rule="rm-root", cmd="rm -rf /", ts=T0),
                 event("a2", action="blocked", rule="rm-root", cmd="rm -rf /", ts=T0 + 600),
                 event("a3", action="logged", rule="curl", severity="low", ts=T0 + 1200)],
        "web2": [event("b1", action="would_block", rule="rm-root", ts=T0 + 3600),
                 event("b2", action="blocked", rule="dd", cmd="dd of=/dev/sda", ts=T0 + 7200),
                 event("b3", action="weird", rule="dd", ts=T0 + 7200)],
        "other": [event("c1", action="blocked", rule="rm-root", cmd="rm -rf /", ts=T0)],
    })


def test_per_host_counts_last_event_and_status(store_db: str) -> None:
    s = summarize(fleet(store_db), ["web1", "web2", "web3"], now=T0 + 8000)
    h = {x["name"]: x for x in s["hosts"]}
    assert [x["name"] for x in s["hosts"]] == ["web1", "web2", "web3"]
    assert (h["web1"]["blocked"], h["web1"]["would_block"], h["web1"]["logged"]) == (2, 0, 1)
    assert (h["web2"]["blocked"], h["web2"]["would_block"], h["web2"]["other"]) == (1, 1, 1)
    assert h["web1"]["last_event"] == "2026-12-01T05:20:00Z"
    assert h["web1"]["state"] == "enforcing" and h["web1"]["backend"] == "sigkill"
    assert h["web1"]["policy_sha256"] == "ab" * 32
    assert h["web3"]["blocked"] == 0 and h["web3"]["state"] is None  # never pulled
    assert s["totals"] == {"blocked": 3, "would_block": 1, "logged": 1, "other": 1}


def test_hosts_outside_the_selection_are_not_counted(store_db: str) -> None:
    s = summarize(fleet(store_db), ["web1"], now=T0 + 8000)
    assert s["totals"]["blocked"] == 2
    assert s["top_blocked"] == [{"rule": "rm-root", "pattern": "rm -rf /",
                                 "command_line": "rm -rf /", "count": 2, "hosts": 1,
                                 "variants": 1, "last": "2026-12-01T05:10:00Z"}]


def test_rules_by_action_and_severity_most_first(store_db: str) -> None:
    s = summarize(fleet(store_db), ["web1", "web2"], now=T0 + 8000)
    rules = {(r["rule"], r["severity"]): r for r in s["rules"]}
    assert rules[("rm-root", "high")] | {} == {"rule": "rm-root", "severity": "high",
                                              "techniques": [], "blocked": 2,
                                              "would_block": 1, "logged": 0, "other": 0,
                                              "total": 3}
    assert rules[("curl", "low")]["logged"] == 1
    assert s["rules"][0]["rule"] == "rm-root"


def test_top_blocked_counts_command_lines_and_hosts(store_db: str) -> None:
    s = summarize(fleet(store_db), ["web1", "web2", "other"], now=T0 + 8000)
    assert [(c["command_line"], c["count"], c["hosts"]) for c in s["top_blocked"]] == [
        ("rm -rf /", 3, 2), ("dd of=/dev/sda", 1, 1)]


def test_since_keeps_only_later_events(store_db: str) -> None:
    s = summarize(fleet(store_db), ["web1", "web2"], since=T0 + 3600, now=T0 + 8000)
    assert s["totals"] == {"blocked": 1, "would_block": 1, "logged": 0, "other": 1}
    assert s["since"] == "2026-12-01T06:00:00Z"
    assert {x["name"]: x["last_event"] for x in s["hosts"]}["web1"] is None


def test_timeline_buckets_add_up_to_the_totals(store_db: str) -> None:
    s = summarize(fleet(store_db), ["web1", "web2"], now=T0 + 8000)
    tl = s["timeline"]
    assert 1 <= len(tl["buckets"]) <= 49 and tl["bucket_seconds"] > 0
    for action in ("blocked", "would_block", "logged", "other"):
        assert sum(b[action] for b in tl["buckets"]) == s["totals"][action]


def test_failed_pulls_are_named(store_db: str) -> None:
    pulls = {"web1": HostPull("web1", ok=True, inserted=3),
             "web2": HostPull("web2", ok=False, error="Unreachable: refused")}
    s = summarize(fleet(store_db), ["web1", "web2"], pulls=pulls, now=T0 + 8000)
    assert s["failed_hosts"] == ["web2"]
    h = {x["name"]: x for x in s["hosts"]}
    assert (h["web1"]["pull"], h["web1"]["new_events"]) == ("ok", 3)
    assert (h["web2"]["pull"], h["web2"]["error"]) == ("failed", "Unreachable: refused")


def test_an_empty_store_summarizes_to_zeros(store_db: str) -> None:
    s = summarize(store_with(store_db, {}), ["web1"], now=T0)
    assert s["totals"]["blocked"] == 0 and s["timeline"]["buckets"] == [] and s["rules"] == []


@pytest.mark.parametrize("text,expect", [
    ("1h", T0 - 3600), ("7d", T0 - 7 * 86400), ("90s", T0 - 90), ("2w", T0 - 14 * 86400),
    ("1.5h", T0 - 5400), ("2026-12-01T05:00:00Z", T0), ("2026-12-01T05:00", T0),
    ("2026-12-01T06:00+01:00", T0), ("2026-12-01", T0 - 5 * 3600),
])
def test_since_accepts_durations_and_iso_times(text: str, expect: float) -> None:
    assert parse_since(text, now=T0) == pytest.approx(expect)


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", ""])
def test_since_refuses_anything_else_with_the_fix(text: str) -> None:
    with pytest.raises(ValueError, match=r"--since .*fix: e\.g\. 1h"):
        parse_since(text, now=T0)


def test_status_values_of_other_types_become_text(store_db: str) -> None:
    store = store_with(store_db, {})
    store.ingest("web1", [], cursor=None, lost=False,
                 status={"state": ["x"], "backend": 5, "policy_sha256": {"a": 1}})
    h = summarize(store, ["web1"], now=T0)["hosts"][0]
    assert (h["state"], h["backend"], h["policy_sha256"]) == ("['x']", "5", "{'a': 1}")
    from edrfleet.fleet.report.formats import render

    for fmt in ("table", "json", "csv", "html"):
        render(summarize(store, ["web1"], now=T0), fmt)


def test_top_lists_group_variants_of_one_command_by_rule(store_db: str) -> None:
    store = store_with(store_db, {
        "web1": [event("p1", rule="rm-root", cmd="/tmp/x1/rm -rf /", ts=T0),
                 event("p2", rule="rm-root", cmd="/tmp/x2/rm -rf /", ts=T0 + 1),
                 event("p3", rule="rm-root", cmd="/usr/bin/rm -rf /", ts=T0 + 2),
                 event("j1", rule="rm-root", cmd="rm -rf /tmp/job-7", ts=T0 + 3),
                 event("j2", rule="rm-root", cmd="rm -rf /tmp/job-1234", ts=T0 + 4),
                 event("h1", rule="rm-root", cmd="rm -rf /home", ts=T0 + 5),
                 event("d1", rule="other", cmd="rm -rf /", ts=T0 + 6)],
        "web2": [event("p4", rule="rm-root", cmd="/tmp/x3/rm -rf /", ts=T0 + 7,
                       host="web2")],
    })
    top = summarize(store, ["web1", "web2"], now=T0 + 60)["top_blocked"]
    assert [(c["rule"], c["pattern"], c["count"], c["hosts"], c["variants"]) for c in top] == [
        ("rm-root", "rm -rf /", 4, 2, 4),  # the program wherever it was copied
        ("rm-root", "rm -rf /tmp/job-#", 2, 1, 2),  # numbers vary in a loop
        ("other", "rm -rf /", 1, 1, 1),  # another rule: another line
        ("rm-root", "rm -rf /home", 1, 1, 1)]  # another target: another line
    assert top[0]["command_line"] == "/tmp/x1/rm -rf /"  # one real example (least in bytes)
    assert top[0]["last"] == "2026-12-01T05:00:07Z"


def test_would_block_commands_have_their_own_top_list(store_db: str) -> None:
    s = summarize(fleet(store_db), ["web1", "web2"], now=T0 + 8000)
    assert [(c["rule"], c["command_line"], c["count"]) for c in s["top_would_block"]] == [
        ("rm-root", "rm -rf /tmp/edrfleet-canary-1", 1)]
    assert all(c["command_line"] != "rm -rf /tmp/edrfleet-canary-1" for c in s["top_blocked"])


def test_rules_carry_their_attack_techniques(store_db: str) -> None:
    store = store_with(store_db, {"web1": [
        event("t1", rule="wipe", fields={"threat.technique.id": ["T1485", "T1070.004"]}),
        event("t2", rule="plain")]})
    rules = {r["rule"]: r for r in summarize(store, ["web1"], now=T0 + 60)["rules"]}
    assert rules["wipe"]["techniques"] == ["T1485", "T1070.004"]
    assert rules["plain"]["techniques"] == []


def test_latest_events_overall_and_per_host_on_request(store_db: str) -> None:
    s = summarize(fleet(store_db), ["web1", "web2"], now=T0 + 8000)
    assert "events" not in s and "host_events" not in s
    s = summarize(fleet(store_db), ["web1", "web2"], now=T0 + 8000, latest_events=4,
                  per_host_events=2)
    assert [e["id"] for e in s["events"]] == ["b3", "b2", "b1", "a3"]
    assert {h: [e["id"] for e in es] for h, es in s["host_events"].items()} == {
        "web1": ["a3", "a2"], "web2": ["b3", "b2"]}


def test_a_rules_techniques_come_from_its_newest_events(store_db: str) -> None:
    store = store_with(store_db, {"web1": [
        event("z-old", rule="wipe", ts=T0, fields={"threat.technique.id": ["T1070"]}),
        event("a-new", rule="wipe", ts=T0 + 7200, fields={"threat.technique.id": ["T1485"]})]})
    rules = {r["rule"]: r for r in summarize(store, ["web1"], now=T0 + 8000)["rules"]}
    assert rules["wipe"]["techniques"] == ["T1485"]  # the policy's tags today


@pytest.mark.parametrize("attacker", ["aa-evil", "zz-evil"])  # sorting before and after web1
def test_another_host_sending_the_same_event_id_cannot_change_the_techniques_shown(
        store_db: str, attacker: str) -> None:
    # The attacker copies web1's event id with forged tags: as a host outside the report's
    # selection, at the same time, and as one inside it, a second earlier.
    real = event("dup", rule="wipe", ts=T0 + 60, fields={"threat.technique.id": ["T1485"]})
    forged = {"threat.technique.id": ["T9999"]}
    store = store_with(store_db, {
        "web1": [real],
        attacker: [event("dup", rule="wipe", ts=T0 + 60, fields=forged)],
        "web2": [event("dup", rule="wipe", ts=T0 + 59, fields=forged)]})
    for hosts in (["web1"], ["web1", "web2"]):
        rules = {r["rule"]: r for r in summarize(store, hosts, now=T0 + 120)["rules"]}
        assert rules["wipe"]["techniques"] == ["T1485"], hosts
    assert store.raw_events([("web1", "dup"), (attacker, "dup"), ("web3", "dup")]).keys() == {
        ("web1", "dup"), (attacker, "dup")}
