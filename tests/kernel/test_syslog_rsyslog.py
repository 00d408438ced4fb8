"""The real agent's syslog output into a real rsyslog from Debian, which parses the JSON.

rsyslogd (package ``rsyslog``, installed by ``scripts/setup.sh --test``) runs in the
foreground with its own configuration in the test's directory, listening on a loopback TCP
port, and writes fields it parsed out of each message's JSON to a file; the receiving part of
that configuration is the one docs/events.md ("Sending events to a SIEM") documents.  It is
stopped by its PID, and once in the middle: events made while it is down reach it when it is
back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.unit.helpers.receivers import free_port, wait_for

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"

# The receiving configuration docs/events.md shows, with the test's port and files filled in.
RECEIVER = """\
global(maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="edrfleet")

template(name="edrfleet-fields" type="string"
         string="%$.parsed%\\t%$!event!id%\\t%$!event!action%\\t%$!rule!id%\\t%$!host!name%\\t%$!process!args_count%\\n")

ruleset(name="edrfleet") {{
  if $app-name == "edrfleet" then {{
    # MSG is a UTF-8 BOM (3 bytes, RFC 5424 section 6.4), then the event as JSON
    set $.parsed = parse_json(substring($msg, 3, 1048576), "\\$!");
    action(type="omfile" file="{out}" template="edrfleet-fields")
  }}
}}
"""

POLICY = """\
version: 1
mode: enforce
scope:
  cgroups: [{cgroup}]
rules:
  - id: canary-rm-recursive
    description: recursive delete of a canary directory
    severity: critical
    action: block
    match:
      executable: [rm]
      args:
        - regex: '^(-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)$'
        - glob: "/tmp/edrfleet-canary-*"
  - id: canary-logged
    description: reported, not blocked
    severity: low
    action: log
    match:
      executable: [edr-log-canary]
"""


class Rsyslog:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.out = directory / "parsed.tsv"
        self.conf = directory / "rsyslog.conf"
        self.pidfile = directory / "rsyslogd.pid"
        (directory / "work").mkdir()
        self.conf.write_text(f'global(workDirectory="{directory / "work"}")\n'
                             + RECEIVER.format(port=self.port, out=self.out))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited: {self.proc.stdout.read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_for(listening, 20), "rsyslogd does not listen"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)  # its PID, the one this test started
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def rows(self) -> list[list[str]]:
        if not self.out.exists():
            return []
        return [line.split("\t") for line in self.out.read_text().splitlines()]


@pytest.fixture
def rsyslog(tmp_path: Path):
    if not os.access(RSYSLOGD, os.X_OK):
        pytest.skip("rsyslogd is not installed (scripts/setup.sh --test installs it)")
    (tmp_path / "rsyslog").mkdir()
    r = Rsyslog(tmp_path / "rsyslog")
    r.start()
    yield r
    r.stop()


def test_rsyslog_parses_the_agent_events_and_gets_the_ones_made_while_down(
        rsyslog, start_agent, cgroup, canary_dir, standins):
    agent = start_agent(POLICY.format(cgroup=cgroup.name), "--syslog",
                        f"tcp://127.0.0.1:{rsyslog.port}")
    log_canary = str(standins("edr-log-canary"))
    assert cgroup.run(["rm", "-rf", str(canary_dir)]).returncode in (-9, 137)
    assert canary_dir.exists()
    # a message past rsyslog's default 8 KiB limit: maxMessageSize keeps it whole
    assert cgroup.run([log_canary, *["y" * 100] * 120]).returncode == 0
    assert wait_for(lambda: len(rsyslog.rows()) == 2, 20), rsyslog.rows()

    rsyslog.stop()  # the receiver goes away; the agent keeps making events
    for i in range(5):
        assert cgroup.run([log_canary, f"while-down-{i}"]).returncode == 0
    assert len(agent.wait_events(lambda e: True, count=7)) == 7
    assert wait_for(lambda: (agent.status().get("outputs", {}).get("SyslogOutput") or {})
                    .get("pending") == 5, 30), agent.status().get("outputs")
    assert agent.status()["outputs"]["SyslogOutput"]["last_error"]
    rsyslog.start()  # back: the agent reconnects (backoff at most 30 s) and sends the rest

    spool = agent.events()
    assert wait_for(lambda: len(rsyslog.rows()) >= 7, 60), rsyslog.rows()
    rows = rsyslog.rows()
    assert [r[1] for r in rows] == [e["event.id"] for e in spool]  # each once, in order
    assert all(r[0] == "0" for r in rows)  # parse_json succeeded on every message
    blocked = rows[0]
    assert blocked[2:5] == ["blocked", "canary-rm-recursive", "kernel-test"]
    assert rows[1][2:4] == ["logged", "canary-logged"]
    assert int(rows[1][5]) == spool[1]["process.args_count"]
    raw = (agent.spool / "events.jsonl").read_bytes().split(b"\n")[1]
    assert len(raw) > 8192, len(raw)  # the message rsyslog parsed whole was past 8 KiB
    assert wait_for(lambda: agent.status()["outputs"]["SyslogOutput"]["delivered"] == 7,
                    10), agent.status()
    st = agent.status()["outputs"]["SyslogOutput"]
    assert st["last_error"] is None and st["pending"] == 0 and st["dropped"] == 0
