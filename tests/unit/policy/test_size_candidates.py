"""The candidate-union check: two keys of the policy meet in one exec on real hosts (a name and
a link's name); three (two names and another file's size and head, bpf/identity.c) only in a
crafted copy, which the kernel fails closed on instead of the policy being refused."""

from __future__ import annotations

import pytest

from edrfleet.policy import PolicyError, compile_policy
from edrfleet.policy.bundle import bundle_summary
from edrfleet.policy.limits import MAX_CANDIDATES
from tests.unit.helpers.policy_helpers import policy_of_rules, rule_yaml


def triple_rules(per_name: int) -> list[str]:
    """``per_name`` log groups on each of three executables (distinct executable lists)."""
    return [rule_yaml(f"{n}-{i}", "log", f"{{executable: [{n}{f', {n}x{i}' if i else ''}], "
                                         f"cmdline: never{i}x}}")
            for n in ("aa", "bb", "cc") for i in range(per_name)]


def test_two_keys_past_the_cap_are_refused_naming_the_link():
    per = MAX_CANDIDATES // 2 + 1
    with pytest.raises(PolicyError) as info:
        compile_policy(policy_of_rules(*triple_rules(per)[:2 * per]))
    msg = info.value.message
    assert "as one file (a link)" in msg
    assert f"would run {2 * per} rule groups ({per} + {per} of its executables" in msg
    assert f"the kernel evaluates at most {MAX_CANDIDATES}" in msg


def test_three_keys_past_the_cap_that_no_two_reach_compile_the_kernel_fails_closed():
    per = MAX_CANDIDATES // 3 + 1  # any two fit, three do not: only a crafted copy hits three
    assert 2 * per <= MAX_CANDIDATES < 3 * per
    bundle = compile_policy(policy_of_rules(*triple_rules(per)))
    line = next(s for s in bundle_summary(bundle) if s.startswith("candidates:"))
    assert "fails closed in the kernel" in line


def test_three_keys_within_the_cap_compile_and_check_says_what_it_counted():
    per = MAX_CANDIDATES // 3
    bundle = compile_policy(policy_of_rules(*triple_rules(per)))
    line = next(s for s in bundle_summary(bundle) if s.startswith("candidates:"))
    assert f"at most {MAX_CANDIDATES} groups" in line and "size and head" in line
