"""Imported Sigma rules decided by the real kernel program, scoped to a test cgroup.

Every command run is a copy of /bin/true under the name a Sigma rule watches (`standins`): if
blocking failed it would only exit 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edrfleet.policy import compile_policy, load_policy_text, simulate
from edrfleet.policy.sigma import import_paths
from tests.corpora import SIGMA

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not SIGMA.is_dir(), reason=f"Sigma corpus not at {SIGMA}")


def scoped(text: str, cgroup: str) -> str:
    doc = yaml.safe_load(text)
    doc["scope"] = {"cgroups": [cgroup]}
    return yaml.safe_dump(doc, sort_keys=False)


def test_the_whole_imported_corpus_loads_and_logs_in_the_kernel(cgroup, start_agent, standins):
    result = import_paths([SIGMA], action="log")
    agent = start_agent(scoped(result.policy_text(), cgroup.name))
    assert agent.status()["rules"] == len(result.rules())
    who = standins("who")
    assert cgroup.run([str(who)]).returncode == 0
    events = agent.wait_events(lambda e: e.get("process.executable") == str(who))
    assert events and events[0]["event.action"] == "logged"
    policy = load_policy_text(agent.policy.read_text(), str(agent.policy))
    want = simulate(compile_policy(policy), [str(who)])
    assert (want.action, want.rule) == ("log", events[0]["rule.id"])  # kernel = simulator
    assert want.rule.startswith("sigma-system-owner-or-user-discovery")


def test_an_imported_rule_with_a_filter_blocks_only_outside_the_filter(cgroup, start_agent,
                                                                       standins):
    rule = SIGMA / "proc_creation_lnx_clear_logs.yml"
    result = import_paths([rule], action="block")
    agent = start_agent(scoped(result.policy_text(), cgroup.name))
    shred = standins("shred")
    killed = cgroup.run([str(shred), "-u", "/var/log/edrfleet-canary-never-there.log"])
    assert killed.returncode in (-9, 137, 126), killed
    rm = standins("rm")
    # filter_main_legit_systat: `rm -f /var/log/sysstat/...` is excluded (complement regex)
    kept = cgroup.run(["rm", "-f", "/var/log/sysstat/sa01"], executable=str(rm))
    assert kept.returncode == 0, kept
    blocked = agent.wait_events(lambda e: e.get("event.action") == "blocked")
    assert [e["process.executable"] for e in blocked] == [str(shred)]
    assert blocked[0]["rule.id"].startswith("sigma-linux-logs-clearing-attempts")
