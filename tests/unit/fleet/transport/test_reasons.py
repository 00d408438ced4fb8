"""Connect failures in plain words, not the SSH library's."""

from __future__ import annotations

import errno

import paramiko
import pytest

from edrfleet.fleet.transport.reasons import plain_reason


def test_a_refused_connection_is_said_so_without_errno_none() -> None:
    exc = paramiko.ssh_exception.NoValidConnectionsError(
        {("127.0.0.1", 22): ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")})
    assert "[Errno None]" in str(exc)
    assert plain_reason(exc) == "connection refused"


@pytest.mark.parametrize("text, plain", [
    ("No existing session", "the server closed the connection during authentication"),
    ("No authentication methods available", "no key to offer (fix: "),
    ("Error reading SSH protocol banner[Errno 104] Connection reset by peer",
     "no SSH server answered on that port"),
])
def test_paramiko_phrases_are_translated(text: str, plain: str) -> None:
    assert plain_reason(paramiko.SSHException(text)).startswith(plain)


def test_others_pass_through() -> None:
    assert plain_reason(TimeoutError()) == "timed out"
    assert plain_reason(OSError(errno.EHOSTUNREACH, "No route to host")) == "no route to host"
    assert plain_reason(paramiko.SSHException("Incompatible ssh peer")) == "Incompatible ssh peer"
