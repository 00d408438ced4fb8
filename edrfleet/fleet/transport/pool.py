"""A bounded pool over hosts, and Ansible's ``serial`` batches.

Partial failure is a value: the task returns a result per host and an exception in one task
becomes that host's result (via ``on_error``), never an abort of the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_FORKS = 50


def run_pool(items: Sequence[T], task: Callable[[T], R], *, forks: int,
             on_error: Callable[[T, BaseException], R],
             on_done: Callable[[T, R], None] | None = None) -> list[R]:
    """``task(item)`` for every item, at most ``forks`` at once; results in item order.

    KeyboardInterrupt: the items not started are dropped, those running are waited for, then
    it propagates."""
    if not items:
        return []
    results: dict[int, R] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(items)))) as ex:
        futures: dict[Future[R], int] = {}
        try:
            for i, item in enumerate(items):
                futures[ex.submit(task, item)] = i
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # one host's bug must not stop the fleet
                    res = on_error(items[i], exc)
                results[i] = res
                if on_done is not None:
                    on_done(items[i], res)
        except KeyboardInterrupt:
            # Ctrl-C: start no other item, and let those in flight finish: a host's apply is
            # one host-side script, and cutting its connection half-way could leave the host
            # half-changed with no way to roll it back.
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return [results[i] for i in range(len(items))]


def parse_serial(text: str | None) -> int | float | None:
    """``"5"`` -> 5 hosts per batch, ``"30%"`` -> 0.3 of the play; None -> one batch."""
    if text is None or text == "":
        return None
    t = text.strip()
    try:
        if t.endswith("%"):
            value = float(t[:-1])
            if not 0 < value <= 100:
                raise ValueError
            return value / 100
        n = int(t)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise ValueError(f"--serial {text!r}: give a host count (5) or a percentage (30%) "
                         "greater than 0") from None


def batches(items: Sequence[T], serial: int | float | None) -> list[list[T]]:
    """Split like Ansible's ``serial``: a count, or a fraction of all hosts (rounded down,
    at least one)."""
    if serial is None:
        return [list(items)] if items else []
    size = serial if isinstance(serial, int) else max(1, math.floor(len(items) * serial))
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def exceeded(failed: int, total: int, max_fail_percent: float | None) -> bool:
    """Ansible's rule: stop when the failed share of a batch is above the percentage; without
    one, only when every host of the batch failed."""
    if total == 0:
        return False
    if max_fail_percent is None:
        return failed == total
    return failed * 100 / total > max_fail_percent
