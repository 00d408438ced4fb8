"""Logged execs folded under a flood: every exec counted once, by events or by summaries."""

from __future__ import annotations

from types import SimpleNamespace

from edrfleet.agent.logfold import LOGGED, LogFolds
from edrfleet.kernel_abi import load_header
from edrfleet.paths import BPF

KEY = (1, 0, 2049, 777, LOGGED)
BLOCKED = load_header(BPF)["EDR_EV_BLOCKED"]
WINDOW = 1_000_000_000


def event(seq: int, count: int, cpu: int = 0, key=KEY):
    gen, rule, dev, ino, action = key
    ev = SimpleNamespace(gen=gen, rule=rule, dev=dev, ino=ino, action=action, agg_seq=seq,
                         count=count, agg_cpu=cpu)
    doc = {"event": {"id": f"e{seq}"}, "edrfleet": {"count": count}, "@timestamp": "t0"}
    return ev, doc


def value(seen: int, sent: int, window_ns: int = 0):
    return SimpleNamespace(seen=seen, sent=sent, window_ns=window_ns, in_window=0)


def counted(folds: LogFolds, evs, sweeps) -> int:
    total = 0
    for ev, doc in evs:
        folds.on_event(ev, doc)
        total += doc["edrfleet"]["count"]
    for entries, now in sweeps:
        total += sum(d["edrfleet"]["count"] for d in folds.sweep(entries, now, "t1"))
    return total


def test_an_event_that_is_not_aggregated_stands_for_one_exec():
    ev, doc = event(0, 1)
    LogFolds(WINDOW).on_event(ev, doc)
    assert doc["edrfleet"]["count"] == 1


def test_a_tail_no_event_carried_becomes_one_summary_once_the_window_is_over():
    folds = LogFolds(WINDOW)
    ev, doc = event(32, 1)
    folds.on_event(ev, doc)
    entries = [(KEY, [value(seen=500, sent=32, window_ns=10)])]
    assert folds.sweep(entries, 10 + WINDOW // 2, "t1") == []  # window not over yet
    (summary,) = folds.sweep(entries, 10 + WINDOW, "t1")
    assert summary["edrfleet"]["count"] == 468 and summary["edrfleet"]["summary"] is True
    assert summary["event"]["id"] != doc["event"]["id"] and summary["@timestamp"] == "t1"
    assert "summary" not in doc["edrfleet"]  # the sample is copied, not changed
    assert folds.sweep(entries, 10 + 2 * WINDOW, "t2") == []  # reported once


def test_a_sweep_before_the_event_that_carries_the_same_execs_counts_them_once():
    folds = LogFolds(WINDOW)
    first = event(32, 32)
    # the sweep sees seen=100 while the event for exec 101 (carrying 33..101) is still queued
    total = counted(folds, [first], [([(KEY, [value(100, 32)])], WINDOW)])
    late, doc = event(101, 69)
    folds.on_event(late, doc)
    assert doc["edrfleet"]["count"] == 1
    assert total + doc["edrfleet"]["count"] == 101


def test_cpus_are_counted_apart():
    folds = LogFolds(WINDOW)
    total = counted(folds, [event(5, 5, cpu=0), event(3, 3, cpu=1)],
                    [([(KEY, [value(9, 5), value(7, 3)])], WINDOW)])
    assert total == 16


def test_without_an_event_to_copy_the_tail_is_counted_lost():
    folds = LogFolds(WINDOW)
    assert folds.sweep([(KEY, [value(40, 32)])], WINDOW, "t", force=True) == []
    assert folds.lost_logs == 8


def test_the_logged_action_is_the_headers():
    assert load_header(BPF)["EDR_EV_LOGGED"] == LOGGED


def test_refused_blocks_are_summarized_at_once_from_the_keys_last_block_event():
    key = (1, 4, 2049, 778, BLOCKED)
    folds = LogFolds(WINDOW)
    ev, doc = event(0, 1, key=key)
    folds.on_event(ev, doc)
    assert doc["edrfleet"]["count"] == 1
    # refused now: no window to wait for, the kernel sends nothing more for them
    entries = [(key, [value(seen=40, sent=0, window_ns=WINDOW), value(seen=2, sent=0)])]
    (summary,) = folds.sweep(entries, WINDOW, "t1")
    assert summary["edrfleet"]["count"] == 42 and folds.summarized_blocks == 42
    assert folds.sweep(entries, WINDOW + 1, "t2") == []
    orphan = (1, 5, 2049, 779, BLOCKED)  # no event of it read yet: nothing to copy
    assert folds.sweep([(orphan, [value(3, 0)])], WINDOW, "t3") == []
    assert folds.summarized_blocks == 42 and folds.lost_logs == 0  # the kernel counted them
    ev, doc = event(0, 1, key=orphan)
    folds.on_event(ev, doc)  # its one event that fitted, read after the sweep
    (late,) = folds.sweep([(orphan, [value(3, 0)])], WINDOW, "t4")
    assert late["edrfleet"]["count"] == 3 and folds.summarized_blocks == 45


def test_forgotten_keys_leave_no_state():
    folds = LogFolds(WINDOW)
    ev, doc = event(3, 3)
    folds.on_event(ev, doc)
    folds.forget([KEY])
    assert folds.claimed == {} and folds.samples == {}
