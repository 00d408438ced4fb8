"""compile_policy: the bundle of docs/policy-bundle.md, grouping, bits, caps, determinism."""

from __future__ import annotations

import json

import pytest

from edrfleet.policy import (
    PolicyError,
    bundle_sha256,
    compile_policy,
    dump_bundle,
    load_bundle,
    load_policy_text,
    reference_decide,
    simulate,
)
from tests.unit.helpers.policy_helpers import FS, fake_stat, policy, policy_of_rules, rule_yaml

EXAMPLE = """
    version: 1
    mode: monitor
    scope: {cgroups: [/edrfleet-lab/web1]}
    rules:
      - id: rm-recursive-root
        description: recursive delete of the root filesystem
        severity: critical
        action: block
        tags: [destructive]
        match:
          executable: [rm]
          args:
            - any: ["-rf", "-fr", "--recursive"]
            - glob: "/*"
      - id: dd-disk
        description: dd onto a disk
        severity: high
        action: log
        match:
          executable: [/usr/bin/dd]
          args: [{glob: "of=/dev/*"}]
          uid: [1000]
      - id: pipe-to-shell
        description: download piped to a shell
        severity: high
        action: block
        match:
          cmdline: 'curl .*\\| *(ba)?sh'
"""


def test_the_bundle_has_the_documented_layout():
    bundle = compile_policy(policy(EXAMPLE))
    assert set(bundle) == {"format", "version", "sha256", "source", "mode", "backend",
                           "unscanned", "scope", "search_path", "rules", "executables",
                           "groups", "dfas"}
    # version 2: the cmdline rule is prefiltered (version 1 readers would never run it)
    assert (bundle["format"], bundle["version"], bundle["source"]) == (
        "edrfleet-bundle", 2, "policy.yaml")
    assert (bundle["mode"], bundle["backend"], bundle["unscanned"]) == (
        "monitor", "auto", "block")
    assert bundle["scope"] == {"cgroups": ["/edrfleet-lab/web1"]}
    assert bundle["search_path"] == ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                     "/usr/bin", "/sbin", "/bin"]
    assert bundle["rules"][0] == {
        "id": "rm-recursive-root", "description": "recursive delete of the root filesystem",
        "severity": "critical", "action": "block", "uids": [], "tags": ["destructive"]}
    assert bundle["rules"][1]["uids"] == [1000]
    assert bundle["executables"] == {"names": {"rm": [0]}, "paths": {"/usr/bin/dd": [1]},
                                     "wildcard": [], "prefilter": {"dfa": 3, "groups": [2]}}
    assert bundle["groups"] == [
        {"dfa": 0, "rules": [[0, 0b11]], "has_block": True},
        {"dfa": 1, "rules": [[1, 0b1]], "has_block": False},
        {"dfa": 2, "rules": [[2, 0b1]], "has_block": True},
    ]
    for dfa in bundle["dfas"]:
        assert set(dfa) == {"nclasses", "classes", "start", "trans", "accept"}
        assert len(dfa["classes"]) == 258
        assert len(dfa["trans"]) % dfa["nclasses"] == 0
    assert bundle["sha256"] == bundle_sha256(bundle)


def test_rules_with_the_same_executables_share_a_group_and_identical_conditions_a_bit():
    bundle = compile_policy(policy_of_rules(
        rule_yaml("a", match="{executable: [rm, unlink], args: [{any: [-rf, -fr]}]}"),
        rule_yaml("b", match="{executable: [unlink, rm], args: [{any: [-fr, -rf]}, "
                             "{glob: '/*'}]}"),
        rule_yaml("c", match="{executable: [rm]}"),
    ))
    assert bundle["executables"]["names"] == {"rm": [0, 1], "unlink": [0]}
    assert bundle["groups"][0]["rules"] == [[0, 0b01], [1, 0b11]]
    assert bundle["groups"][1] == {"dfa": None, "rules": [[2, 0]], "has_block": True}


def test_a_group_splits_past_64_condition_bits():
    rules = [rule_yaml(f"r{i}", match=f"{{executable: [rm], args: [{{any: [-x{i}]}}]}}")
             for i in range(70)]
    pol = policy_of_rules(*rules)
    bundle = compile_policy(pol)
    assert bundle["executables"]["names"]["rm"] == [0, 1]
    assert [len(g["rules"]) for g in bundle["groups"]] == [64, 6]
    assert bundle["groups"][1]["rules"][0] == [64, 1]
    for i in (0, 63, 64, 69):
        assert simulate(bundle, ["rm", f"-x{i}"], stat=FS).rule == f"r{i}"


def test_a_group_splits_past_64_rule_slots_even_with_shared_bits():
    rules = [rule_yaml(f"r{i}", match="{executable: [rm], args: [{any: [-rf]}]}")
             for i in range(65)]
    bundle = compile_policy(policy_of_rules(*rules))
    assert [len(g["rules"]) for g in bundle["groups"]] == [64, 1]
    assert bundle["groups"][0]["dfa"] == bundle["groups"][1]["dfa"], "identical DFAs stored once"
    assert len(simulate(bundle, ["rm", "-rf"], stat=FS).rules) == 65


