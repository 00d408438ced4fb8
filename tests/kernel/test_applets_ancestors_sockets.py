"""Multi-call applets, ancestors and reverse shells by their sockets, decided in the kernel.

Every executable a rule names is a copy of /bin/true (or of dash, whose only command is a
canary `true`): if blocking failed nothing would happen.  Sockets are on loopback, to a
listener the test holds; the agent is scoped to the test's cgroup.  Each blocked case has a
benign twin that runs, and the simulator (`policy test`) is asked the same question.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from edrfleet.policy import compile_policy, load_policy_text
from edrfleet.policy.simulate import simulate

KILLED = (-9, 137)
# the child's exit status, 1 if it was killed (the parent's stdout is the socket)
SPAWN = ("import subprocess, sys\n"
         "rc = subprocess.run([sys.argv[1]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,"
         " stderr=subprocess.DEVNULL).returncode\n"
         "sys.exit(1 if rc == -9 else 0)")
POLICY = """\
version: 1
scope:
  cgroups: [{cgroup}]
multicall: [kbox-{tag}, "{bindir}/kpath-box"]
rules:
  - id: applet
    description: the applet, whoever runs it
    severity: high
    action: block
    match:
      executable: [kapplet-{tag}]
      args: [{{any: [--go]}}]
  - id: under-ancestor
    description: the canary anywhere below the named shell
    severity: high
    action: block
    match:
      executable: [kanc-canary-{tag}]
      ancestor: {{executable: [kanc-sh-{tag}]}}
  - id: parent-only
    description: the direct parent only (a wrapper hides it; ancestor does not)
    severity: high
    action: block
    match:
      executable: [kpar-canary-{tag}]
      parent: {{executable: [kanc-sh-{tag}]}}
  - id: inet-self
    description: a shell whose own standard streams are a network socket
    severity: critical
    action: block
    match:
      executable: [kself-{tag}]
      inet_stdio: [self]
  - id: inet-parent
    description: a shell whose parent's standard streams are a network socket
    severity: critical
    action: block
    match:
      executable: [kparent-{tag}]
      inet_stdio: [parent]
