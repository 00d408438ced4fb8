"""The bounded pool, serial batches and the max-fail-percent rule."""

from __future__ import annotations

import threading
import time

import pytest

from edrfleet.fleet.transport.pool import batches, exceeded, parse_serial, run_pool


def test_pool_bounds_concurrency_and_keeps_order() -> None:
    live, peak, lock = [0], [0], threading.Lock()

    def task(i: int) -> int:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.02)
        with lock:
            live[0] -= 1
        return i * 2

    assert run_pool(list(range(20)), task, forks=4, on_error=lambda i, e: -1) == \
        [i * 2 for i in range(20)]
    assert peak[0] == 4


def test_one_failing_task_becomes_its_result_and_the_rest_run() -> None:
    def task(i: int) -> str:
        if i == 1:
            raise ConnectionError("refused")
        return "ok"

    out = run_pool([0, 1, 2], task, forks=3, on_error=lambda i, e: f"err {e}")
    assert out == ["ok", "err refused", "ok"]


def test_serial_counts_and_percentages() -> None:
    assert parse_serial("2") == 2 and parse_serial("30%") == pytest.approx(0.3)
    assert parse_serial(None) is None
    for bad in ("0", "x", "0%", "150%"):
        with pytest.raises(ValueError, match="--serial"):
            parse_serial(bad)
    hosts = list(range(10))
    assert batches(hosts, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(b) for b in batches(hosts, 0.25)] == [2, 2, 2, 2, 2]
    assert batches(hosts, 0.01) == [[h] for h in hosts]  # at least one host per batch
    assert batches(hosts, None) == [hosts]


def test_max_fail_percent_is_strictly_above() -> None:
    assert not exceeded(1, 4, 25) and exceeded(2, 4, 25)
    assert exceeded(1, 4, 0)
    assert not exceeded(3, 4, None) and exceeded(4, 4, None)  # Ansible: all of a batch
