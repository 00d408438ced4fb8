"""The one Transport protocol (how deploy, status, uninstall and report reach a host), its
Result and its errors, and :class:`PosixTransport`, the part every implementation shares.

Implementations: :class:`edrfleet.fleet.transport.ssh.SshTransport` (Fabric/paramiko) and
:class:`edrfleet.fleet.transport.local.LocalTransport` (this machine, ``ansible_connection:
local``); :func:`edrfleet.fleet.transport.connection.transport_for` picks one per host.

What every Transport promises (pinned for both by tests/unit/helpers/transport_contract.py):

- argv is a list of strings, each word reaches the command unchanged (no shell between); a NUL
  byte in a word is a ``ValueError`` before anything runs;
- stdin and stdout/stderr are bytes exactly as sent; a command that does not read its stdin
  is no error;
- ``check=True`` and a non-zero exit raise :class:`RemoteError` ("HOST: COMMAND exited RC:
  last stderr lines"); death by a signal is rc -1 with the signal's name in ``Result.signal``
  ("was killed by SIGKILL");
- a command past its ``timeout`` raises :class:`CommandTimeout` (rc -1), the command and what
  it started are ended on the host too (SSH: GNU ``timeout`` on the host, ssh.py), and the
  transport stays usable;
- ``put`` writes a temporary file beside the path, gives it the mode and renames it over the
  path (nothing half-written is ever seen, nothing is left behind on failure);
- become (``sudo -n``) is applied inside the transport, never by callers.
"""

from __future__ import annotations

import base64
import shlex
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edrfleet.errors import HostError


class Unreachable(HostError, ConnectionError):
    """Connect refused / timed out / auth failed / proxy failed / connection lost."""


class HostKeyError(Unreachable):
    """Unknown or changed host key; the message names the key, the known_hosts file and line,
    and the fix."""


class RemoteError(HostError, RuntimeError):
    """A command exited non-zero (with check=True), or ran past its timeout (rc -1)."""

    def __init__(self, host: str, command: str, rc: int, stderr: bytes, why: str = "") -> None:
        self.host, self.command, self.rc, self.stderr = host, command, rc, stderr
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        what = why or f"exited {rc}"
        super().__init__(f"{host}: {command[:200]} {what}" + (": " + " | ".join(tail)
                                                              if tail else ""))


class CommandTimeout(RemoteError):
    """The command ran past its timeout (rc -1); it was ended with its process group (local: a
    SIGKILL; SSH: the host's ``timeout`` sends SIGTERM, then SIGKILL)."""


class OutputTooLarge(HostError, RuntimeError):
    """The command printed more than the transport keeps (a host printing forever must not
    exhaust the controller); the channel was closed."""


@dataclass
class Result:
    rc: int
    stdout: bytes
    stderr: bytes
    signal: str = ""  # rc -1: the signal that ended the command ("SIGKILL"), when known


def checked(host: str, command: str, result: Result, check: bool) -> Result:
    """The result, or with ``check`` and a non-zero exit the RemoteError every transport
    raises; rc -1 is a command that died of a signal (named when the host said which)."""
    if check and result.rc != 0:
        why = ""
        if result.rc == -1:
            why = (f"was killed by {result.signal}" if result.signal
                   else "was killed by a signal (no exit status)")
        raise RemoteError(host, command, result.rc, result.stderr, why)
    return result


class HostLike(Protocol):
    """What a transport needs of edrfleet.fleet.inventory.load.Host."""

    name: str
    vars: Mapping[str, Any]


class Transport(Protocol):
    """One host's commands and files.  Context manager; one thread at a time."""

    name: str

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60,
            check: bool = True) -> Result: ...

    def run_script(self, script: str, *, args: Sequence[str] = (), input: bytes | None = None,
                   timeout: float = 60, check: bool = True) -> Result: ...

    def put(self, data: bytes, path: str, *, mode: int = 0o600) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Transport: ...

    def __exit__(self, *exc: object) -> None: ...


