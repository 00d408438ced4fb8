"""The literal prefilter of rules without an executable: compiled at scale, decided by
`simulate` like the reference (Python's re on the policy), and the kernel's budget and cap
modelled where the prefilter and the groups it wakes share them."""

from __future__ import annotations

import random
import time

import pytest
import yaml

from edrfleet.policy import compile_policy, load_policy_text, reference_decide, simulate
from edrfleet.policy.limits import EDR_PF_BITS, EDR_SCAN_WINDOW, EDR_TAIL_CALLS
from edrfleet.policy.simulate import PREFILTER, candidate_groups
from tests.unit.helpers.policy_helpers import FS, PATH, fake_stat, policy_of_rules, rule_yaml

NO_FILES = fake_stat({})
SHAPES = [r"{t} +-(e|c) ", r"(wget|curl) .*{t}", r"base64 +(-d|--decode).*{t}\b",
          r"/dev/(tcp|udp)/[0-9.]+/{t}", r"(?i)x{t}-[a-z]+", r"^\S+ .*{t}=[0-9]+$"]


def scale_policy(n_regexes: int = 200, n_rules: int = 1000) -> str:
    rules = [rule_yaml(f"named-{i}", "block", f"{{executable: [tool-{i % 100}], args: "
                                              f"[{{any: [-x{i}]}}]}}")
             for i in range(n_rules - n_regexes)]
    rules += [rule_yaml(f"any-{i}", ("block", "log", "allow")[i % 3],
                        "{cmdline: '" + SHAPES[i % len(SHAPES)].format(t=f"pfk{i:03d}") + "'}")
              for i in range(n_regexes)]
    return "version: 1\nrules:\n" + "".join(rules)


@pytest.fixture(scope="module")
def scale() -> tuple:
    pol = load_policy_text(scale_policy(), "scale.yaml")
    t0 = time.process_time()
    bundle = compile_policy(pol)
    return pol, bundle, time.process_time() - t0


def test_200_any_executable_regexes_in_1000_rules_compile_to_one_prefilter(scale):
    _, bundle, seconds = scale
    pf = bundle["executables"]["prefilter"]
    assert bundle["version"] == 2 and bundle["executables"]["wildcard"] == []
    assert len(pf["groups"]) <= EDR_PF_BITS
    assert sum(len(bundle["groups"][g]["rules"]) for g in pf["groups"]) == 200
    assert seconds < 30  # about 3 s here; the regexes alone used to be refused


def test_an_exec_without_a_literal_runs_the_prefilter_alone(scale):
    _, bundle, _ = scale
    cands = candidate_groups(bundle, _target(["/bin/true"]), _cached(), False)
    assert cands.groups == [PREFILTER]
    d = simulate(bundle, ["/bin/true", "--version"], stat=NO_FILES)
    assert (d.action, d.rule) == ("allow", None)


def _target(argv):
    from edrfleet.policy.identity import encode_argv, resolve_target

    return resolve_target(encode_argv(argv), filename=None, identity=None, st=_cached(),
                          path=None)


def _cached():
    from edrfleet.policy.identity import CachedStat

    return CachedStat(NO_FILES)


def canary(i: int) -> list[str]:
    t = f"pfk{i:03d}"
    return [["sh", t, "-e", "x"], ["curl", f"http://h/{t}"], ["base64", "-d", t],
            [f"/dev/udp/1.2.3.4/{t}"], [f"X{t.upper()}-abc"], ["env", f"{t}=42"]][i % 6]


def test_simulate_decides_like_the_reference_on_canaries_and_near_misses(scale):
    pol, bundle, _ = scale
    rnd = random.Random(5)
    samples = [["prog", *canary(i)] for i in rnd.sample(range(200), 40)]
    samples += [["prog", "pfk000", "-d"], ["prog", "curl", "http://x"], ["prog", "pfk013=x"],
                ["prog", *canary(1), *canary(2)], ["prog", *canary(5), "tail"]]
    actions = set()
    for argv in samples:
        want = reference_decide(pol, argv, stat=FS, path=PATH)
        assert simulate(bundle, argv, stat=FS, path=PATH) == want, argv
        actions.add(want.action)
    assert actions == {"allow", "block", "log"}


