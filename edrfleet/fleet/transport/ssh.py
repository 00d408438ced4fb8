"""SSH to one host: Fabric's Connection underneath, strict host keys, argv quoted, bytes kept.

Where the settings come from: the host's inventory variables, and below them Ansible's own
configuration, ansible.cfg and ANSIBLE_* (settings.py, edrfleet/fleet/config.py; docs/fleet.md).
No ``ssh_config`` file is read (neither ~/.ssh/config nor /etc/ssh/ssh_config) and no Fabric
or Invoke config file either: only what Ansible itself would use.  Jump hosts and proxies
go in ``ansible_ssh_common_args``; of those arguments only
``-o ProxyCommand=…``, ``-o ProxyJump=…`` and ``-J …`` are used, everything else is ignored
(known hosts come from ``edrfleet_known_hosts_file``, never from ``-o UserKnownHostsFile``).

Host keys are checked against the user's ``~/.ssh/known_hosts`` plus the inventory-level file,
with OpenSSH's verdicts (edrfleet/fleet/transport/known_hosts.py).  Fabric's ``AutoAddPolicy`` is
replaced: an unknown key fails the host unless ``edrfleet_host_key_policy: accept-new``, which
records it in the inventory-level file; a changed key always fails.  Jump hosts are checked the
same way.  With a private key file, only that key is offered (no agent, no ~/.ssh/id_*).

Commands run on a raw session channel of Fabric's transport, not ``Connection.run``: Invoke's
runner decodes output to text and has no stdin-bytes API; here stdout/stderr stay bytes and the
timeout covers the whole command.  The remote login shell must be POSIX (sh, bash, dash, zsh):
``shlex.join`` quoting is what it parses.

A timeout ends the command on the host too: closing the channel alone leaves it running there
(sshd sends no signal to a command without a terminal).  Every command runs under the host's
``timeout -k 5 T+1`` (coreutils; busybox's has the same options), inside the become prefix so it
may signal what sudo started: at T the controller gives up, a second later the host's
``timeout`` sends SIGTERM to the command's process group and SIGKILL five seconds after.  A
command that dies of a signal is reported by its name ("killed by SIGKILL"): sshd sends it as
an ``exit-signal`` request, which paramiko drops; each connection's channel handler table gets
a wrapper that records it (``_exit_signal_aware``).

One SshTransport per host, used from one thread (a ThreadPoolExecutor worker); it connects on
the first call and reconnects after ``close``.  The protocol it implements, its errors and the
``run_script``/``put`` it shares with the local transport: edrfleet/fleet/transport/base.py.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from edrfleet.fleet.transport import known_hosts as kh
from edrfleet.fleet.transport.base import (
    CommandTimeout,
    HostKeyError,
    HostLike,
    OutputTooLarge,
    PosixTransport,
    Result,
    Unreachable,
    checked,
)
from edrfleet.fleet.transport.hostkey_check import CERT_ALGORITHMS, HostKeyVerifier, preferring
from edrfleet.fleet.transport.reasons import plain_reason
from edrfleet.fleet.transport.settings import Hop, Settings

_BUF = 1 << 16
# What one command's output may hold on the controller, whatever the host sends (a compromised
# host printing forever must not exhaust it): stdout past MAX_STDOUT fails the command (the
# largest legitimate reply, a 16 MiB pull frame, is ~22 MiB encoded); of stderr only the
# last MAX_STDERR bytes are kept (it is read for its tail, the error message).
MAX_STDOUT = 32 << 20
MAX_STDERR = 64 << 10
# The host's timeout: the controller's plus REMOTE_GRACE s (so the controller reports the
# timeout, not the host's exit 124), then SIGKILL REMOTE_KILL_AFTER s after the SIGTERM.
REMOTE_GRACE = 1
REMOTE_KILL_AFTER = 5
# paramiko logs failures it also raises ("Secsh channel open FAILED", socket errors); with no
# handler configured Python would print them to stderr over the CLI's own output.  Errors
# reach the user as exceptions; an application that configures logging still gets these.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def _fabric_config() -> Config:
    # lazy: no /etc/fabric.yml, ~/.fabric.yml, ~/.ssh/config or /etc/ssh/ssh_config.
    return Config(lazy=True, overrides={"load_ssh_configs": False})


class SshTransport(PosixTransport):
    """SSH to one inventory host.  Context manager; connects on first use.

    >>> with SshTransport(host, inventory.path.parent) as t:
    ...     t.run(["uname", "-r"]).stdout
    b'6.1.0-18-amd64\\n'

    Raises Unreachable (HostKeyError for host keys) when the host cannot be reached or lost,
    RemoteError when a checked command fails or times out, ValueError for bad host variables.
    """

    def __init__(self, host: HostLike, inventory_dir: Path, *,
                 connect_timeout: float = 10) -> None:
        self.name = host.name
        self.settings = Settings.from_vars(host.name, host.vars, Path(inventory_dir))
        self.connect_timeout = max(1, int(round(self.settings.connect_timeout
                                                or connect_timeout)))
        self.become_prefix = self.settings.become_prefix
        self._conn: Connection | None = None
        self._conns: list[Connection] = []  # target last; jump hosts before it

    # --- connecting --------------------------------------------------------------------------
    def _connection(self, hop: Hop, known: kh.KnownHosts,
                    gateway: Connection | None) -> Connection:
        s = self.settings
        auth: dict[str, Any] = {"banner_timeout": self.connect_timeout,
                                "auth_timeout": self.connect_timeout,
                                "channel_timeout": self.connect_timeout}
        if s.key_file and s.cert_file:  # the key with that certificate, and only it
            auth.update(pkey=self._certified_key(), look_for_keys=False, allow_agent=False)
        elif s.key_file:  # paramiko offers KEY-cert.pub with it when that file exists
            auth.update(key_filename=[s.key_file], look_for_keys=False, allow_agent=False)
        name = kh.host_key_name(hop.host, hop.port)
        types = known.known_types(name)
        allowed = {a for t in types for a in kh.ALGORITHMS_FOR_TYPE.get(t, (t,))}
        plain = [k for k in paramiko.Transport._preferred_keys if not types or k in allowed]
        if known.authorities(name):  # a CA is trusted for it: certificates first, as ssh does
            auth["transport_factory"] = preferring(CERT_ALGORITHMS + plain)
        elif types:  # ask the server for a key type we can check, as ssh does
            auth["disabled_algorithms"] = {
                "keys": [k for k in paramiko.Transport._preferred_keys if k not in plain]}
        conn = Connection(hop.host, user=hop.user, port=hop.port, config=_fabric_config(),
                          gateway=gateway if gateway is not None else False,
                          connect_timeout=self.connect_timeout, connect_kwargs=auth)
        client = paramiko.SSHClient()  # replaces Fabric's, which auto-adds unknown keys
        client.set_missing_host_key_policy(HostKeyVerifier(s, known))
        conn.client = client
        return conn

    def _certified_key(self) -> paramiko.PKey:
        """The private key with ``-o CertificateFile=`` loaded into it (Unreachable naming
        the file when either cannot be used)."""
        s = self.settings
        assert s.key_file and s.cert_file
        try:
            key = paramiko.PKey.from_path(s.key_file)
            key.load_certificate(s.cert_file)
        except (OSError, ValueError, paramiko.SSHException) as exc:
            raise Unreachable(f"{self.name}: cannot use the certificate {s.cert_file} with "
                              f"the key {s.key_file}: {exc} (fix: CertificateFile= the "
                              "-cert.pub that ssh-keygen -s wrote for this key)") from None
        return key

    def open(self) -> None:
        """Connect now (run/put connect on demand); raises Unreachable / HostKeyError."""
        if self._conn is not None and self._conn.is_connected:
            return
        self.close()
        s = self.settings
        if s.key_file and not os.path.isfile(s.key_file):
            raise Unreachable(f"{self.name}: the private key file {s.key_file} does not "
                              "exist (fix: the path of the private key)")
        try:
            known = kh.KnownHosts(list(s.known_hosts_files))
        except OSError as exc:
            raise HostKeyError(f"{self.name}: cannot read known_hosts {exc.filename}: "
                               f"{exc.strerror} (fix: make it readable)") from None
        gateway: Connection | None = None
        for hop in s.proxy.jumps:
            gateway = self._connection(hop, known, gateway)
            self._conns.append(gateway)
        conn = self._connection(s.target, known, gateway)
        if s.proxy.command:
            conn.connect_kwargs["sock"] = paramiko.ProxyCommand(s.proxy.command)
        self._conns.append(conn)
        where = f"{s.target.user}@{s.target.host}:{s.target.port}"
        try:
            conn.open()
        except HostKeyError:
            self.close()
            raise
        except paramiko.AuthenticationException as exc:
            self.close()
            raise Unreachable(f"{self.name}: authentication to {where} failed ({exc}); "
                              f"fix: authorize {s.key_file or 'your key'} for "
                              f"{s.target.user}") from None
        except paramiko.IncompatiblePeer as exc:
            self.close()
            if "host key" not in str(exc):
                raise Unreachable(f"{self.name}: cannot connect to {where}: {exc}") from None
            name = kh.host_key_name(s.target.host, s.target.port)
            lines = ", ".join(f"{e.where} ({e.keytype})" for e in known.for_name(name))
            if not lines:  # it was a jump host
                raise HostKeyError(f"{self.name}: a jump host offers none of the host key "
                                   f"types known for it: {exc}") from None
            raise HostKeyError(
                f"{self.name}: {name} offers none of the host key types known for it ({lines}); "
                f"if its keys changed, remove those lines (ssh-keygen -R '{name}' -f FILE) "
                "and connect again") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            if isinstance(exc, paramiko.ChannelException):
                why = f"the jump host could not open a connection to it ({exc.text})"
            else:
                why = plain_reason(exc)
            via = " via ProxyCommand" if s.proxy.command else (
                " via " + ",".join(h.host for h in s.proxy.jumps) if s.proxy.jumps else "")
            raise Unreachable(f"{self.name}: cannot connect to {where}{via}: {why}") from None
        for c in self._conns:  # jump hosts carry the same small packets
            _no_delay(c)
        conn.transport.set_keepalive(15)  # a host that dies mid-command fails, not hangs
        _exit_signal_aware(conn.transport)
        self._conn = conn

    def close(self) -> None:
        for c in reversed(self._conns):
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may raise anything
                pass
        self._conns.clear()
        self._conn = None

    # --- commands ----------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60,
            check: bool = True) -> Result:
        """Run argv on the host (no shell interpretation of any word) and return its result;
        past ``timeout`` the host ends it too (the module's docstring)."""
        command = self.command_line(argv)  # what messages show; checks argv
        limited = [*self.become_prefix, *remote_timeout(timeout), *argv]
        return self._exec(shlex.join(limited), command, input, timeout, check)

    def _exec(self, wire: str, command: str, input: bytes | None, timeout: float,
              check: bool) -> Result:
        self.open()
        assert self._conn is not None
        deadline = time.monotonic() + timeout
        try:
            chan = self._conn.transport.open_session(timeout=self.connect_timeout)
            try:
                chan.exec_command(wire)
                out, err, rc = _pump(chan, input or b"", deadline)
            finally:
                chan.close()
        except TimeoutError:
            raise CommandTimeout(self.name, command, -1, b"",
                                 f"timed out after {timeout:g} s") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise Unreachable(f"{self.name}: connection lost running {command[:120]}: "
                              f"{exc or type(exc).__name__}") from None
        sig = getattr(chan, _SIGNAL_ATTR, "") if rc == -1 else ""
        return checked(self.name, command, Result(rc, out, err, sig), check)


def remote_timeout(timeout: float) -> list[str]:
    """The host-side prefix that ends a command (and its process group) past its timeout."""
    return ["timeout", "-k", str(REMOTE_KILL_AFTER), f"{timeout + REMOTE_GRACE:g}"]


_SIGNAL_ATTR = "edrfleet_exit_signal"


def _exit_signal_aware(transport: paramiko.Transport) -> None:
    """Record sshd's ``exit-signal`` on the channel ("SIGKILL") and wake its waiter, as an
    exit status would; every other request goes to paramiko's own handler.  The table is the
    transport's own copy, so no other paramiko user in the process is affected."""
    table = dict(transport._channel_handler_table)
    handler = table[paramiko.common.MSG_CHANNEL_REQUEST]

    def on_request(chan: paramiko.Channel, m: paramiko.Message) -> None:
        start = m.packet.tell()
        if m.get_text() != "exit-signal":
            m.packet.seek(start)
            handler(chan, m)
            return
        m.get_boolean()  # want reply: never for exit-signal (RFC 4254 6.10)
        name = m.get_text()
        setattr(chan, _SIGNAL_ATTR, f"SIG{name}" if name else "")
        chan.exit_status = -1
        chan.status_event.set()

    table[paramiko.common.MSG_CHANNEL_REQUEST] = on_request
    transport._channel_handler_table = table


def _no_delay(conn: Connection) -> None:
    """Small request/reply packets must not wait for delayed ACKs (~40 ms per command)."""
    sock = getattr(conn.transport, "sock", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _pump(chan: paramiko.Channel, data: bytes, deadline: float) -> tuple[bytes, bytes, int]:
    """Feed stdin, collect stdout/stderr until EOF and exit status; TimeoutError at deadline,
    OutputTooLarge past MAX_STDOUT (stderr: its last MAX_STDERR bytes kept)."""
    out, err = bytearray(), bytearray()
    view = memoryview(data)
    sent_eof = False
    while True:
        progressed = False
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(_BUF)
            if len(err) > MAX_STDERR:
                del err[:-MAX_STDERR]
            progressed = True
        if chan.recv_ready():
            out += chan.recv(_BUF)
            if len(out) > MAX_STDOUT:
                raise OutputTooLarge(f"the command printed more than {MAX_STDOUT} bytes: "
                                     "stopped reading it")
            progressed = True
        if not sent_eof:
            if chan.closed:
                view, sent_eof = view[:0], True  # the command is done without reading it all
            elif view and chan.send_ready():
                try:
                    view = view[chan.send(view[:_BUF]):]
                except OSError:
                    if not chan.closed:
                        raise
                    view = view[:0]
                progressed = True
            if not view and not sent_eof:
                chan.shutdown_write()
                sent_eof = True
        if progressed:
            continue
        if chan.closed or (sent_eof and chan.eof_received):
            # Data, EOF and close may all have landed since the reads above: drain first.
            if chan.recv_ready() or chan.recv_stderr_ready():
                continue
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        # The channel's pipe wakes us on data and EOF; stdin window space does not, hence
        # the short wait while there is still input to send.  After EOF the pipe stays
        # readable, so a plain sleep keeps input still flowing from spinning.
        if chan.eof_received:
            time.sleep(min(left, 0.005))
        else:
            select.select([chan], [], [], min(left, 0.05 if view else 1.0))
    left = deadline - time.monotonic()
    if not chan.status_event.wait(max(left, 0)):
        raise TimeoutError
    rc = chan.recv_exit_status()
    if rc == -1 and not chan.get_transport().is_active():
        raise EOFError("the connection closed before the command's exit status")
    # -1 on a live connection: the command died of a signal (paramiko drops "exit-signal")
    return bytes(out), bytes(err), rc