# Reads one base64 line (the script) from stdin and runs it; the rest of stdin (the payload) is
# left for the script: `read` takes a pipe one byte at a time, so it never reads past the line.
BOOTSTRAP = 'IFS= read -r s && eval "$(printf %s "$s" | base64 -d)"'


def script_command(script: str, args: Sequence[str],
                   input: bytes | None) -> tuple[list[str], bytes]:
    """(argv, stdin) that run the POSIX sh ``script`` with ``args`` as ``$1…`` and ``input``
    as its stdin.

    The script travels on stdin, never in argv: the host's own agent scans argv, and a script
    of a few KiB in ``sh -c`` is more than the kernel scans of a shell's command line, so the
    default policy blocks it as unscanned (and ``ps`` would show it to every user).  Without
    input, ``sh -s`` reads it; the braces make the shell read all of it before running any of
    it, and give its commands /dev/null, not the rest of the script, as stdin.  With input, a
    one-line bootstrap decodes the script and leaves the input after it for the script: it
    reads the line a byte at a time (~2 ms per KiB), so it is kept for when it is needed."""
    if input is None:
        return ["sh", "-s", "--", *args], f"{{\n{script}\n}} </dev/null\n".encode()
    line = base64.b64encode(script.encode()) + b"\n"
    return ["sh", "-c", BOOTSTRAP, "sh", *args], line + input


# Runs as `sh -c PUT put PATH TMP MODE` with the data on stdin.
_PUT = ('umask 077; trap \'rm -f "$2"\' EXIT; cat > "$2" && chmod "$3" "$2" '
        '&& mv -f "$2" "$1" && trap - EXIT')


class PosixTransport(ABC):
    """What SSH and local share: argv checks and the become prefix, ``run_script`` and ``put``
    built on ``run`` (so both run the same host-side commands), the context manager.
    Subclasses implement ``run`` (and ``close`` when they hold a connection)."""

    name: str
    become_prefix: tuple[str, ...] = ()

    def __enter__(self) -> PosixTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - a hook: only a connection has anything to close
        """Nothing to release unless the subclass holds a connection."""

    def full_argv(self, argv: Sequence[str]) -> list[str]:
        """The become prefix and argv, after refusing what no command can receive intact."""
        if isinstance(argv, str | bytes) or not argv:
            raise ValueError(f"{self.name}: argv must be a non-empty list of strings")
        for a in argv:
            if not isinstance(a, str):
                raise ValueError(f"{self.name}: argv word {a!r} is not a string")
            if "\0" in a:
                raise ValueError(f"{self.name}: argv word {a!r} holds a NUL byte, which no "
                                 "remote command can receive (fix: remove it)")
        return [*self.become_prefix, *argv]

    def command_line(self, argv: Sequence[str]) -> str:
        """The command line for argv: become prefix, every word shell-quoted."""
        return shlex.join(self.full_argv(argv))

    @abstractmethod
    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60,
            check: bool = True) -> Result:
        """Run argv on the host (no shell interpretation of any word) and return its result."""

    def run_script(self, script: str, *, args: Sequence[str] = (), input: bytes | None = None,
                   timeout: float = 60, check: bool = True) -> Result:
        """Run a POSIX sh script with ``args`` as ``$1…`` and ``input`` as its stdin."""
        argv, stdin = script_command(script, args, input)
        return self.run(argv, input=stdin, timeout=timeout, check=check)

    def put(self, data: bytes, path: str, *, mode: int = 0o600) -> None:
        """Write data to path atomically: a temporary file beside it gets the mode, then is
        renamed over path.  The parent directory must exist."""
        tmp = f"{path}.edrfleet-tmp-{uuid.uuid4().hex[:12]}"
        self.run(["sh", "-c", _PUT, "put", path, tmp, f"{mode:o}"], input=data, timeout=120)
