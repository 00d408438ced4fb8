"""User, parent executable and cwd matchers: schema, bundle fields, simulator == reference."""

from __future__ import annotations

import pytest

from edrfleet.policy import compile_policy, reference_decide, simulate
from edrfleet.policy.limits import EDR_CWD_DEPTH
from tests.unit.helpers.policy_helpers import PATH, fake_stat, policy_of_rules, rule_yaml

FS = fake_stat({
    "/usr/bin/rm": (8, 100), "/bin/rm": (8, 100),
    "/usr/bin/bash": (8, 500), "/bin/bash": (8, 500),
    "/usr/sbin/sshd": (8, 600),
    "/usr/bin/dash": (8, 700), "/usr/bin/sh": (8, 700), "/bin/sh": (8, 700),
    "/": (8, 2), "/tmp": (20, 1), "/tmp/work": (20, 50), "/tmp/work/deep": (20, 51),
    "/dev": (5, 1), "/dev/shm": (21, 1), "/home": (8, 10), "/home/tmpx": (8, 11),
})
USERS = {"root": 0, "alice": 1000}.get

POLICY = policy_of_rules(
    rule_yaml("rm-under-shell", "block", "{executable: [rm], parent: {executable: [bash]}}"),
    rule_yaml("rm-under-sshd", "block", "{executable: [rm], parent: {executable: "
                                        "[/usr/sbin/sshd]}}"),
    rule_yaml("rm-under-sh", "log", "{executable: [rm], parent: {executable: [sh]}}"),
    rule_yaml("rm-in-tmp", "block", "{executable: [rm], cwd: [/tmp/, /dev/shm]}"),
    rule_yaml("rm-by-alice", "block", "{executable: [rm], user: [alice, 4242]}"),
    rule_yaml("rm-by-nobody-here", "block", "{executable: [rm], user: [ghost]}"),
    rule_yaml("rm-ok-in-work", "allow", "{executable: [rm], cwd: [/tmp/work/deep]}"),
)
BUNDLE = compile_policy(POLICY)


def both(argv, **kw):
    kw = {"stat": FS, "path": PATH, "users": USERS, **kw}
    got = simulate(BUNDLE, argv, **kw)
    assert got == reference_decide(POLICY, argv, **kw)
    return got.rules


CASES = [
    ("no context: only context-free rules", {}, ()),
    ("parent by basename", {"parent": "/usr/bin/bash"}, ("rm-under-shell",)),
    ("parent by path is by inode", {"parent": "/usr/sbin/sshd"}, ("rm-under-sshd",)),
    ("parent look-alike by path is not it", {"parent": "/opt/sshd"}, ()),
    ("parent name through the search path: sh is dash's inode",
     {"parent": "/usr/bin/dash"}, ("rm-under-sh",)),
    ("cwd prefix with a trailing slash covers the directory", {"cwd": "/tmp"}, ("rm-in-tmp",)),
    ("cwd below a prefix", {"cwd": "/tmp/work"}, ("rm-in-tmp",)),
    ("cwd prefix is by directory, not by string", {"cwd": "/home/tmpx"}, ()),
    ("allow by cwd wins", {"cwd": "/tmp/work/deep"}, ("rm-in-tmp", "rm-ok-in-work")),
    ("user by name", {"uid": 1000}, ("rm-by-alice",)),
    ("user by uid", {"uid": 4242}, ("rm-by-alice",)),
    ("an unknown user name never matches", {"uid": 0}, ()),
]


@pytest.mark.parametrize(("kw", "rules"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_context_matchers_decide_like_the_reference(kw, rules):
    assert both(["rm", "x"], **kw) == rules


def test_a_cwd_deeper_than_the_kernel_walk_fails_closed_for_block_only():
    deep = "/tmp/" + "/".join(["d"] * EDR_CWD_DEPTH)
    assert both(["rm", "x"], cwd=deep) == ("rm-in-tmp",)
    allow = policy_of_rules(rule_yaml("in-tmp", "block", "{executable: [rm], cwd: [/tmp]}"),
                            header="version: 1\nlimits: {unscanned: allow}\n")
    assert simulate(compile_policy(allow), ["rm"], cwd=deep, stat=FS, path=PATH).rules == ()


def test_the_bundle_carries_users_parents_and_cwds_only_where_given():
    rules = {r["id"]: r for r in BUNDLE["rules"]}
    assert rules["rm-by-alice"]["uids"] == [4242] and rules["rm-by-alice"]["users"] == ["alice"]
    assert rules["rm-under-sshd"]["parents"] == ["/usr/sbin/sshd"]
    assert rules["rm-in-tmp"]["cwds"] == ["/tmp", "/dev/shm"]
    assert set(rules["rm-under-shell"]) == {"id", "description", "severity", "action", "uids",
                                            "tags", "parents"}


def test_uid_is_an_alias_of_user():
    pol = policy_of_rules(rule_yaml("a", "block", "{uid: [root, 7]}"))
    assert (pol.rules[0].uids, pol.rules[0].users) == ((7,), ("root",))


def test_more_distinct_parents_than_the_kernel_holds_are_refused_with_the_rule():
    from edrfleet.policy import PolicyError

    rules = [rule_yaml(f"r{i}", "block", f"{{executable: [rm], parent: {{executable: [p{i}]}}}}")
             for i in range(65)]
    with pytest.raises(PolicyError, match=r"65 distinct parent executables; the kernel holds "
                                          r"64 \(the 65th is in rule 'r64'\)"):
        compile_policy(policy_of_rules(*rules))
