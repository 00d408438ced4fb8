"""What base.py gives every transport: the script-on-stdin command, the error message shape,
argv refusals, put's command."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from edrfleet.fleet.transport.base import (
    CommandTimeout,
    PosixTransport,
    RemoteError,
    Result,
    checked,
    script_command,
)

PAYLOAD = bytes(range(256)) * 64  # binary, with NULs and newlines
BIG = 'printf "%s|" "$0" "$1"; cat; printf "|%s" "done"\n' + "# pad\n" * 4000  # > scan budget


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_script_with_input_runs_and_leaves_the_input_for_it(shell: str) -> None:
    argv, stdin = script_command(BIG, ["a b"], PAYLOAD)
    assert argv[0] == "sh" and len(" ".join(argv)) < 200  # the kernel scans argv: not the script
    out = subprocess.run([shell, *argv[1:]], input=stdin, capture_output=True, check=True)
    assert out.stdout == b"sh|a b|" + PAYLOAD + b"|done"


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_script_without_input_is_read_whole_before_it_runs(shell: str) -> None:
    """Its commands read /dev/null, not the rest of the script (one that did would eat it)."""
    argv, stdin = script_command(BIG + "echo last\n", ["x"], None)
    assert argv[:3] == ["sh", "-s", "--"] and len(" ".join(argv)) < 200
    out = subprocess.run([shell, *argv[1:]], input=stdin, capture_output=True, check=True)
    assert out.stdout == shell.encode() + b"|x||donelast\n"  # $0: the shell itself


def test_a_script_without_input_that_fails_to_parse_runs_nothing() -> None:
    argv, stdin = script_command("echo ran\nif then\n", [], None)
    out = subprocess.run(argv, input=stdin, capture_output=True)
    assert out.returncode != 0 and out.stdout == b""


def test_remote_error_names_host_command_exit_and_the_last_stderr_lines() -> None:
    err = b"".join(b"line %d\n" % i for i in range(8))
    e = RemoteError("web1", "ls /x", 2, err)
    assert str(e) == "web1: ls /x exited 2: line 3 | line 4 | line 5 | line 6 | line 7"
    assert (e.host, e.command, e.rc, e.stderr) == ("web1", "ls /x", 2, err)
    assert str(RemoteError("w", "x" * 500, 1, b"")) == f"w: {'x' * 200} exited 1"
    t = CommandTimeout("w", "sleep 9", -1, b"", "timed out after 1 s")
    assert isinstance(t, RemoteError) and str(t) == "w: sleep 9 timed out after 1 s"


def test_checked_raises_only_when_asked_and_names_a_signal() -> None:
    ok, bad, killed = Result(0, b"o", b""), Result(3, b"", b"e\n"), Result(-1, b"", b"")
    assert checked("h", "c", ok, True) is ok and checked("h", "c", bad, False) is bad
    with pytest.raises(RemoteError, match="^h: c exited 3: e$"):
        checked("h", "c", bad, True)
    with pytest.raises(RemoteError, match="^h: c was killed by a signal"):
        checked("h", "c", killed, True)
    with pytest.raises(RemoteError, match="^h: c was killed by SIGKILL$"):
        checked("h", "c", Result(-1, b"", b"", "SIGKILL"), True)


class Recording(PosixTransport):
    """A PosixTransport that records what it would run."""

    def __init__(self, become: Sequence[str] = ()) -> None:
        self.name, self.become_prefix = "h", tuple(become)
        self.ran: list[tuple[list[str], bytes | None, float]] = []

    def run(self, argv, *, input=None, timeout=60, check=True) -> Result:
        self.ran.append((self.full_argv(argv), input, timeout))
        return Result(0, b"", b"")


@pytest.mark.parametrize("argv, message", [
    (["echo", "a\0b"], "NUL"),
    ("echo hi", "non-empty list"),
    ([], "non-empty list"),
    (["echo", b"bytes"], "not a string"),
])
def test_argv_that_cannot_arrive_intact_is_refused(argv, message) -> None:
    with pytest.raises(ValueError, match=f"^h: .*{message}"):
        Recording().full_argv(argv)


def test_become_goes_in_front_of_run_run_script_and_put() -> None:
    t = Recording(["sudo", "-n", "--"])
    t.run_script("echo hi", args=["x"])
    t.put(b"data", "/etc/edrfleet/policy.json", mode=0o640)
    (script_argv, script_in, _), (put_argv, put_in, put_timeout) = t.ran
    assert script_argv == ["sudo", "-n", "--", "sh", "-s", "--", "x"]
    assert b"echo hi" in script_in
    assert put_argv[:5] == ["sudo", "-n", "--", "sh", "-c"]
    assert put_argv[6:8] == ["put", "/etc/edrfleet/policy.json"]
    assert put_argv[8].startswith("/etc/edrfleet/policy.json.edrfleet-tmp-")
    assert put_argv[9] == "640" and put_in == b"data" and put_timeout == 120
    assert t.command_line(["printf", "%s", "a b"]) == "sudo -n -- printf %s 'a b'"


def test_the_context_manager_closes() -> None:
    closed = []

    class Closing(Recording):
        def close(self) -> None:
            closed.append(True)

    with Closing() as t:
        t.run(["true"])
    assert closed == [True]
