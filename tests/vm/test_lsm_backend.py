"""Backend lsm, proven in a guest where BPF LSM loads: a canary fails with EPERM (exit 126)."""

from __future__ import annotations

import json
import time

import pytest

from edrfleet.fleet import vm
from edrfleet.fleet.lab import LAB_CANARY_RULE
from edrfleet.fleet.render import render_policy
from edrfleet.policy import compile_policy, dump_bundle, load_policy_text
from tests.vm.conftest import agent_tarball


def sh(guest, cmd: str, timeout: float = 600):
    return vm.ssh(guest, cmd, timeout=timeout)


# parent and cwd decided by the LSM hook too (a copy of true run by a copy of dash named
# edrvm-sh, in a directory under /tmp/edrvm-ctx); the prefix must exist when the agent starts
CTX_RULE = {
    "id": "vm-ctx-canary", "description": "the stand-in only under edrvm-sh, in /tmp/edrvm-ctx",
    "severity": "high", "action": "block",
    "match": {"executable": ["edrvm-ctx-canary"], "parent": {"executable": ["edrvm-sh"]},
              "cwd": ["/tmp/edrvm-ctx"]},
}
CTX_SETUP = ("mkdir -p /tmp/edrvm-ctx/sub /tmp/edrvm-bin && cp /bin/true "
             "/tmp/edrvm-bin/edrvm-ctx-canary && cp /bin/dash /tmp/edrvm-bin/edrvm-sh")


@pytest.fixture(scope="module")
def agent(guest):
    text = render_policy({"edrfleet_extra_rules": [LAB_CANARY_RULE, CTX_RULE]})
    assert sh(guest, CTX_SETUP).returncode == 0
    bundle = dump_bundle(compile_policy(load_policy_text(text, "policy.yaml")))
    r = vm.ssh(guest, "mkdir -p /opt/edrfleet /etc/edrfleet && tar -xz -C /opt/edrfleet",
               input=agent_tarball())
    assert r.returncode == 0, r.stderr
    vm.copy_to(guest, bundle, "/etc/edrfleet/policy.json", mode="0600")
    started = time.monotonic()
    # setsid -f: the agent leaves the ssh session at once, holding none of its descriptors
    r = sh(guest, "cd /opt/edrfleet && setsid -f sh -c 'exec python3 -m edrfleet.agent run "
                  "--policy /etc/edrfleet/policy.json --spool /var/lib/edrfleet "
                  "--host-name vm1 > /var/log/edrfleet-agent.log 2>&1 < /dev/null'; echo ok",
           timeout=60)
    assert r.returncode == 0, r.stderr
    status: dict = {}
    while time.monotonic() - started < 600:
        r = sh(guest, "cat /var/lib/edrfleet/status.json 2>/dev/null || true")
        if r.stdout.strip():
            status = json.loads(r.stdout)
            if status.get("state") in ("enforcing", "failed"):
                break
        time.sleep(3)
    log = sh(guest, "cat /var/log/edrfleet-agent.log").stdout
    assert status.get("state") == "enforcing", (status, log)
    print(f"agent start in the VM: {status['start_seconds']} s "
          f"(wall {time.monotonic() - started:.1f} s)")
    yield status
    sh(guest, "pkill -TERM -f 'edrfleet.agent run' || true")


def events(guest) -> list[dict]:
    out = sh(guest, "cat /var/lib/edrfleet/events.jsonl 2>/dev/null || true").stdout
    return [json.loads(line) for line in out.splitlines() if line]


def test_the_agent_picks_the_lsm_backend_on_its_own(agent):
    assert agent["backend"] == "lsm"


def test_a_canary_fails_with_operation_not_permitted_and_survives(guest, agent):
    r = sh(guest, "mkdir -p /tmp/edrfleet-canary-vm && echo precious > /tmp/edrfleet-canary-vm/f; "
                  "bash -c 'rm -rf /tmp/edrfleet-canary-vm'; echo rc=$?; "
                  "cat /tmp/edrfleet-canary-vm/f")
    assert "Operation not permitted" in r.stdout + r.stderr, r
    assert "rc=126" in r.stdout
    assert "precious" in r.stdout
    deadline = time.monotonic() + 30
    found = []
    while not found and time.monotonic() < deadline:
        found = [e for e in events(guest) if e["rule.id"] == "lab-canary"]
        time.sleep(1)
    (ev,) = found
    assert ev["event.action"] == "blocked"
    assert ev["edrfleet.backend"] == "lsm"
    assert ev["edrfleet.stage"] == "lsm"
    assert ev["process.args"] == ["rm", "-rf", "/tmp/edrfleet-canary-vm"]


def test_harmless_commands_run(guest, agent):
    r = sh(guest, "mkdir -p /tmp/scratch-vm && rm -rf /tmp/scratch-vm && ls / >/dev/null "
                  "&& echo fine")
    assert r.stdout.strip() == "fine", r


def test_parent_and_cwd_are_decided_by_the_lsm_hook(guest, agent):
    run = ("cd {cwd} && /tmp/edrvm-bin/{sh} -c '/tmp/edrvm-bin/edrvm-ctx-canary; echo rc=$?'")
    r = sh(guest, run.format(cwd="/tmp/edrvm-ctx/sub", sh="edrvm-sh"))
    assert "Operation not permitted" in r.stdout + r.stderr and "rc=126" in r.stdout, r
    for cwd, shell in (("/tmp", "edrvm-sh"), ("/tmp/edrvm-ctx", "../../bin/dash")):
        r = sh(guest, run.format(cwd=cwd, sh=shell))
        assert "rc=0" in r.stdout, (cwd, shell, r)
    deadline = time.monotonic() + 30
    found = []
    while not found and time.monotonic() < deadline:
        found = [e for e in events(guest) if e["rule.id"] == "vm-ctx-canary"]
        time.sleep(1)
    (ev,) = found
    assert (ev["edrfleet.stage"], ev["process.working_directory"]) == ("lsm", "/tmp/edrvm-ctx/sub")
    assert ev["process.parent.name"] == "edrvm-sh"
