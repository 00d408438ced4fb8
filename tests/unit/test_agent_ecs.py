"""ecs.resolve_executable: which path an event names as process.executable."""

from __future__ import annotations

import os

from edrfleet.agent import ecs

NO_PID = 2**22 + 1  # above pid_max's ceiling: /proc has no such process


def test_a_known_identity_names_the_policy_path():
    assert ecs.resolve_executable(NO_PID, (1, 2), {(1, 2): "/usr/bin/rm"}, "/x/rm") == "/usr/bin/rm"


def test_a_live_process_is_named_by_proc_exe():
    assert ecs.resolve_executable(os.getpid(), (0, 0), {}, "x") == os.readlink("/proc/self/exe")


def test_a_descriptor_path_is_not_resolved_in_the_agent(tmp_path):
    # /dev/fd/0 resolved here would be the agent's stdin, not the exec's file
    for path in ("/dev/fd/0", "/proc/self/fd/0"):
        assert ecs.resolve_executable(NO_PID, (0, 0), {}, path) == path


def test_a_gone_process_falls_back_to_the_real_as_executed_path(tmp_path):
    (tmp_path / "real").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    got = ecs.resolve_executable(NO_PID, (0, 0), {}, str(tmp_path / "link"))
    assert got == str(tmp_path / "real")
    assert ecs.resolve_executable(NO_PID, (0, 0), {}, "relative") == "relative"
