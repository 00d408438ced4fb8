"""Reload, stop, and agreement between `edrfleet policy test` (the simulator) and the kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from edrfleet.agent import ecs
from edrfleet.agent.pinned import pins
from edrfleet.fleet.deploy.render import render_policy
from edrfleet.policy import compile_policy, load_policy_text, simulate
from tests.corpora import CORPUS

ONE_RULE = """\
version: 1
mode: enforce
scope: {{cgroups: [{cgroup}]}}
rules:
  - id: {rule_id}
    description: a stand-in that must not run
    severity: high
    action: block
    match:
      executable: [{name}]
"""


def killed(res: subprocess.CompletedProcess) -> bool:
    return res.returncode in (-9, 137)


def test_sighup_swaps_the_policy_with_no_gap(start_agent, cgroup, standins):
    first, second = standins("edr-first"), standins("edr-second")
    agent = start_agent(ONE_RULE.format(cgroup=cgroup.name, rule_id="first", name="edr-first"))
    sha1 = agent.status()["policy_sha256"]
    results: list[int] = []
    stop = threading.Event()

    def hammer() -> None:  # a blocked exec every moment of the reloads
        while not stop.is_set():
            results.append(cgroup.run([str(first)]).returncode)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        both = ONE_RULE.format(cgroup=cgroup.name, rule_id="first", name="edr-first") + (
            "  - id: second\n    description: x\n    severity: low\n    action: block\n"
            "    match:\n      executable: [edr-second]\n"
        )
        for i in range(4):
            changed = both if i % 2 == 0 else both.replace("severity: low", "severity: medium")
            agent.policy.write_text(changed)
            agent.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while agent.status().get("generation", 1) < i + 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert results and all(rc == -9 for rc in results), results
    assert agent.status()["policy_sha256"] != sha1
    assert killed(cgroup.run([str(second)]))


def test_a_broken_policy_on_reload_keeps_the_running_one(start_agent, cgroup, standins):
    canary = standins("edr-keep")
    agent = start_agent(ONE_RULE.format(cgroup=cgroup.name, rule_id="keep", name="edr-keep"))
    sha = agent.status()["policy_sha256"]
    agent.policy.write_text(agent.policy.read_text() + "      cmdline: '(unclosed'\n")
    agent.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload" not in agent.status().get("last_error", "") and time.monotonic() < deadline:
        time.sleep(0.05)
    st = agent.status()
    assert "reload" in st["last_error"], st
    assert st["policy_sha256"] == sha and st["state"] == "enforcing"
    assert killed(cgroup.run([str(canary)]))


def test_sigterm_leaves_enforcement_pinned_and_disarm_ends_it(start_agent, cgroup, standins):
    canary = standins("edr-term")
    agent = start_agent(ONE_RULE.format(cgroup=cgroup.name, rule_id="term", name="edr-term"))
    assert killed(cgroup.run([str(canary)]))
    assert agent.stop() == 0
    assert agent.status()["state"] == "stopped"
    assert killed(cgroup.run([str(canary)]))  # the pinned program still enforces
    out = subprocess.run([sys.executable, "-m", "edrfleet.cli.main", "agent", "disarm",
                          "--spool", str(agent.spool), "--run-dir", str(agent.spool / "run")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "disarmed" in out.stdout, out
    assert cgroup.run([str(canary)]).returncode == 0  # nothing left attached
    assert not os.path.exists(pins.instance_dir(agent.spool))


def test_a_policy_that_fails_validation_never_starts(start_agent, cgroup):
    agent = start_agent("version: 1\nrules:\n  - id: Bad Id\n", wait=False)
    assert agent.proc.wait(timeout=30) != 0
    assert agent.status()["state"] == "failed"
    assert "read policy" in agent.status()["last_error"]


def _mixed_corpus(limit: int = 300) -> list[list[str]]:
    from tests.corpus_argv import exec_argvs

    lines: list[str] = []
    for name, key in (("benign.jsonl", "command"), ("gtfobins.jsonl", "code"),
                      ("atomic_linux.jsonl", "command")):
        with open(CORPUS / name) as f:
            for i, raw in enumerate(f):
                rec = json.loads(raw)
                attack = rec.get("function") in ("reverse-shell", "bind-shell")
                if i % 7 == 0 or (attack and i % 3 == 0):
                    lines.append(rec[key])
    argvs: list[list[str]] = []
    for line in lines:
        for argv in exec_argvs(line):
            if argv and argv[0] and "/" not in os.path.basename(argv[0]) and argv not in argvs:
                argvs.append(argv)
    return argvs[:limit]


@pytest.mark.skipif(not CORPUS.exists(), reason=f"test corpora not at {CORPUS} (docs/corpora.md)")
def test_policy_test_and_the_kernel_agree_on_a_mixed_corpus(start_agent, cgroup, standins):
    """Every corpus exec is run as a harmless stand-in named like the real program."""
    text = render_policy({"edrfleet_scope_cgroups": [cgroup.name]})
    bundle = compile_policy(load_policy_text(text, "policy.yaml"))
    agent = start_agent(text)
    disagree = []
    seen = {"block": 0, "log": 0, "allow": 0}
    for argv in _mixed_corpus():
        exe = standins(os.path.basename(argv[0]))
        want = simulate(bundle, [str(exe), *argv[1:]], filename=str(exe)).action
        seen[want] += 1
        res = cgroup.run([str(exe), *argv[1:]])
        got = "block" if res.returncode == -9 else "allow"
        if want != "log" and got != want:
            disagree.append((argv, want, got))
    assert not disagree, disagree[:5]
    assert seen["block"] > 5 and seen["allow"] > 50, seen
    logged = agent.wait_events(lambda e: e["event.action"] == "logged", count=seen["log"])
    assert len(logged) == seen["log"]


def test_blocked_events_also_reach_syslog_and_a_webhook(start_agent, cgroup, standins):
    import http.server
    import socket

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(10)
    posts: list[list] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    canary = standins("edr-syslog")
    try:
        start_agent(
            ONE_RULE.format(cgroup=cgroup.name, rule_id="to-syslog", name="edr-syslog"),
            "--syslog", f"udp://127.0.0.1:{udp.getsockname()[1]}",
            "--webhook", f"http://127.0.0.1:{server.server_address[1]}/events",
        )
        assert killed(cgroup.run([str(canary), "x"]))
        msg = udp.recv(65536).decode()
        assert msg.startswith("<") and " edrfleet " in msg and 'rule="to-syslog"' in msg, msg
        deadline = time.monotonic() + 10
        while not posts and time.monotonic() < deadline:
            time.sleep(0.1)
        assert posts and ecs.get(posts[0][0], ecs.RULE_ID) == "to-syslog"
    finally:
        server.shutdown()
        udp.close()


def test_the_perf_buffer_fallback_delivers_events_too(start_agent, cgroup, standins):
    blocked, logged = standins("edr-perf"), standins("edr-perf-log")
    policy = ONE_RULE.format(cgroup=cgroup.name, rule_id="perf", name="edr-perf") + (
        "  - id: perf-log\n    description: x\n    severity: low\n    action: log\n"
        "    match:\n      executable: [edr-perf-log]\n"
    )
    agent = start_agent(policy, "--perfbuf")
    assert killed(cgroup.run([str(blocked)]))
    assert cgroup.run([str(logged)]).returncode == 0
    assert agent.wait_events(lambda e: e["rule.id"] in ("perf", "perf-log"), count=2)


def _lsm_loads() -> bool:
    from edrfleet.agent.btf import Btf
    from edrfleet.agent.run import lsm_available

    return lsm_available(Btf.load())[0]


def test_backend_lsm_required_where_it_cannot_load_fails_with_the_reason(start_agent, cgroup):
    if _lsm_loads():
        pytest.skip("BPF LSM loads on this kernel (the VM tier proves the lsm backend)")
    agent = start_agent(
        ONE_RULE.format(cgroup=cgroup.name, rule_id="x", name="edr-x"), "--backend", "lsm",
        wait=False,
    )
    assert agent.proc.wait(timeout=60) != 0
    st = agent.status()
    assert st["state"] == "failed"
    assert "backend lsm is required" in st["last_error"], st


def test_auto_backend_reports_what_it_picked(start_agent, cgroup):
    agent = start_agent(ONE_RULE.format(cgroup=cgroup.name, rule_id="x", name="edr-x"))
    assert agent.status()["backend"] == ("lsm" if _lsm_loads() else "sigkill")


def test_the_spool_rotates_by_size_without_losing_an_event(start_agent, cgroup, standins):
    from edrfleet.agent.spool import read_since

    logged = standins("edr-rotate")
    policy = ONE_RULE.format(cgroup=cgroup.name, rule_id="r", name="edr-none").replace(
        "action: block\n    match:\n      executable: [edr-none]",
        "action: log\n    match:\n      executable: [edr-rotate]",
    )
    agent = start_agent(policy, "--spool-max-bytes", "4096")
    cursor, lines = None, []
    for i in range(0, 40, 2):  # a reader following with its cursor, as `report` does
        for j in (i, i + 1):
            assert cgroup.run([str(logged), f"n{j}"]).returncode == 0
        time.sleep(0.4)
        got = read_since(str(agent.spool), cursor)
        assert not got.lost
        cursor, lines = got.cursor, lines + got.lines
    time.sleep(0.4)
    lines += read_since(str(agent.spool), cursor).lines
    args = [ecs.get(json.loads(x), ecs.ARGS)[1] for x in lines]
    assert args == [f"n{i}" for i in range(40)]  # each once, in order
    assert (agent.spool / "events.jsonl.3").exists()
