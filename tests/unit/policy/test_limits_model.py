"""Every kernel limit in the compiler and in `policy test` (issue 12): the candidate cap on the
union of keys one exec hits, the argv scan budget, the name key length.  The kernel tier
(tests/kernel/test_candidate_cap.py) checks the same cases against the real program."""

from __future__ import annotations

import pytest

import edrfleet.policy.limits as limits_mod
from edrfleet.policy import PolicyError, compile_policy, load_policy_text, simulate
from edrfleet.policy.limits import (
    EDR_CAND_MAX,
    EDR_SCAN_WINDOW,
    EDR_TAIL_CALLS,
    MAX_CANDIDATES,
    NAME_BYTES_MAX,
)
from tests.unit.helpers.policy_helpers import fake_stat, policy_of_rules, rule_yaml

NO_FILES = fake_stat({})


def pair_rules(per_name: int, wild: int = 1) -> list[str]:
    """``per_name`` groups on each of sh and dash (distinct executable lists), log only, and
    ``wild`` wildcard block rules on canaries (one group, always run: no literal of 3 bytes
    every match must contain, so not prefiltered)."""
    rules = [rule_yaml(f"{n}-{i}", "log", f"{{executable: [{n}{f', {n}x{i}' if i else ''}], "
                                          f"cmdline: never{i}x}}")
             for n in ("sh", "dash") for i in range(per_name)]
    rules += [rule_yaml(f"w{i}", "block", f"{{cmdline: 'c.n.r.{i}.b'}}") for i in range(wild)]
    return rules


def test_two_names_of_one_file_past_the_cap_are_refused_naming_both():
    per = MAX_CANDIDATES // 2 + 1
    with pytest.raises(PolicyError) as info:
        compile_policy(policy_of_rules(*pair_rules(per)))
    msg = info.value.message
    assert "'sh' and 'dash' as one file (a link) would run" in msg or \
        "'dash' and 'sh' as one file (a link) would run" in msg
    assert f"{2 * per + 1} rule groups ({per} + {per} of its executables, 1 for rules without " \
        f"'executable' run for every exec); the kernel evaluates at most {MAX_CANDIDATES}" in msg
    assert "same 'executable' list" in info.value.fix


def test_the_compiler_cap_leaves_every_group_an_argv_window():
    # one group more and all with automata: (32 - groups - 1) // groups == 0 windows
    assert MAX_CANDIDATES <= EDR_CAND_MAX
    assert (32 - MAX_CANDIDATES - 1) // MAX_CANDIDATES >= 1


def test_two_names_within_the_cap_compile_and_run_every_group():
    per = (MAX_CANDIDATES - 1) // 2
    bundle = compile_policy(policy_of_rules(*pair_rules(per)))
    d = simulate(bundle, ["/bin/sh", "-c", "echo canary0abc"], stat=NO_FILES,
                 filename="/x/sh")
    assert (d.action, d.rule, d.reason) == ("block", "w0", None)


def test_many_cmdline_only_rules_without_literals_are_a_clear_refusal_not_a_crash():
    # each regex too large to share a group with the others, and no literal of 3 bytes in
    # it: one always-run group per rule
    rules = [rule_yaml(f"c{i}", "block", f"{{cmdline: 'a{i % 10}.*b.*c.*d.*e{i // 10}'}}")
             for i in range(70)]
    with pytest.raises(PolicyError) as info:
        compile_policy(policy_of_rules(*rules))
    assert "rules without 'executable' that have no literal every match must contain run " \
        "for every exec: 'c0', 'c1', 'c2' and 67 more need" in str(info.value)
    assert "fixed text of 3 or more characters" in info.value.fix
    assert "min()" not in str(info.value)


@pytest.fixture
def past_the_cap(monkeypatch):
    """A bundle with more groups for sh + dash than the kernel evaluates (the compiler's check
    lifted), as links on a host can make one."""
    per = EDR_CAND_MAX // 2 + 1  # past what the kernel evaluates
    monkeypatch.setattr(limits_mod, "MAX_CANDIDATES", 4 * MAX_CANDIDATES)
    bundle = compile_policy(policy_of_rules(*pair_rules(per)))
    monkeypatch.undo()
    return bundle


