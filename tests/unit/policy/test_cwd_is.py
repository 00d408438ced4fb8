"""``match.cwd_is``: the working directory is exactly one of the directories (``cwd`` is a
prefix) — the simulator and the reference agree, and the agent's map keys carry the exact bits
under the reserved "dirs" key the kernel reads (bpf/context.c)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edrfleet.agent.maps import pack_context
from edrfleet.kernel_abi import load_header
from edrfleet.policy import compile_policy
from edrfleet.policy.errors import PolicyError
from edrfleet.policy.reference import reference_decide
from edrfleet.policy.simulate import simulate
from tests.unit.helpers.policy_helpers import policy_of_rules, rule_yaml

EXACT = rule_yaml("rel-etc", match="{executable: [rm], cwd_is: [/], args: [{any: [etc]}]}")
PREFIX = rule_yaml("under-usr", match="{executable: [rm], cwd: [/usr], args: [{any: [x]}]}")


@pytest.mark.parametrize(("argv", "cwd", "want"), [
    (["rm", "-rf", "etc"], "/", "block"),
    (["rm", "-rf", "etc"], "/tmp", "allow"),  # the same name elsewhere
    (["rm", "-rf", "etc"], "/usr", "allow"),
    (["rm", "-rf", "etc"], None, "allow"),  # unknown cwd: cwd rules never match
    (["rm", "x"], "/usr", "block"), (["rm", "x"], "/usr/bin", "block"),  # cwd stays a prefix
    (["rm", "x"], "/", "allow"),
])
def test_cwd_is_is_exact(argv: list[str], cwd: str | None, want: str) -> None:
    policy = policy_of_rules(EXACT, PREFIX)
    got = simulate(compile_policy(policy), argv, cwd=cwd)
    assert got.action == want
    assert reference_decide(policy, argv, cwd=cwd) == got


def test_cwd_is_must_be_absolute_and_canonical() -> None:
    with pytest.raises(PolicyError, match="cwd_is directory 'etc'.*not an absolute"):
        policy_of_rules(rule_yaml("r", match="{executable: [rm], cwd_is: [etc]}"))
    with pytest.raises(PolicyError, match="cwd_is directory '/etc/../usr'.*canonical"):
        policy_of_rules(rule_yaml("r", match="{executable: [rm], cwd_is: [/etc/../usr]}"))


def test_exact_bits_sit_under_the_reserved_dirs_key() -> None:
    header = load_header(Path(__file__).resolve().parents[3] / "bpf")
    bundle = compile_policy(policy_of_rules(EXACT, PREFIX))
    ctx = pack_context(bundle, header, lambda p: (os.stat(p).st_dev, os.stat(p).st_ino))
    exact_bit = 1 << ctx.cwd_bit["=/"]
    prefix_bit = 1 << ctx.cwd_bit["/usr"]
    root = (os.stat("/").st_dev, os.stat("/").st_ino)
    assert ctx.dirs[(0, header["EDR_XDIRS_INO"])] == exact_bit
    assert ctx.dirs[root] == exact_bit
    assert not ctx.dirs[(0, header["EDR_XDIRS_INO"])] & prefix_bit