def test_an_executable_needing_more_groups_than_a_key_lists_is_refused(monkeypatch):
    import edrfleet.policy.limits as limits_mod

    monkeypatch.setattr(limits_mod, "EDR_GROUPS_PER_KEY", 8)  # fewer rules to compile
    rules = [rule_yaml(f"r{i}", match=f"{{executable: [rm], args: [{{any: [-x{i}]}}]}}")
             for i in range(64 * 8 + 1)]
    with pytest.raises(PolicyError) as info:
        compile_policy(policy_of_rules(*rules))
    assert "executable 'rm' needs 9 rule groups; the kernel takes 8 per executable" in str(
        info.value)


def test_a_rule_whose_automaton_is_too_large_is_named_with_its_line():
    pol = policy_of_rules(rule_yaml("ok"), rule_yaml(
        "huge", match="{cmdline: '(a|b)*a(a|b){12}'}"))
    with pytest.raises(PolicyError) as info:
        compile_policy(pol)
    err = info.value
    assert (err.line, err.col) == (12, 22)
    assert err.message == ("cmdline regex '(a|b)*a(a|b){12}' of rule 'huge' needs more than "
                           "4096 automaton states")
    assert "simplify" in err.fix


def test_a_group_too_large_together_is_split_into_smaller_groups():
    rules = [rule_yaml(f"r{i}", match=f"{{executable: [rm], cmdline: 'x{i}.*y{i}'}}")
             for i in range(14)]
    pol = policy_of_rules(*rules)
    bundle = compile_policy(pol)
    assert len(bundle["groups"]) > 1
    assert all(len(d["trans"]) // d["nclasses"] <= 4096 for d in bundle["dfas"])
    for argv in (["rm", "x3 y3"], ["rm", "y3", "x3"], ["rm", "x13", "--", "y13"]):
        assert simulate(bundle, argv, stat=FS) == reference_decide(pol, argv, stat=FS)


def test_the_transition_budget_of_the_kernel_is_enforced(monkeypatch):
    import edrfleet.policy.limits as limits_mod

    monkeypatch.setattr(limits_mod, "MAX_TRANS_TOTAL", 10)
    with pytest.raises(PolicyError, match=r"the automata need \d+ transition entries, the "
                                          r"kernel holds 2 x 10 \(a group's automaton in one "
                                          r"part\); largest groups start at rules 'a'"):
        compile_policy(policy_of_rules(rule_yaml("a", match="{cmdline: 'abc'}")))


def test_the_same_policy_gives_the_same_bytes_and_sha256():
    first = dump_bundle(compile_policy(policy(EXAMPLE)))
    again = dump_bundle(compile_policy(policy(EXAMPLE, source="/elsewhere/policy.yaml")))
    assert first == again
    assert json.loads(first)["sha256"] == bundle_sha256(json.loads(first))


def test_a_changed_policy_changes_the_sha256():
    a = compile_policy(policy(EXAMPLE))
    b = compile_policy(policy(EXAMPLE.replace("severity: critical", "severity: high")))
    assert a["sha256"] != b["sha256"]


def test_the_canonical_json_is_sorted_and_compact():
    text = dump_bundle(compile_policy(policy(EXAMPLE)))
    assert text.endswith("\n") and "\n" not in text[:-1] and ", " not in text
    body = json.loads(text)
    assert text == json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"


def test_load_bundle_round_trips_a_dumped_bundle():
    bundle = compile_policy(policy(EXAMPLE))
    assert load_bundle(dump_bundle(bundle)) == bundle


def _resigned(bundle, **changes):
    out = dict(bundle, **changes)
    out["sha256"] = bundle_sha256(out)
    return json.dumps(out)


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda b: "{not json", "bad policy bundle: not JSON"),
    (lambda b: "[1, 2]", "bad policy bundle: not a JSON object"),
    (lambda b: _resigned(b, format="other"), "format is 'other', expected 'edrfleet-bundle'"),
    (lambda b: _resigned(b, version=4), "version 4 is not supported"),
    (lambda b: json.dumps(dict(b, mode="enforce")), "sha256 mismatch"),
    (lambda b: _resigned(b, groups=[{"dfa": 9, "rules": [], "has_block": False}]),
     "groups[0].dfa out of range"),
    (lambda b: _resigned(b, dfas=[dict(b["dfas"][0], trans=[0])]), "dfas[0].trans length 1"),
    (lambda b: _resigned(b, rules=None), "malformed table"),
], ids=["not-json", "not-object", "format", "version", "sha256", "group-dfa", "trans", "rules"])
def test_load_bundle_refuses_a_damaged_bundle_with_a_clear_error(mangle, message):
    bundle = compile_policy(policy(EXAMPLE))
    with pytest.raises(ValueError, match="bad policy bundle") as info:
        load_bundle(mangle(bundle))
    assert message in str(info.value)


