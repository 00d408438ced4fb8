"""LocalTransport: the shared Transport promises (tests/unit/helpers/transport_contract.py,
the same checks the lab tier runs over SSH), and what only the local one does."""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass, field

import pytest

from edrfleet.fleet.transport.base import CommandTimeout, RemoteError
from edrfleet.fleet.transport.local import LocalTransport
from tests.unit.helpers import transport_contract as contract


@dataclass
class H:
    name: str
    vars: dict = field(default_factory=dict)


@pytest.fixture()
def t():
    with LocalTransport("here") as transport:
        yield transport


def test_hostile_argv_words_arrive_intact(t) -> None:
    contract.hostile_argv_words_arrive_intact(t)


def test_a_nul_byte_in_argv_is_refused_before_anything_runs(t) -> None:
    contract.a_nul_byte_in_argv_is_refused(t)


def test_stdin_and_output_are_bytes_exact(t) -> None:
    contract.stdin_and_output_are_bytes_exact(t)


def test_unread_stdin_is_no_error_and_a_read_after_eof_gets_it_all(t, tmp_path) -> None:
    contract.unread_stdin_is_no_error_and_read_after_eof_gets_it_all(t, tmp_path)


def test_a_failing_command_raises_remote_error_with_rc_and_stderr(t) -> None:
    contract.a_failing_command_raises_remote_error_with_rc_and_stderr(t)


def test_a_command_past_its_timeout_raises_and_the_transport_still_works(t) -> None:
    contract.a_command_past_its_timeout_raises_and_the_transport_still_works(t)


def test_put_lands_atomically_with_its_mode(t, tmp_path) -> None:
    d = tmp_path / "config"
    d.mkdir(mode=0o700)
    contract.put_lands_atomically_with_its_mode(t, d)


def test_a_script_gets_its_args_and_the_input_after_it(t) -> None:
    contract.a_script_gets_its_args_and_the_input_after_it(t)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_timeout_ends_the_command_and_what_it_started(t, tmp_path) -> None:
    pids = tmp_path / "pids"
    with pytest.raises(CommandTimeout):
        # a child in the background and one in the foreground, both outliving the timeout
        t.run(["sh", "-c", 'sleep 60 & echo $! > "$1"; echo $$ >> "$1"; sleep 60', "sh",
               str(pids)], timeout=0.5)
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in started)


def test_a_missing_program_is_rc_127_as_from_a_shell(t, tmp_path) -> None:
    r = t.run(["edrfleet-no-such-program"], check=False)
    assert r.rc == 127 and b"edrfleet-no-such-program" in r.stderr
    with pytest.raises(RemoteError, match="edrfleet-no-such-program exited 127"):
        t.run(["edrfleet-no-such-program"])
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    assert t.run([str(script)], check=False).rc == 126


def test_a_host_with_become_runs_through_sudo_unless_it_already_is_that_user() -> None:
    me = H("ctl", {"ansible_connection": "local", "ansible_become": True,
                   "ansible_become_user": "edrfleet-nobody"})
    t = LocalTransport.for_host(me)
    assert t.name == "ctl"
    assert t.command_line(["id"]) == "sudo -n -u edrfleet-nobody -- id"
    user = pwd.getpwuid(os.geteuid()).pw_name
    same = LocalTransport.for_host(H("ctl", {"ansible_become": True,
                                             "ansible_become_user": user}))
    assert same.command_line(["id"]) == "id"
    with pytest.raises(ValueError, match="ansible_become_method 'su'"):
        LocalTransport.for_host(H("ctl", {"ansible_become": True,
                                          "ansible_become_method": "su"}))


def test_a_transport_is_a_context_manager_and_usable_after_close(t) -> None:
    t.close()
    assert t.run(["echo", "again"]).stdout == b"again\n"
