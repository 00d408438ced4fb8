"""Commands on this machine, with the SSH transport's semantics: a host with
``ansible_connection: local``, and what the unit tests and benches run the host-side scripts
and ``agent.pyz pull`` through.

Same as over SSH (edrfleet/fleet/transport/base.py): argv words reach the command unchanged,
bytes in and out, the same RemoteError message, rc -1 for a death by a signal, ``run_script``
and ``put`` as the same host-side commands, become as ``sudo -n``.  Differences a caller may
meet: a timeout ends the command and everything it started in its process group (over SSH
only the channel is closed); a missing program is rc 127 (126 if it cannot be executed) with
``PROG: reason`` on stderr, where a login shell says ``sh: 1: PROG: not found``; commands
inherit this process's environment and working directory; nothing is ever Unreachable.
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import subprocess
from collections.abc import Sequence

from edrfleet.fleet.transport.base import (
    CommandTimeout,
    HostLike,
    PosixTransport,
    Result,
    checked,
)
from edrfleet.fleet.transport.settings import become_prefix

# After a timeout's SIGKILL: how long to wait for the pipes to close (a descendant that left
# the process group may hold them open; then they are closed on our side).
_REAP_SECONDS = 5.0


class LocalTransport(PosixTransport):
    """This machine as a host.  Context manager (nothing to connect or close).

    >>> LocalTransport().run(["printf", "%s", "a b"]).stdout
    b'a b'
    """

    def __init__(self, name: str = "localhost", *, become: Sequence[str] = ()) -> None:
        self.name = name
        self.become_prefix = tuple(become)

    @classmethod
    def for_host(cls, host: HostLike) -> LocalTransport:
        """The transport for an inventory host with ``ansible_connection: local``: its name,
        and its become variables judged against the user this process runs as."""
        user = pwd.getpwuid(os.geteuid()).pw_name
        return cls(host.name, become=become_prefix(host.name, host.vars, user))

    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60,
            check: bool = True) -> Result:
        """Run argv here (no shell between) and return its result."""
        full = self.full_argv(argv)
        command = shlex.join(full)
        try:
            # its own session: a timeout can end the command and whatever it started
            proc = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:  # what a shell would report, as a result
            rc = 127 if isinstance(exc, FileNotFoundError) else 126
            why = f"{full[0]}: {exc.strerror or exc}\n".encode()
            return checked(self.name, command, Result(rc, b"", why), check)
        try:
            out, err = proc.communicate(input or b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            _end(proc)
            raise CommandTimeout(self.name, command, -1, b"",
                                 f"timed out after {timeout:g} s") from None
        except BaseException:  # ^C or a thread's exit: leave nothing running
            _end(proc)
            raise
        if proc.returncode < 0:  # a signal, as SSH reports it: rc -1 and the signal's name
            sig = signal.Signals(-proc.returncode).name
            return checked(self.name, command, Result(-1, out, err, sig), check)
        return checked(self.name, command, Result(proc.returncode, out, err), check)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group, reap it, close its pipes."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