def test_a_woken_block_group_that_cannot_read_as_far_as_the_prefilter_fails_closed():
    text = rule_yaml("nc-e", "block", "{cmdline: 'canaryzz +-e'}")
    bundle = compile_policy(policy_of_rules(text))
    # the prefilter alone: 1 + 1 calls and the rest windows; one more group, woken by the
    # literal, finds no tail call left when the prefilter read them all
    windows = EDR_TAIL_CALLS - 2
    short = ["prog", "canaryzz", "-e"]
    assert simulate(bundle, short, stat=NO_FILES).rule == "nc-e"
    long = [*short, "a" * (windows * EDR_SCAN_WINDOW)]
    d = simulate(bundle, long, stat=NO_FILES)
    assert (d.action, d.reason) == ("block", "unscanned")
    # without the literal nothing wakes: a long argv alone never fails closed here
    assert simulate(bundle, ["prog", "a" * (windows * EDR_SCAN_WINDOW)],
                    stat=NO_FILES).action == "allow"
    allow = policy_of_rules(text, header="version: 1\nlimits: {unscanned: allow}\n")
    assert simulate(compile_policy(allow), long, stat=NO_FILES).action == "allow"


def test_a_rule_without_a_usable_literal_stays_always_run():
    bundle = compile_policy(policy_of_rules(
        rule_yaml("weak", "block", "{cmdline: 'a.*b'}"),
        rule_yaml("strong", "block", "{cmdline: 'mimikatz'}")))
    exes = bundle["executables"]
    assert [bundle["rules"][r]["id"] for g in exes["wildcard"]
            for r, _ in bundle["groups"][g]["rules"]] == ["weak"]
    assert [bundle["rules"][r]["id"] for g in exes["prefilter"]["groups"]
            for r, _ in bundle["groups"][g]["rules"]] == ["strong"]
    assert simulate(bundle, ["x", "a", "b"], stat=NO_FILES).rule == "weak"


def test_a_policy_without_wildcard_literals_keeps_version_1():
    bundle = compile_policy(policy_of_rules(rule_yaml("rm", "block")))
    assert bundle["version"] == 1 and "prefilter" not in bundle["executables"]


def test_rules_sharing_a_literal_share_a_group():
    rules = [rule_yaml(f"t{i}", "block", f"{{cmdline: '/dev/tcp/.*{chr(97 + i % 26)}{i}'}}")
             for i in range(60)]
    rules += [rule_yaml(f"u{i}", "block", f"{{cmdline: 'uniq{i:03d}'}}") for i in range(60)]
    bundle = compile_policy(policy_of_rules(*rules))
    groups = bundle["executables"]["prefilter"]["groups"]
    tcp = {g for g in groups for r, _ in bundle["groups"][g]["rules"]
           if bundle["rules"][r]["id"].startswith("t")}
    mixed = {g for g in tcp for r, _ in bundle["groups"][g]["rules"]
             if bundle["rules"][r]["id"].startswith("u")}
    assert len(tcp) <= 3 and len(mixed) <= 1  # side by side, not spread over every group


@pytest.mark.parametrize("n", [64 * 3])
def test_many_unique_literals_still_fit_the_bits(n):
    rules = [rule_yaml(f"u{i}", "log", f"{{cmdline: 'lit{i:04d}x'}}") for i in range(n)]
    bundle = compile_policy(policy_of_rules(*rules))
    assert len(bundle["executables"]["prefilter"]["groups"]) <= EDR_PF_BITS
    assert yaml.safe_dump(bundle["executables"]["prefilter"])
