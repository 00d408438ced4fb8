"""Outputs set from the inventory, on a real lab host: `edrfleet deploy` with `edrfleet_syslog`
sends the agent's events to a real rsyslog from Debian, which parses the JSON; changed to
`edrfleet_webhook` with a credential header, the next deploy writes the files and reloads the
agent (same pid, no restart) and a webhook receiver gets the events with the header, which is
in no command line.  Both receivers run on the loopback of the lab host's own network
namespace (`ip netns exec`), started and stopped by their pids.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel.test_syslog_rsyslog import RECEIVER, RSYSLOGD
from tests.lab.lab_fleet import hosts, run_deploy
from tests.unit.helpers.receivers import wait_for

SYSLOG_PORT, WEBHOOK_PORT = 10601, 10680  # the host's own loopback: nothing else listens there
SECRET = "Bearer lab-outputs-s3cret"
WEBHOOK = """\
import http.server, json, sys
out = open(sys.argv[2], "a")
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out.write(json.dumps({"auth": self.headers.get("Authorization"),
                              "events": json.loads(body)}) + "\\n"); out.flush()
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class InNetns:
    """A receiver process in the lab host's network namespace, stopped by its pid."""

    def __init__(self, netns: str, argv: list[str], port: int) -> None:
        self.netns, self.port = netns, port
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert wait_for(self.listening, 20), (argv, self.proc.poll())

    def listening(self) -> bool:
        assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
        r = subprocess.run(["ip", "netns", "exec", self.netns, "ss", "-Hltn",
                            f"sport = :{self.port}"], capture_output=True, text=True)
        return bool(r.stdout.strip())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)


@pytest.fixture()
def host(lab_hosts) -> Iterator[str]:
    """One lab host; after the test, deployed again without outputs (files removed)."""
    name = lab_hosts.names[0]
    yield name
    _, by_name = run_deploy(lab_hosts, [h for h in hosts(lab_hosts) if h.name == name])
    assert by_name[name].status in ("ok", "changed"), by_name[name].message


def deploy(lab_hosts, name: str, **variables):
    (h,) = [h for h in hosts(lab_hosts, **{name: variables}) if h.name == name]
    _, by_name = run_deploy(lab_hosts, [h])
    return by_name[name]


def test_outputs_from_the_inventory_reach_real_receivers_and_a_change_is_a_reload(
        lab_hosts, host, tmp_path: Path) -> None:
    if not os.access(RSYSLOGD, os.X_OK):
        pytest.skip("rsyslogd is not installed (scripts/setup.sh --test installs it)")
    netns = lab_hosts.lab().host(host).netns
    config_dir = Path(lab_hosts.hosts[host].vars["edrfleet_config_dir"])
    rs_dir = tmp_path / "rsyslog"
    (rs_dir / "work").mkdir(parents=True)
    parsed = rs_dir / "parsed.tsv"
    (rs_dir / "rsyslog.conf").write_text(
        f'global(workDirectory="{rs_dir / "work"}")\n'
        + RECEIVER.format(port=SYSLOG_PORT, out=parsed))
    rsyslog = InNetns(netns, [RSYSLOGD, "-n", "-f", str(rs_dir / "rsyslog.conf"), "-i",
                              str(rs_dir / "pid")], SYSLOG_PORT)
    (tmp_path / "webhook.py").write_text(WEBHOOK)
    got = tmp_path / "webhook.jsonl"
    webhook = InNetns(netns, [sys.executable, str(tmp_path / "webhook.py"), str(WEBHOOK_PORT),
                              str(got)], WEBHOOK_PORT)
    try:
        r = deploy(lab_hosts, host, edrfleet_syslog=f"tcp://127.0.0.1:{SYSLOG_PORT}")
        assert r.status == "changed" and "outputs" in r.message, r.message
        pid = lab_hosts.facts(host)["agent_pid"]
        rc, survived = lab_hosts.canary_attack(host)
        assert rc != 0 and survived

        def rows() -> list[list[str]]:
            return [ln.split("\t") for ln in parsed.read_text().splitlines()] \
                if parsed.exists() else []

        # rsyslog parsed the JSON ($.parsed 0 = success) and found the rule and action in it
        assert wait_for(lambda: any(r[0] == "0" and r[2:4] == ["blocked", "lab-canary"]
                                    for r in rows()), 30), rows()

        r = deploy(lab_hosts, host, edrfleet_webhook={
            "url": f"http://127.0.0.1:{WEBHOOK_PORT}/events", "format": "json",
            "header": f"Authorization: {SECRET}"})
        assert r.status == "changed" and "reload agent" in r.message, r.message
        assert "restart" not in r.message
        facts = lab_hosts.facts(host)
        assert facts["agent_pid"] == pid and facts["status"]["state"] == "enforcing"
        assert (config_dir / "webhook.header").stat().st_mode & 0o777 == 0o600
        assert SECRET.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        syslog_rows = len(rows())
        rc, survived = lab_hosts.canary_attack(host)
        assert rc != 0 and survived

        def posts() -> list[dict]:
            return [json.loads(ln) for ln in got.read_text().splitlines()] \
                if got.exists() else []

        assert wait_for(lambda: any(e["rule"]["id"] == "lab-canary"
                                    for p in posts() for e in p["events"]), 30), posts()
        assert {p["auth"] for p in posts()} == {SECRET}
        assert len(rows()) == syslog_rows  # the syslog output is gone with its variable
        assert deploy(lab_hosts, host, edrfleet_webhook={
            "url": f"http://127.0.0.1:{WEBHOOK_PORT}/events", "format": "json",
            "header": f"Authorization: {SECRET}"}).status == "ok"  # a rerun changes nothing
        # a hostile value is refused by name, before anything on the host changes
        r = deploy(lab_hosts, host, edrfleet_syslog="tcp://127.0.0.1:1\nExecStartPre=/bin/id")
        assert r.status == "failed" and r.message.startswith("edrfleet_syslog"), r.message
        assert not (config_dir / "outputs.json").read_text().count("ExecStartPre")
    finally:
        rsyslog.stop()
        webhook.stop()