def test_policy_test_fails_closed_where_the_kernel_drops_a_block_group(past_the_cap, tmp_path):
    # sh -> dash: judged under sh and dash, the wildcard group is past the cap
    (tmp_path / "dash").write_bytes(b"")
    (tmp_path / "sh").symlink_to("dash")
    d = simulate(past_the_cap, [str(tmp_path / "sh"), "-c", "echo hello"])
    assert (d.action, d.rule, d.reason) == ("block", None, "dropped")
    # alone, dash fits
    d = simulate(past_the_cap, [str(tmp_path / "dash"), "-c", "echo hello"])
    assert (d.action, d.reason) == ("allow", None)


def test_a_dropped_group_without_block_rules_changes_nothing(monkeypatch, tmp_path):
    per = EDR_CAND_MAX // 2 + 1  # past what the kernel evaluates
    monkeypatch.setattr(limits_mod, "MAX_CANDIDATES", 4 * MAX_CANDIDATES)
    bundle = compile_policy(policy_of_rules(*pair_rules(per, wild=0)))
    monkeypatch.undo()
    (tmp_path / "dash").write_bytes(b"")
    (tmp_path / "sh").symlink_to("dash")
    d = simulate(bundle, [str(tmp_path / "sh"), "-c", "echo"])
    assert (d.action, d.reason) == ("allow", None)


def test_an_argv_past_the_scan_budget_fails_closed_where_a_block_rule_names_the_exe():
    bundle = compile_policy(policy_of_rules(
        rule_yaml("rm-x", "block", "{executable: [rm], args: [{any: [-x]}]}")))
    # one group with an automaton: the judge call and the start aside, the rest are windows
    budget = (EDR_TAIL_CALLS - 2) * EDR_SCAN_WINDOW
    fits = ["rm", "a" * (budget - 3)]  # "rm" NUL "a..." = budget bytes
    assert simulate(bundle, fits, stat=NO_FILES).action == "allow"
    d = simulate(bundle, [*fits, ""], stat=NO_FILES)
    assert (d.action, d.rule, d.reason) == ("block", None, "unscanned")
    # the rule still matches on the scanned prefix
    assert simulate(bundle, ["rm", "-x", "a" * budget], stat=NO_FILES).rule == "rm-x"
    allow = load_policy_text(
        "version: 1\nlimits: {unscanned: allow}\nrules:\n" + rule_yaml(
            "rm-x", "block", "{executable: [rm], args: [{any: [-x]}]}"), "p.yaml")
    assert simulate(compile_policy(allow), [*fits, ""], stat=NO_FILES).action == "allow"


def test_a_long_argv_on_a_wildcard_group_alone_does_not_fail_closed():
    bundle = compile_policy(policy_of_rules(rule_yaml("w", "block", "{cmdline: zzz}")))
    assert simulate(bundle, ["x", "a" * (40 * EDR_SCAN_WINDOW)], stat=NO_FILES).action == "allow"


def test_a_name_longer_than_the_kernel_key_is_not_matched_by_name():
    # the schema refuses such names in a policy; a link on the host can still carry one
    long = "r" * (NAME_BYTES_MAX + 1)
    bundle = compile_policy(policy_of_rules(rule_yaml("rm", "block", "{executable: [rm]}")))
    bundle["executables"]["names"][long] = bundle["executables"]["names"]["rm"]
    assert simulate(bundle, [f"/x/{long}"], stat=NO_FILES).action == "allow"
    fits = "r" * NAME_BYTES_MAX
    bundle["executables"]["names"][fits] = bundle["executables"]["names"]["rm"]
    assert simulate(bundle, [f"/x/{fits}"], stat=NO_FILES).rule == "rm"


def test_policy_test_names_a_fail_closed_block(past_the_cap, tmp_path, capsys):
    from edrfleet.cli.main import main
    from edrfleet.policy.bundle import dump_bundle

    (tmp_path / "dash").write_bytes(b"")
    (tmp_path / "sh").symlink_to("dash")
    f = tmp_path / "bundle.json"
    f.write_text(dump_bundle(past_the_cap))
    cmd = ["policy", "test", str(f), "--", str(tmp_path / "sh"), "-c", "echo"]
    assert main(cmd) == 0
    assert capsys.readouterr().out.startswith(
        "blocked: more rule groups apply to this executable than the kernel evaluates")
    assert main([*cmd[:3], "--format", "json", *cmd[3:]]) == 0
    out = capsys.readouterr().out
    assert '"reason": "dropped"' in out and '"rule": null' in out
