"""Ctrl-C in run_pool: nothing new starts, what runs is let finish, then it propagates."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from edrfleet.fleet.transport.pool import run_pool


def test_ctrl_c_starts_no_other_item_and_lets_the_running_ones_finish() -> None:
    release = threading.Event()
    started: list[int] = []
    finished: list[int] = []
    lock = threading.Lock()

    def task(i: int) -> int:
        with lock:
            started.append(i)
        if i < 2:  # both workers busy when Ctrl-C comes
            release.wait(10)
            time.sleep(0.05)
        with lock:
            finished.append(i)
        return i

    main = threading.main_thread().ident
    assert main is not None

    def ctrl_c() -> None:
        while len(started) < 2:
            time.sleep(0.01)
        time.sleep(0.1)  # the main thread is waiting for results by now
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, to the thread that waits
        time.sleep(0.2)
        release.set()

    threading.Thread(target=ctrl_c, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_pool(list(range(6)), task, forks=2, on_error=lambda i, e: -1)
    assert sorted(started) == [0, 1] and sorted(finished) == [0, 1]