def test_a_policy_without_rules_compiles_to_an_empty_bundle():
    bundle = compile_policy(policy("version: 1\nrules: []\n"))
    assert bundle["rules"] == bundle["groups"] == bundle["dfas"] == []
    assert bundle["executables"] == {"names": {}, "paths": {}, "wildcard": []}


def test_an_exec_that_would_run_too_many_groups_is_refused(monkeypatch):
    import edrfleet.policy.limits as limits_mod

    monkeypatch.setattr(limits_mod, "MAX_CANDIDATES", 2)
    pol = policy_of_rules(rule_yaml("a", match="{executable: [rm]}"),
                          rule_yaml("b", match="{executable: [rm, dd]}"),
                          rule_yaml("c", match="{cmdline: x}"))
    with pytest.raises(PolicyError) as info:
        compile_policy(pol)
    assert info.value.message == (
        "an exec of 'rm' would run 3 rule groups (2 of its executables, 1 for rules without "
        "'executable' run for every exec); the kernel evaluates at most 2 with the whole argv "
        "scanned (and 1 more such cases)")
    assert info.value.line == 3


def test_the_distinct_masks_of_the_kernel_accept_table_are_counted(monkeypatch):
    import edrfleet.policy.limits as limits_mod

    monkeypatch.setattr(limits_mod, "MAX_ACCEPT_MASKS", 1)
    pol = policy_of_rules(rule_yaml("a", match="{args: [{any: [x]}, {any: [y]}]}"))
    with pytest.raises(PolicyError, match="the automata use 2 distinct condition masks; the "
                                          "kernel holds 1"):
        compile_policy(pol)


def test_an_args_regex_too_large_is_located_at_its_own_entry():
    pol = policy_of_rules(rule_yaml("huge", match="\n      args:\n        - regex: 'a'\n"
                                                  "        - regex: '(a|b)*a(a|b){12}'"))
    with pytest.raises(PolicyError) as info:
        compile_policy(pol)
    assert (info.value.line, info.value.col) == (10, 11)
    assert info.value.message.startswith("args regex '(a|b)*a(a|b){12}' of rule 'huge'")


def test_a_pattern_expanding_past_the_nfa_cap_is_named():
    pol = policy_of_rules(rule_yaml("big", match="{cmdline: '(a{1000}){1000}'}"))
    with pytest.raises(PolicyError, match="cmdline regex '\\(a\\{1000\\}\\)\\{1000\\}' of "
                                          "rule 'big' is too large for the automaton"):
        compile_policy(pol)


REJECTED_AT_COMPILE = [
    ("a pattern expanding to too many NFA nodes", "{args: [{regex: '(a{100}){300}'}]}",
     "policy.yaml:7:20: args regex '(a{100}){300}' of rule 'big' is too large for the "
     "automaton (fix: the pattern expands to more than 20000 automaton nodes; use smaller "
     "{m,n} bounds or fewer alternatives)"),
    ("an args regex whose DFA blows up", "{executable: [rm], args: [{regex: '(x|y)*x(x|y){13}'}]}",
     "policy.yaml:7:38: args regex '(x|y)*x(x|y){13}' of rule 'big' needs more than 4096 "
     "automaton states (fix: simplify it: anchor it ('^...'), avoid '.*' or '.{m,n}' between "
     "pieces, or split it into several 'args' entries (each must hold))"),
    ("an unanchored counted gap on the command line", "{cmdline: '.*a.{14}b'}",
     "policy.yaml:7:22: cmdline regex '.*a.{14}b' of rule 'big' needs more than 4096 automaton "
     "states (fix: simplify it: anchor it ('^...'), avoid '.*' or '.{m,n}' between pieces, or "
     "split it into several 'args' entries (each must hold))"),
]


@pytest.mark.parametrize(("match", "expected"), [c[1:] for c in REJECTED_AT_COMPILE],
                         ids=[c[0] for c in REJECTED_AT_COMPILE])
def test_an_automaton_past_the_caps_is_refused_with_rule_piece_and_fix(match, expected):
    with pytest.raises(PolicyError) as info:
        compile_policy(policy_of_rules(rule_yaml("ok"), rule_yaml("big", "block", match)))
    assert str(info.value).replace("policy.yaml:12:", "policy.yaml:7:") == expected


def test_the_capacity_targets_fit_the_compiler_caps():
    # >= 1 024 states in one group, >= 65 536 in all (bench/compile_policy.py prints them;
    # tests/kernel/test_capacity.py runs the same policy in the kernel)
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "bench" / "compile_policy.py"
    spec = importlib.util.spec_from_file_location("bench_compile_policy", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bundle = compile_policy(load_policy_text(bench.capacity_policy_text()))
    states = [len(d["trans"]) // d["nclasses"] for d in bundle["dfas"]]
    assert len(states) == 64 and min(states) > 1024 and sum(states) > 65536
    hit, miss = bench.capacity_arg(63)
    fs = fake_stat({})
    assert simulate(bundle, ["edrcap-63", hit], stat=fs).action == "block"
    assert simulate(bundle, ["edrcap-63", miss], stat=fs).action == "allow"
