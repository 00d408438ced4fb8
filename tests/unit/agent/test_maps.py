"""Packing a bundle's context matchers (user, parent, cwd) into the kernel tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from edrfleet.agent.maps import NO_UID, PackError, pack_bundle, rule_uids
from edrfleet.kernel_abi import load_header
from edrfleet.policy import compile_policy
from tests.unit.helpers.policy_helpers import policy_of_rules, rule_yaml

H = load_header(Path(__file__).resolve().parents[3] / "bpf")
FILES = {"/usr/bin/bash": (8, 500), "/bin/bash": (8, 500), "/usr/sbin/sshd": (8, 600),
         "/tmp": (20, 1), "/dev/shm": (21, 1)}


def pack(*rules: str):
    bundle = compile_policy(policy_of_rules(*rules))
    return pack_bundle(bundle, H, identity=FILES.get, cgroup_id=lambda p: 1,
                       user_uid={"root": 0, "alice": 1000}.get)


def test_each_distinct_parent_and_cwd_gets_a_bit_and_its_host_keys():
    p = pack(rule_yaml("a", "block", "{executable: [rm], parent: {executable: [bash]}}"),
             rule_yaml("b", "block", "{executable: [rm], parent: {executable: "
                                     "[/usr/sbin/sshd, bash]}, cwd: [/tmp, /dev/shm]}"),
             rule_yaml("c", "block", "{executable: [rm], cwd: [/nonexistent]}"))
    ctx = p.context
    assert ctx.parent_bit == {"bash": 0, "/usr/sbin/sshd": 1}
    assert ctx.pnames == {b"bash": 1}
    assert ctx.pinodes == {(8, 500): 1, (8, 600): 2}
    assert ctx.cwd_bit == {"/tmp": 0, "/dev/shm": 1, "/nonexistent": 2}
    assert ctx.dirs == {(20, 1): 1, (21, 1): 2}  # a missing prefix gets no key: never matches
    assert [(r.parents, r.cwds) for r in p.rules] == [(1, 0), (3, 3), (0, 4)]
    (group,) = p.groups
    assert group.flags == [1, 3, 2]  # EDR_CTX_PARENT | EDR_CTX_CWD per slot
    assert p.needs(H)["EDR_MAX_PINODES"] == 2


def test_user_names_are_resolved_on_the_host():
    assert rule_uids({"uids": [7], "users": ["alice", "ghost"]}, {"alice": 1000}.get) == [7, 1000]
    assert rule_uids({"uids": [], "users": ["ghost"]}, {}.get) == [NO_UID]
    assert rule_uids({"uids": []}, {}.get) == []


def test_more_distinct_cwd_prefixes_than_key_bits_are_refused():
    # the compiler refuses such a policy; the agent checks a bundle from elsewhere again
    bundle = compile_policy(policy_of_rules(rule_yaml("r", "block", "{cwd: [/d]}")))
    bundle["rules"][0]["cwds"] = [f"/d{i}" for i in range(H["EDR_KEY_BITS"] + 1)]
    with pytest.raises(PackError, match="65 distinct cwd prefixes, the kernel holds 64"):
        pack_bundle(bundle, H, identity=FILES.get, cgroup_id=lambda p: 1)


def test_the_packer_and_the_validator_agree_on_the_longest_name_the_kernel_matches():
    longest = "x" * H.name_bytes_max
    match = f"{{executable: [{longest}], parent: {{executable: [{longest}]}}}}"
    bundle = compile_policy(policy_of_rules(rule_yaml("r", "block", match)))
    p = pack_bundle(bundle, H, identity=FILES.get, cgroup_id=lambda p: 1)
    assert list(p.names) == [longest.encode()] and list(p.context.pnames) == [longest.encode()]
    # one byte more: the validator refuses it (test_schema); from elsewhere, the packer too
    bundle["executables"]["names"] = {longest + "x": [0]}
    with pytest.raises(PackError, match="longer than the kernel key"):
        pack_bundle(bundle, H, identity=FILES.get, cgroup_id=lambda p: 1)


def test_trans_entries_are_next_row_and_accept_id_as_the_header_lays_them_out():
    bundle = compile_policy(policy_of_rules(
        rule_yaml("rm-rf", match="{executable: [rm], args: [{regex: '^-[a-z]*r'}, {glob: '/*'}]}"),
        rule_yaml("dd-dev", match="{executable: [dd], cmdline: 'of=/dev/(sd|nvme)'}"),
    ))
    packed = pack_bundle(bundle, H, identity=FILES.get, cgroup_id=lambda p: 1)
    row_bits = H["EDR_ROW_BITS"]
    expected, base = [], 0
    for dfa in bundle["dfas"]:
        k, masks = dfa["nclasses"], dict(map(tuple, dfa["accept"]))
        for nxt in dfa["trans"]:
            accept_id = packed.accepts.index(masks[nxt]) if nxt in masks else 0
            expected.append((base + nxt * k) | accept_id << row_bits)
        base += len(dfa["trans"])
    assert packed.trans == [expected]  # one part: the policy fits in one map value
    assert len(bundle["dfas"]) == 2 and any(e >> row_bits for e in expected)


def test_needs_say_which_matchers_the_program_must_hold():
    plain = pack(rule_yaml("a", match="{executable: [rm]}")).needs(H)
    assert (plain["EDR_WITH_UIDS"], plain["EDR_WITH_CTX"]) == (0, 0)
    users = pack(rule_yaml("a", match="{executable: [rm], user: [nosuchuser]}")).needs(H)
    assert (users["EDR_WITH_UIDS"], users["EDR_WITH_CTX"]) == (1, 0)  # the uid no one has
    cwd = pack(rule_yaml("a", match="{executable: [rm], cwd: [/tmp]}")).needs(H)
    parent = pack(rule_yaml("a", match="{executable: [rm], parent: {executable: [bash]}}"))
    assert cwd["EDR_WITH_CTX"] == parent.needs(H)["EDR_WITH_CTX"] == 1


def test_names_that_are_one_file_here_are_flagged_past_the_list_not_refused():
    # four names one inode (Debian's alternatives): every three (two names and a size) fit
    # the compiler's check, the four together pass what the inode's list holds
    per = H["EDR_GROUPS_PER_KEY"]
    names = ("nc", "ncat", "netcat", "nctrad")
    each = per // 4

    def rules(action, prefix):
        return [rule_yaml(f"{prefix}{n}{i}", action, f"{{executable: [{n}, {prefix}{n}{i}]}}")
                for n in names for i in range(each)]

    files = {f"/usr/bin/{n}": (8, 900) for n in names}

    def packed(*rule_texts):
        bundle = compile_policy(policy_of_rules(*rule_texts))
        return bundle, pack_bundle(bundle, H, identity=files.get, cgroup_id=lambda p: 1,
                                   user_uid=lambda n: None)

    bundle, p = packed(*rules("log", "l"),
                       rule_yaml("nc-e", "block", "{executable: [netcat], cmdline: ' -e '}"))
    listed = p.inodes[(8, 900)]
    assert len(listed) == per and listed.over == 1, "left out, and none of those blocks"
    assert bundle["executables"]["names"]["netcat"][-1] in listed, "block groups kept first"
    _, p = packed(*rules("block", "b"),
                  rule_yaml("nc-e", "block", "{executable: [netcat], cmdline: ' -e '}"))
    assert p.inodes[(8, 900)].over == 1 | H["EDR_BLOCK_RULE"]


def test_the_prefilter_is_one_more_group_and_config_lists_what_its_bits_wake():
    bundle = compile_policy(policy_of_rules(
        rule_yaml("rev", "block", "{cmdline: '/dev/tcp/'}"),
        rule_yaml("mimi", "log", "{cmdline: 'mimikatz'}"),
        rule_yaml("weak", "block", "{cmdline: 'a.b'}")))
    pf = bundle["executables"]["prefilter"]
    packed = pack_bundle(bundle, H, identity=FILES.get, cgroup_id=lambda p: 1)
    assert packed.prefilter == len(bundle["groups"]) == len(packed.groups) - 1
    entry = packed.groups[packed.prefilter]
    assert entry.slots == [] and entry.has_block == 0  # a long argv alone never blocks
    assert entry.classes == bundle["dfas"][pf["dfa"]]["classes"]
    assert packed.pf_groups == pf["groups"]
    blocks = [bundle["groups"][g]["has_block"] for g in pf["groups"]]
    assert packed.pf_block == sum(1 << i for i, b in enumerate(blocks) if b) and any(blocks)
    assert packed.needs(H)["EDR_WITH_PF"] == 1
    # woken groups are wildcard groups: an unscanned argv does not block by itself
    assert all(not packed.groups[g].has_block & 1 for g in pf["groups"])
    plain = compile_policy(policy_of_rules(rule_yaml("rm", "block")))
    assert pack_bundle(plain, H, identity=FILES.get, cgroup_id=lambda p: 1).needs(H)[
        "EDR_WITH_PF"] == 0
