"""What every Transport promises (edrfleet/fleet/transport/base.py), as checks that take a
transport: tests/unit/fleet/transport/test_local.py runs them on LocalTransport, the lab tier
(tests/lab/test_transport_lab.py) on SshTransport to a real sshd."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edrfleet.fleet.transport.base import CommandTimeout, RemoteError, Transport

HOSTILE = [
    "it's", 'say "hi"', "$(touch /tmp/edrfleet-pwned)", "`id`", "a;b", "x\ny\n", "*", "-n",
    "", "  spaces  ", "back\\slash", "\t", "ünïcode ✓", "$HOME", "!!", "{a,b}", "~", "#c",
]


def hostile_argv_words_arrive_intact(t: Transport) -> None:
    r = t.run(["printf", "%s\\0", *HOSTILE])
    assert r.stdout.decode().split("\0")[:-1] == HOSTILE
    r = t.run_script('for a in "$@"; do printf "%s\\0" "$a"; done', args=HOSTILE)
    assert r.stdout.decode().split("\0")[:-1] == HOSTILE
    assert t.run(["test", "-e", "/tmp/edrfleet-pwned"], check=False).rc == 1


def a_nul_byte_in_argv_is_refused(t: Transport) -> None:
    with pytest.raises(ValueError, match="NUL"):
        t.run(["echo", "a\0b"])


def stdin_and_output_are_bytes_exact(t: Transport) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    r = t.run(["cat"], input=data)
    assert r.stdout == data and r.rc == 0
    r = t.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (r.rc, r.stdout, r.stderr) == (3, b"out\n", b"err\n")


def unread_stdin_is_no_error_and_read_after_eof_gets_it_all(t: Transport, scratch: Path) -> None:
    data = b"x" * (8 << 20)  # more than any SSH window or pipe buffer
    assert t.run(["true"], input=data, timeout=20).rc == 0
    assert t.run(["head", "-c", "3"], input=data, timeout=20).stdout == b"xxx"
    # stdout closed first (the channel sees EOF), stdin still read to the end
    path = str(scratch / f"edrfleet-wc-{os.getpid()}")
    r = t.run(["sh", "-c", 'exec >&- 2>&-; wc -c > "$1"', "sh", path], input=data, timeout=20)
    assert r.rc == 0
    assert t.run(["cat", path]).stdout == f"{len(data)}\n".encode()
    t.run(["rm", "-f", path])


def a_failing_command_raises_remote_error_with_rc_and_stderr(t: Transport) -> None:
    with pytest.raises(RemoteError, match="exited 2.*No such file") as e:
        t.run(["ls", "/nonexistent-edrfleet"])
    assert e.value.rc == 2 and e.value.host == t.name
    assert str(e.value).startswith(f"{t.name}: ls /nonexistent-edrfleet exited 2: ")
    with pytest.raises(RemoteError, match="was killed by SIGKILL$"):
        t.run(["sh", "-c", "kill -9 $$"])
    killed = t.run(["sh", "-c", "kill -TERM $$"], check=False)
    assert (killed.rc, killed.signal) == (-1, "SIGTERM")


def a_command_past_its_timeout_raises_and_the_transport_still_works(t: Transport) -> None:
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match="timed out after 0.5 s") as e:
        t.run(["sleep", "30"], timeout=0.5)
    assert e.value.rc == -1 and time.monotonic() - t0 < 5
    assert t.run(["echo", "ok"]).stdout == b"ok\n"


def a_command_past_its_timeout_is_ended_on_the_host_with_what_it_started(
        t: Transport, d: Path) -> None:
    """Not only the wait ends: the command and its children stop, even one ignoring SIGTERM
    (``d``: a directory the transport's commands see at that path)."""
    pids = d / "pids"
    script = ('trap "" TERM; sleep 300 & echo $! > "$1.tmp"; echo $$ >> "$1.tmp"; '
              'mv "$1.tmp" "$1"; wait')
    with pytest.raises(CommandTimeout):
        t.run(["sh", "-c", script, "sh", str(pids)], timeout=1)
    started = t.run(["cat", str(pids)]).stdout.split()
    assert len(started) == 2
    deadline = time.monotonic() + 20  # the host's timeout: TERM at 1 s (+ grace), KILL after
    alive = started
    while alive and time.monotonic() < deadline:
        alive = [p for p in started
                 if t.run(["kill", "-0", p.decode()], check=False).rc == 0]
        time.sleep(0.2)
    assert not alive, f"still running on the host after the timeout: {alive}"


def put_lands_atomically_with_its_mode(t: Transport, d: Path) -> None:
    """``d``: an empty directory of mode 0700 that the transport's commands see at that path."""
    target = str(d / "policy.json")
    t.put(b"old\n", target)
    t.put(bytes(range(256)), target, mode=0o600)
    st = t.run(["stat", "-c", "%a %u", target]).stdout.split()
    assert st == [b"600", str(os.geteuid()).encode()]
    assert t.run(["cat", target]).stdout == bytes(range(256))
    t.put(b"shared\n", str(d / "other"), mode=0o644)
    assert t.run(["stat", "-c", "%a", str(d / "other")]).stdout == b"644\n"
    t.run(["rm", str(d / "other")])
    assert sorted(os.listdir(d)) == ["policy.json"]  # no temporary file left behind
    with pytest.raises(RemoteError, match="Directory nonexistent|No such file"):
        t.put(b"x", str(d / "missing" / "f"))
    assert sorted(os.listdir(d)) == ["policy.json"]


def a_script_gets_its_args_and_the_input_after_it(t: Transport) -> None:
    """The script travels on stdin (never argv, which the host's agent scans) and the input
    follows it intact, however large the script; without input its commands read nothing."""
    script = 'printf "%s|" "$1"; cat; printf "|%s" "done"\n' + "# pad\n" * 4000
    data = bytes(range(256)) * 64  # binary, with NULs and newlines
    r = t.run_script(script, args=["first"], input=data)
    assert r.stdout == b"first|" + data + b"|done"
    r = t.run_script(script, args=["none"])
    assert r.stdout == b"none||done"
    with pytest.raises(RemoteError, match="exited 3"):
        t.run_script("echo partial; exit 3")
    assert t.run_script("echo partial; exit 3", check=False).stdout == b"partial\n"