"""


@pytest.fixture
def world(start_agent, cgroup, tmp_path) -> Iterator[tuple]:
    tag = uuid.uuid4().hex[:6]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in (f"kbox-{tag}", "kpath-box", "kother-box", f"kapplet-{tag}",
                 f"kanc-canary-{tag}", f"kpar-canary-{tag}", f"kself-{tag}", f"kparent-{tag}"):
        shutil.copy2("/bin/true", bindir / name)
    shutil.copy2("/bin/dash", bindir / f"kanc-sh-{tag}")
    text = POLICY.format(cgroup=cgroup.name, tag=tag, bindir=bindir)
    bundle = compile_policy(load_policy_text(text))
    agent = start_agent(text)
    yield agent, bundle, bindir, tag


def killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in KILLED


def sim(bundle, argv, **kw) -> str:
    return simulate(bundle, argv, **kw).action


def test_an_applet_is_judged_by_argv0_or_argv1_and_by_symlink(world, cgroup):
    agent, bundle, bindir, tag = world
    box, applet = str(bindir / f"kbox-{tag}"), f"kapplet-{tag}"
    link = bindir / "links"
    link.mkdir()
    os.symlink(box, link / applet)
    blocked = [
        ["/bin/bash", "-c", f"exec -a {applet} {box} --go"],  # exec -a rm busybox
        [box, applet, "--go"],                                # busybox rm
        [box, f"/usr/bin/{applet}", "--go"],                  # busybox /path/rm
        [str(bindir / "kpath-box"), applet, "--go"],          # marked by path
        [str(link / applet), "--go"],                         # symlink rm -> busybox
        [box, applet, "x", "--go"],
    ]
    for argv in blocked:
        assert killed(cgroup.run(argv)), argv
    benign = [
        [box, "other", "--go"],                     # another applet
        [box, applet],                              # the applet without the rule's argument
        [str(bindir / "kother-box"), applet, "--go"],  # not a multi-call binary
        [box, "--go", applet],                      # the applet name is not argv[1]
    ]
    for argv in benign:
        assert cgroup.run(argv).returncode == 0, argv
        assert sim(bundle, argv) == "allow", argv
    assert sim(bundle, [box, applet, "--go"]) == "block"
    assert sim(bundle, [applet, "--go"], filename=box) == "block"
    evs = agent.wait_events(lambda e: e["rule.id"] == "applet", count=len(blocked), timeout=20)
    assert len(evs) == len(blocked)


def _dash_chain(shell: str, inner: str, depth: int) -> str:
    """``shell -c`` running ``inner`` below ``depth`` more forked shells (`; true` forks)."""
    cmd = f"{inner}; echo rc=$?"
    for _ in range(depth):
        cmd = f"/bin/sh -c {_quote(cmd)}; true"
    return cmd


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def test_an_ancestor_is_seen_through_wrappers_up_to_the_depth(world, cgroup):
    agent, bundle, bindir, tag = world
    sh = str(bindir / f"kanc-sh-{tag}")
    anc, par = bindir / f"kanc-canary-{tag}", bindir / f"kpar-canary-{tag}"
    # timeout and sh -c in between: the direct-parent rule is blind, the ancestor rule is not
    out = cgroup.run([sh, "-c", f"timeout 5 {anc}; echo rc=$?"], text=True).stdout
    assert "rc=137" in out
    out = cgroup.run([sh, "-c", f"timeout 5 {par}; echo rc=$?"], text=True).stdout
    assert "rc=0" in out
    out = cgroup.run([sh, "-c", f"{par}; echo rc=$?"], text=True).stdout
    assert "rc=137" in out
    # parent is the named shell, then 1..7 shells in between: EDR_ANCESTOR_DEPTH is 8
    for depth in (1, 3, 7):
        out = cgroup.run([sh, "-c", _dash_chain(sh, str(anc), depth)], text=True).stdout
        assert "rc=137" in out, depth
    out = cgroup.run([sh, "-c", _dash_chain(sh, str(anc), 8)], text=True).stdout
    assert "rc=0" in out  # nine levels up: beyond the documented depth
    # benign twin: the same chain under another shell
    assert "rc=0" in cgroup.run(["/bin/dash", "-c", _dash_chain(sh, str(anc), 2)],
                                text=True).stdout
    assert sim(bundle, [str(anc)], parent="/usr/bin/timeout", ancestors=[sh]) == "block"
    assert sim(bundle, [str(anc)], parent="/bin/sh",
               ancestors=["/bin/sh"] * 7 + [sh]) == "allow"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(10)
    yield srv
    srv.close()


def _connected(srv: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(srv.getsockname(), timeout=10)
    peer, _ = srv.accept()
    return client, peer


def test_a_shell_on_a_network_socket_is_blocked_and_pipes_are_not(world, cgroup, listener):
    agent, bundle, bindir, tag = world
    me, par = str(bindir / f"kself-{tag}"), str(bindir / f"kparent-{tag}")
    client, peer = _connected(listener)
    try:
        for streams in ({"stdin": client}, {"stdout": client}, {"stderr": client},
                        {"stdin": client, "stdout": client, "stderr": client}):
            assert killed(cgroup.run([me], capture_output=False, **streams)), streams
        # the parent holds the socket on its standard streams; the child gets /dev/null (a
        # pty in the one-liners that spawn one).  Python, not dash: dash applies a command's
        # redirections in itself before it forks, so it holds the socket on a saved fd then.
        for exe, rc in ((par, -9), (me, 0)):  # [self] only: the child's own streams are not
            res = cgroup.run([sys.executable, "-c", SPAWN, exe], stdin=client, stdout=client,
                             capture_output=False, text=True)
            assert res.returncode == (1 if rc else 0), exe
    finally:
        client.close()
        peer.close()
    # benign twins: pipes, a unix socket pair, /dev/null, a file
    a, b = socket.socketpair()
    try:
        for exe in (me, par):
            assert cgroup.run([exe]).returncode == 0
            assert cgroup.run([exe], stdin=a, stdout=a, capture_output=False).returncode == 0
            assert cgroup.run(["/bin/dash", "-c", f"{exe}; echo rc=$?"], stdin=a,
                              capture_output=True, text=True).stdout.strip() == "rc=0"
    finally:
        a.close()
        b.close()
    assert sim(bundle, [me], inet_stdio=["self"]) == "block"
    assert sim(bundle, [me], inet_stdio=["parent"]) == "allow"
    assert sim(bundle, [par], inet_stdio=["parent"]) == "block"
    evs = agent.wait_events(lambda e: e["rule.id"] in ("inet-self", "inet-parent"), count=5,
                            timeout=20)
    assert len(evs) == 5
    assert sorted(tuple(e["edrfleet.inet_stdio"]) for e in evs) == (
        [("parent",)] + [("self",)] * 4)


def test_an_inet6_socket_counts_too(world, cgroup):
    agent, bundle, bindir, tag = world
    try:
        srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        srv.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    srv.listen(1)
    srv.settimeout(10)
    client = socket.create_connection(srv.getsockname()[:2], timeout=10)
    peer, _ = srv.accept()
    try:
        assert killed(cgroup.run([str(bindir / f"kself-{tag}")], stdout=client,
                                 capture_output=False))
    finally:
        for s in (client, peer, srv):
            s.close()


def test_the_default_policy_judges_busybox_applets_by_argv(start_agent, cgroup, tmp_path):
    """The issue's examples with a stand-in busybox (a copy of /bin/true): harmless whatever
    runs; the default policy's `multicall: [busybox, toybox]` makes them the applet."""
    from tests.unit.templates.test_default_policy import render

    text = render(edrfleet_scope_cgroups=[cgroup.name])
    bundle = compile_policy(load_policy_text(text, "default.yaml"))
    box = tmp_path / "busybox"
    shutil.copy2("/bin/true", box)
    start_agent(text)
    victim = "/etc"  # the stand-in deletes nothing if blocking failed
    blocked = [["/bin/bash", "-c", f"exec -a rm {box} -rf {victim}"],
               [str(box), "rm", "-rf", victim],
               [str(box), "/bin/rm", "-r", "-f", "/"]]
    benign = [["/bin/bash", "-c", f"exec -a rm {box} -f /tmp/edrkctx-not-there"],
              [str(box), "ls", "-rf", victim],
              [str(box), "rm", "-f", "/tmp/edrkctx-not-there"]]
    for argv in blocked:
        assert killed(cgroup.run(argv)), argv
    for argv in benign:
        assert cgroup.run(argv).returncode == 0, argv
    assert sim(bundle, ["rm", "-rf", victim], filename=str(box)) == "block"
    assert sim(bundle, [str(box), "ls", "-rf", victim]) == "allow"
