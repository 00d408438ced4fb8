"""Layouts BCC derives from bpf/edrfleet.h are the ones the agent's packing relies on."""

from __future__ import annotations

import ctypes as ct
from pathlib import Path

import pytest

from edrfleet.agent.btf import Btf, kernel_offsets
from edrfleet.agent.engine import Engine, capacities_for
from edrfleet.kernel_abi import load_header

BPF = Path(__file__).resolve().parents[2] / "bpf"


@pytest.fixture(scope="module")
def engine():
    h = load_header(BPF)
    e = Engine(BPF, h, kernel_offsets(Btf.load()), capacities_for({}, h))
    yield h, e
    e.detach()


def test_event_args_are_last_so_only_used_bytes_are_sent(engine):
    h, e = engine
    from bcc.table import _get_event_class

    ev = _get_event_class(e.bpf["events"])
    ends = {name: getattr(ev, name).offset + getattr(ev, name).size for name, _ in ev._fields_}
    assert max(ends, key=ends.get) == "args"
    assert ev.args.size == h["EDR_ARGS_MAX"]
    assert ev.filename.size == h["EDR_FILENAME_MAX"]
    assert ev.exe_name.size == h["EDR_NAME_MAX"]


def test_map_values_have_the_sizes_the_packer_writes(engine):
    h, e = engine
    b = e.bpf
    assert ct.sizeof(b["groups"].Leaf) == 24 + h["EDR_CLS_PAD"] + 16 * h["EDR_RULES_PER_GROUP"]
    assert ct.sizeof(b["trans"].Leaf) == 4 * e.capacities["EDR_TRANS_MAX"]
    assert ct.sizeof(b["accepts"].Leaf) == 8 * h["EDR_ACCEPT_IDS"]
    # fileless: 4 of the first 16; then parents, cwds; ancestors, inet_stdio + pad
    assert ct.sizeof(b["rules"].Leaf) == 16 + 4 * h["EDR_UIDS_PER_RULE"] + 16 + 16
    assert ct.sizeof(b["names"].Key) == 4 + h["EDR_NAME_MAX"]
    assert ct.sizeof(b["inodes"].Key) == 16
    # ... n_wild, wild[], then the prefilter: pf_group, n_pf, pf_block (u64), pf[]
    assert ct.sizeof(b["config"].Leaf) == 24 + 4 * h["EDR_GROUPS_PER_KEY"] + 16 + 4 * h[
        "EDR_PF_BITS"]
    assert b["config"].Leaf.pf_block.offset % 8 == 0


def test_every_switch_of_the_header_is_passed_and_the_maps_have_those_sizes(engine):
    h, e = engine
    passed = dict(f[2:].split("=", 1) for f in e.cflags if f.startswith("-D"))
    assert set(h.switches) <= set(passed)
    assert int(passed["EDR_MAX_GROUPS"]) == h.switches["EDR_MAX_GROUPS"]  # capacities_for({})
    assert e.bpf["groups"].max_entries == h["EDR_SLOTS"] * h.switches["EDR_MAX_GROUPS"]
    assert e.bpf["progs"].max_entries == h["EDR_PROG_MAX"]


def test_context_maps_and_fields_have_the_layout_the_packer_writes(engine):
    h, e = engine
    b = e.bpf
    rule = b["rules"].Leaf
    assert (rule.parents.offset, rule.cwds.offset) == (48, 56)
    assert (rule.ancestors.offset, rule.inet_stdio.offset, rule.inet_stdio.size) == (64, 72, 4)
    group = b["groups"].Leaf
    assert group.flags.offset == 12 and group.flags.size == 4
    slot = type(group().rules[0])
    assert (slot.need.offset, slot.rule.offset, slot.flags.offset) == (0, 8, 12)
    assert b["pnames"].Key is b["names"].Key or ct.sizeof(b["pnames"].Key) == 4 + h["EDR_NAME_MAX"]
    for name in ("pnames", "pinodes", "dirs"):
        assert ct.sizeof(b[name].Leaf) == 8, name
    assert ct.sizeof(b["pinodes"].Key) == ct.sizeof(b["dirs"].Key) == 16
    assert set(h.enums["edr_ctx_flag"].values()) == {1, 2, 4, 8, 16}
    assert (group.part.offset, group.cls.offset) == (16, 24)
    assert ct.sizeof(b["cwdcls"].Key) == 16 and ct.sizeof(b["cwdcls"].Leaf) == 2 * (
        h["EDR_CWD_LEVELS"] + 1)
    for name in ("mcnames", "mcinodes"):  # sets: the key is the datum
        assert ct.sizeof(b[name].Leaf) == 4, name
    assert ct.sizeof(b["mcnames"].Key) == 4 + h["EDR_NAME_MAX"]
    assert ct.sizeof(b["mcinodes"].Key) == 16


def test_event_carries_the_parent_name_and_the_cwd(engine):
    h, e = engine
    from bcc.table import _get_event_class

    ev = _get_event_class(e.bpf["events"])
    assert ev.parent_name.size == h["EDR_NAME_MAX"]
    assert ev.cwd.size == h["EDR_CWD_MAX"]
    assert ev.cwd_len.size == 2
