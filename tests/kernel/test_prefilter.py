"""The literal prefilter in the kernel (issue 12 item 3): rules with only a `cmdline:` regex
(any executable) at scale load, block their canaries, and a prefiltered group whose literal is
absent from argv does not run; `policy test` (simulate) says what the kernel does.

Stand-ins only: copies of /bin/true under /tmp, run in the test's cgroup.
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edrfleet.policy import compile_policy, load_policy_text, simulate
from edrfleet.policy.bundle import dump_bundle
from edrfleet.policy.limits import EDR_SCAN_WINDOW, EDR_TAIL_CALLS, MAX_CANDIDATES

KILLED = -9

# cmdline-only regexes of the shapes a blacklist has; {t} is a token unique to the rule.  The
# prefilter takes the best literal of each: the token, or a longer fixed piece ('/dev/tcp/').
SHAPES = [
    (r"{t} +-(e|c) ", lambda t: [t, "-e", "z"]),
    (r"(wget|curl) .*{t}", lambda t: ["curl", f"http://h/{t}"]),
    (r"base64 +(-d|--decode).*{t}\b", lambda t: ["base64", "-d", t]),
    (r"/dev/(tcp|udp)/[0-9.]+/{t}", lambda t: [f"/dev/tcp/10.0.0.1/{t}"]),
    (r"(?i)x{t}-[a-z]+", lambda t: [f"X{t.upper()}-abc"]),
]


@pytest.fixture
def bindir() -> Iterator[Path]:
    d = Path(f"/tmp/edrpf-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    d.chmod(0o755)
    shutil.copy2("/bin/true", d / "pftrue")
    shutil.copy2("/bin/true", d / "pfcap")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def rule(rid: str, action: str, match: dict) -> dict:
    return {"id": rid, "description": "generated", "severity": "high", "action": action,
            "match": match}


def large_policy(cgroup: str, seed: int = 7) -> tuple[dict, list[list[str]]]:
    """1 000 rules: 800 on 100 named executables (never the stand-in), 200 cmdline-only
    regexes; returns the policy and the argv (after argv[0]) of a canary per block regex."""
    rnd = random.Random(seed)
    rules, canaries = [], []
    for i in range(800):
        rules.append(rule(f"named-{i}", rnd.choice(["block", "log"]), {
            "executable": [f"tool-{i % 100}"], "args": [{"any": [f"-x{i}", f"--opt{i % 37}"]}]}))
    for i in range(200):
        token = f"pfk{i:03d}"
        shape, argv = SHAPES[i % len(SHAPES)]
        action = "block" if i % 4 else "log"
        rules.append(rule(f"any-{i}", action, {"cmdline": shape.format(t=token)}))
        if action == "block":
            canaries.append(argv(token))
    policy = {"version": 1, "scope": {"cgroups": [cgroup]}, "rules": rules}
    return policy, canaries


def test_a_thousand_rules_with_200_any_executable_regexes_load_and_block(
        start_agent, cgroup, bindir):
    policy, canaries = large_policy(cgroup.name)
    text = yaml.safe_dump(policy, sort_keys=False, width=4096)
    bundle = compile_policy(load_policy_text(text, "large.yaml"))
    pf = bundle["executables"]["prefilter"]
    assert sum(len(bundle["groups"][g]["rules"]) for g in pf["groups"]) == 200
    assert bundle["executables"]["wildcard"] == []  # every regex has a usable literal
    start_agent(dump_bundle(bundle))
    exe = str(bindir / "pftrue")
    rnd = random.Random(3)
    for args in rnd.sample(canaries, 20):
        sim = simulate(bundle, [exe, *args])
        assert sim.action == "block" and sim.reason is None, (args, sim)
        assert cgroup.run([exe, *args]).returncode == KILLED, (args, sim)
    for args in (["hello"], ["pfk999", "-e", "z"], ["curl", "http://h/x"], ["/dev/tcp/1.2.3.4/"]):
        assert simulate(bundle, [exe, *args]).action == "allow", args
        assert cgroup.run([exe, *args]).returncode == 0, args
    # the prefilter read all the windows: the group it woke has none left, and fails closed
    # (a long argv without a literal wakes nothing and runs)
    pad = "a" * ((EDR_TAIL_CALLS - 2) * EDR_SCAN_WINDOW)
    sim = simulate(bundle, [exe, *canaries[0], pad])
    assert (sim.action, sim.reason) == ("block", "unscanned"), sim
    assert cgroup.run([exe, *canaries[0], pad]).returncode == KILLED
    assert simulate(bundle, [exe, pad]).action == "allow"
    assert cgroup.run([exe, pad]).returncode == 0


def cap_policy(cgroup: str) -> dict:
    """pfcap has as many groups as the compiler allows with the prefilter (its own 14 and the
    prefilter: MAX_CANDIDATES), for a uid nobody runs as and without argv conditions (no
    automaton: the argv windows stay for the prefilter and the groups it wakes); two
    prefiltered block rules, each its own group."""
    own = MAX_CANDIDATES - 1
    rules = [rule(f"own-{i}", "log", {"executable": ["pfcap", *([f"pfcapx{i}"] if i else [])],
                                     "uid": [54321]}) for i in range(own)]
    rules.append(rule("alpha", "block", {"cmdline": "alphaone +[0-9]"}))
    rules.append(rule("beta", "block", {"cmdline": "betatwo +[0-9]"}))
    return {"version": 1, "scope": {"cgroups": [cgroup]}, "rules": rules}


def test_a_prefiltered_group_whose_literal_is_absent_does_not_run(start_agent, cgroup, bindir):
    # pfcap already runs MAX_CANDIDATES groups: were the prefiltered groups run for every
    # exec, its execs would pass the kernel's cap and fail closed ("dropped")
    bundle = compile_policy(load_policy_text(yaml.safe_dump(cap_policy(cgroup.name)), "c.yaml"))
    assert len(bundle["executables"]["prefilter"]["groups"]) == 2
    agent = start_agent(dump_bundle(bundle))
    exe = str(bindir / "pfcap")
    cases = [(["hello", "1"], 0, None),  # no literal: neither group runs, nothing dropped
             (["alphaone", "1"], KILLED, "alpha"),  # its group runs (the 16th) and blocks
             (["alphaone", "x"], 0, None),  # literal seen, the regex does not match
             (["betatwo", "2"], KILLED, "beta")]
    for args, rc, rid in cases:
        sim = simulate(bundle, [exe, *args])
        assert (sim.action == "block") == (rc == KILLED) and sim.rule == rid, (args, sim)
        assert sim.reason is None, (args, sim)
        assert cgroup.run([exe, *args]).returncode == rc, (args, sim)
    # both literals: the second group woken is one past the kernel's cap: dropped, and it
    # has a block rule, so the exec fails closed - as policy test says
    both = [exe, "alphaone", "x", "betatwo", "2"]
    sim = simulate(bundle, both)
    assert (sim.action, sim.reason) == ("block", "dropped"), sim
    assert cgroup.run(both).returncode == KILLED
    blocked = agent.wait_events(lambda e: e.get("event.action") == "blocked", count=3)
    assert [e["rule.id"] for e in blocked] == ["alpha", "beta", "edrfleet-unevaluated-groups"]
    assert all(e.get("edrfleet.reason") != "dropped" for e in blocked[:2])
