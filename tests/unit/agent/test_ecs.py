"""ecs.resolve_executable: which path an event names as process.executable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edrfleet.agent import ecs

NO_PID = 2**22 + 1  # above pid_max's ceiling: /proc has no such process


def test_a_known_identity_names_the_policy_path():
    assert ecs.resolve_executable(NO_PID, (1, 2), {(1, 2): "/usr/bin/rm"}, "/x/rm") == "/usr/bin/rm"


def test_a_live_process_is_named_by_proc_exe():
    assert ecs.resolve_executable(os.getpid(), (0, 0), {}, "x") == os.readlink("/proc/self/exe")


def test_a_descriptor_path_is_never_resolved_in_the_agent():
    # /dev/fd/0 resolved here would be the agent's stdin, not the exec's file
    for path in ("/dev/fd/0", "/proc/self/fd/0"):
        assert ecs.resolve_executable(NO_PID, (0, 0), {}, path) == path


@pytest.fixture
def caller(tmp_path):
    """A live process with its cwd in tmp_path and tmp_path/prog open as descriptor 3."""
    (tmp_path / "prog").write_text("")
    code = ("import os, sys; os.dup2(os.open(sys.argv[1], os.O_RDONLY), 3); print(flush=True);"
            " sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "prog")], cwd=tmp_path,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.readline()  # descriptor 3 is in place
    yield p
    p.communicate(b"")


def test_a_refused_exec_is_named_by_its_target_not_by_the_caller(caller, tmp_path):
    prog = str(tmp_path / "prog")
    got = ecs.resolve_executable(caller.pid, (0, 0), {}, "prog", committed=False)
    assert got == prog  # relative to the caller's cwd, not /proc/PID/exe (python)
    assert ecs.resolve_executable(caller.pid, (0, 0), {}, prog, committed=False) == prog
    assert ecs.resolve_executable(caller.pid, (0, 0), {}, "/dev/fd/3", committed=False) == prog
    # committed: the new image is /proc/PID/exe
    exe = os.readlink(f"/proc/{caller.pid}/exe")
    assert ecs.resolve_executable(caller.pid, (0, 0), {}, "/dev/fd/3") == exe


def test_a_gone_process_falls_back_to_the_real_as_executed_path(tmp_path):
    (tmp_path / "real").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    got = ecs.resolve_executable(NO_PID, (0, 0), {}, str(tmp_path / "link"))
    assert got == str(tmp_path / "real")
    assert ecs.resolve_executable(NO_PID, (0, 0), {}, "relative") == "relative"
