"""Every tier: a run that leaves BPF programs pinned on this kernel fails.

Enforcement outlives the agent (it is pinned under /sys/fs/bpf/edrfleet/), so a test, bench or
fixture that forgets `agent disarm` leaves a program judging every exec of the machine after
the suite.  The instances pinned when the session starts (another checkout's agent) are not
this run's; any other one left at the end fails the run, naming it.
"""

from __future__ import annotations

import os

import pytest

PINS = "/sys/fs/bpf/edrfleet"
_BEFORE = pytest.StashKey[set]()  # the instances pinned when the session started


def _pinned() -> set[str]:
    try:
        return set(os.listdir(PINS))
    except OSError:  # not there (nothing pinned), or not root
        return set()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = _pinned()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = sorted(_pinned() - session.config.stash.get(_BEFORE, set()))
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (f"BPF programs left pinned by this run: {', '.join(f'{PINS}/{d}' for d in left)}"
                   " (fix: disarm in the test's teardown: edrfleet agent disarm --spool DIR)")
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
