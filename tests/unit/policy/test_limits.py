"""The policy package reads the kernel's numbers from bpf/edrfleet.h; they fit its own caps."""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect

import pytest

from edrfleet import paths
from edrfleet.kernel_abi import load_header
from edrfleet.policy import limits

H = load_header(paths.BPF)


def test_every_kernel_number_is_read_from_the_header_not_written():
    tree = ast.parse(inspect.getsource(limits))
    read = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id.startswith("EDR_"):
            value = node.value
            assert isinstance(value, ast.Subscript) and value.value.id == "KERNEL", \
                f"{node.targets[0].id} is not read from the header"
            read[node.targets[0].id] = value.slice.value
    assert read and all(name == key for name, key in read.items())
    assert all(getattr(limits, name) == H[name] for name in read)


def test_the_numbers_follow_the_header_they_are_read_from(tmp_path, monkeypatch):
    text = (paths.BPF / "edrfleet.h").read_text()
    assert "#define EDR_UIDS_PER_RULE   8 " in text
    (tmp_path / "edrfleet.h").write_text(text.replace("EDR_UIDS_PER_RULE   8 ",
                                                      "EDR_UIDS_PER_RULE   5 "))
    monkeypatch.setattr(paths, "BPF", tmp_path)
    try:
        assert importlib.reload(limits).EDR_UIDS_PER_RULE == 5
    finally:
        monkeypatch.undo()
        importlib.reload(limits)
    assert limits.EDR_UIDS_PER_RULE == 8


def test_the_compiler_caps_fit_the_kernel_tables():
    # a transition entry addresses rows with EDR_ROW_BITS bits, accept ids with the rest
    assert 1 << H["EDR_ROW_BITS"] == limits.MAX_TRANS_TOTAL
    assert H.switches["EDR_TRANS_MAX"] <= limits.MAX_TRANS_TOTAL
    assert H["EDR_ACCEPT_IDS"] - 1 == limits.MAX_ACCEPT_MASKS
    assert H["EDR_ACCEPT_IDS"] <= 1 << (32 - H["EDR_ROW_BITS"])
    assert limits.COND_BITS == H["EDR_RULES_PER_GROUP"] == 64
    assert limits.MAX_CLASSES <= 256 <= H["EDR_CLS_PAD"]
    assert limits.MAX_DFA_STATES * limits.MAX_CLASSES <= limits.MAX_TRANS_TOTAL
    # a program starts with maps no bigger than a policy may fill
    for name in ("GROUPS", "RULES", "NAMES", "INODES", "SCOPE"):
        assert H.switches[f"EDR_MAX_{name}"] <= H[f"EDR_POLICY_MAX_{name}"], name


def test_a_name_fits_the_kernel_key_up_to_62_bytes():
    # the kernel drops a read that fills its 64-byte key with the NUL: the name may be cut
    assert H["EDR_NAME_MAX"] == 64 and limits.NAME_BYTES_MAX == 62
    assert limits.name_fits("a" * 62) and limits.name_fits(b"a" * 62)
    assert not limits.name_fits("a" * 63)
    assert not limits.name_fits("é" * 32)  # 64 bytes


@pytest.mark.parametrize("name", ["errors", "loader", "compile", "simulate"])
def test_the_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(f"edrfleet.policy.{name}"))
    assert result.attempted > 0 and result.failed == 0
