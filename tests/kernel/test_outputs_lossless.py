"""The issue's scenario with the real agent: 30 events made while the webhook receiver is
down, the agent restarted in the middle; once the receiver is up, all 30 arrive, in order,
once each, and status.json counts them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.helpers.receivers import HttpCollector, free_port, wait_for

POLICY = """\
version: 1
mode: enforce
scope:
  cgroups: [{cgroup}]
rules:
  - id: lossless-logged
    description: reported, not blocked
    severity: low
    action: log
    match:
      executable: [edr-lossless]
"""


def on_spool(agent, spool: Path):
    """The fixture's agent, read from the --spool given after the fixture's own."""
    agent.spool = spool
    agent.wait_state({"enforcing"})
    return agent


def test_webhook_gets_every_event_after_an_outage_and_an_agent_restart(
        start_agent, cgroup, standins, tmp_path: Path):
    port = free_port()
    spool = tmp_path / "shared-spool"
    args = ("--spool", str(spool), "--webhook", f"http://127.0.0.1:{port}/events")
    policy = POLICY.format(cgroup=cgroup.name)
    exe = str(standins("edr-lossless"))

    first = on_spool(start_agent(policy, *args, wait=False), spool)
    for i in range(15):
        assert cgroup.run([exe, f"n{i}"]).returncode == 0
    assert len(first.wait_events(lambda e: True, count=15)) == 15
    assert wait_for(lambda: (first.status().get("outputs") or {}).get("WebhookOutput", {})
                    .get("pending") == 15, 10), first.status()
    assert first.stop() == 0

    # the same spool: it resumes from the saved cursor
    second = on_spool(start_agent(policy, *args, wait=False), spool)
    for i in range(15, 30):
        assert cgroup.run([exe, f"n{i}"]).returncode == 0
    assert len(second.wait_events(lambda e: True, count=30)) == 30
    receiver = HttpCollector(port=port)
    try:
        assert wait_for(lambda: len(receiver.events()) == 30, 60), len(receiver.events())
        got = [e["event"]["id"] for e in receiver.events()]
        spool_ids = [json.loads(line)["event"]["id"]
                     for line in (spool / "events.jsonl").read_text().splitlines()]
        assert got == spool_ids  # all 30, in the spool's order, once each
        assert [e["process"]["args"][1] for e in receiver.events()] == \
            [f"n{i}" for i in range(30)]
        assert wait_for(lambda: second.status()["outputs"]["WebhookOutput"]["delivered"] == 30,
                        10), second.status()
        st = second.status()["outputs"]["WebhookOutput"]
        assert st["pending"] == 0 and st["dropped"] == 0 and st["last_error"] is None
    finally:
        receiver.stop()
