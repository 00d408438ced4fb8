"""The candidate-union check counts a file's size: an exec of a file the kernel does not know
by its inode is judged under its two names and the groups of the protected size it has
(bpf/identity.c), so three keys of the policy can meet in one exec."""

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


def test_three_keys_past_the_cap_that_no_two_reach_are_refused_naming_the_size():
    per = MAX_CANDIDATES // 3 + 1  # any two fit, three do not
    assert 2 * per <= MAX_CANDIDATES < 3 * per
    with pytest.raises(PolicyError) as info:
        compile_policy(policy_of_rules(*triple_rules(per)))
    msg = info.value.message
    assert "with the size of" in msg and "judged by its names and its size" in msg
    assert f"would run {3 * per} rule groups ({per} + {per} + {per} of its executables" in msg
    assert f"the kernel evaluates at most {MAX_CANDIDATES}" in msg


def test_three_keys_within_the_cap_compile_and_check_says_what_it_counted():
    per = MAX_CANDIDATES // 3
    bundle = compile_policy(policy_of_rules(*triple_rules(per)))
    line = next(s for s in bundle_summary(bundle) if s.startswith("candidates:"))
    assert f"at most {MAX_CANDIDATES} groups" in line and "its size" in line
