"""Event fields of the context matchers: technique ids from tags, cwd, parent, user name."""

from __future__ import annotations

import os
import subprocess

from edrfleet.agent import ecs
from tests.unit.helpers.event_record import record

NO_PID = 2**22 + 1  # above pid_max's ceiling: /proc has no such process


def event(cwd: bytes, flags: int = 0, parent: bytes = b"bash", uid: int = 0, ppid: int = 1):
    return record(args=[b"true"], cwd=cwd, flags=flags, parent_name=parent, uid=uid, ppid=ppid)


def test_attack_tags_become_technique_ids_once_and_upper_case():
    tags = ["attack.t1070.003", "attack.defense-evasion", "ATTACK.T1059", "attack.t1059",
            "cve.2021.1234", "attack.t10700"]
    assert ecs.technique_ids(tags) == ["T1070.003", "T1059"]


def test_context_fields_name_parent_cwd_and_user():
    ev = event(b"/tmp/x", ppid=77)
    assert ecs.parent_fields(ev, "/usr/bin/bash") == {
        "pid": 77, "name": "bash", "executable": "/usr/bin/bash"}
    assert ecs.working_directory(ev) == "/tmp/x"
    assert ecs.user_fields(0) == {"id": "0", "name": "root"}


def test_a_cwd_deeper_than_the_walk_is_shown_as_its_tail():
    assert ecs.working_directory(event(b"/d/d", flags=ecs.FLAG_CWD_UNKNOWN)) == ".../d/d"


def test_an_unknown_parent_executable_is_omitted_not_replaced_by_its_name():
    assert ecs.parent_fields(event(b"/"), "") == {"pid": 1, "name": "bash"}
    assert ecs.parent_fields(event(b"/", parent=b""), "") == {"pid": 1}  # a kernel thread's


def test_an_unknown_uid_has_no_user_name():
    assert ecs.user_fields(4_000_000_000) == {"id": "4000000000"}


def test_the_parent_is_resolved_to_a_path_only_while_its_pid_runs_that_executable():
    exe = os.readlink("/proc/self/exe")
    name = os.path.basename(exe).encode()
    assert ecs.resolve_parent(event(b"/", parent=name, ppid=os.getpid())) == exe
    # gone: the bare name is not a path
    assert ecs.resolve_parent(event(b"/", parent=name, ppid=NO_PID)) == ""
    # the pid runs another image than the kernel saw (re-exec'd or reused): not that path
    assert ecs.resolve_parent(event(b"/", parent=b"bash", ppid=os.getpid())) == ""
    assert ecs.resolve_parent(event(b"/", parent=b"", ppid=os.getpid())) == ""


def test_a_deleted_or_long_parent_executable_still_names_its_file():
    assert ecs.names_file("/memfd:rm (deleted)", "memfd:rm")
    assert ecs.names_file("/opt/" + "x" * 80, "x" * 63, cut=True)
    assert not ecs.names_file("/opt/" + "x" * 80, "x" * 63)
    assert not ecs.names_file("/usr/bin/dash", "bash")


def test_a_parent_that_exits_after_the_exec_keeps_no_stale_path():
    exe = os.readlink("/proc/self/exe")
    p = subprocess.Popen([exe, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    ev = event(b"/", parent=os.path.basename(exe).encode(), ppid=p.pid)
    assert ecs.resolve_parent(ev) == exe  # alive: its path
    p.communicate(b"")  # exited and reaped: /proc/PID is gone
    assert ecs.resolve_parent(ev) == ""
