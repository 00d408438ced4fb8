"""The policy package repeats the kernel's capacities; they must equal bpf/edrfleet.h."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

from edrfleet.policy import limits

HEADER = Path(__file__).resolve().parents[3] / "bpf" / "edrfleet.h"


def header_defines() -> dict[str, int]:
    found = {}
    for name, value in re.findall(r"#define\s+(EDR_\w+)\s+(\S+)", HEADER.read_text()):
        try:
            found[name] = int(value.rstrip("uUlL"), 0)
        except ValueError:
            continue
    return found


def test_every_mirrored_constant_equals_the_header():
    defines = header_defines()
    mirrored = {k: v for k, v in vars(limits).items() if k.startswith("EDR_")}
    assert mirrored, "limits.py mirrors no constant"
    for name, value in mirrored.items():
        assert name in defines, f"{name} is not in {HEADER.name}"
        assert defines[name] == value, f"{name}: limits.py {value}, header {defines[name]}"


def test_the_compiler_caps_fit_the_kernel_tables():
    defines = header_defines()
    # a transition entry addresses rows with EDR_ROW_BITS bits, accept ids with the rest
    assert 1 << defines["EDR_ROW_BITS"] == limits.MAX_TRANS_TOTAL
    assert defines["EDR_TRANS_MAX"] <= limits.MAX_TRANS_TOTAL
    assert defines["EDR_ACCEPT_IDS"] - 1 == limits.MAX_ACCEPT_MASKS
    assert defines["EDR_ACCEPT_IDS"] <= 1 << (32 - defines["EDR_ROW_BITS"])
    assert limits.COND_BITS == defines["EDR_RULES_PER_GROUP"] == 64
    assert limits.MAX_CLASSES <= 256 <= defines["EDR_CLS_PAD"]
    assert limits.MAX_DFA_STATES * limits.MAX_CLASSES <= limits.MAX_TRANS_TOTAL


@pytest.mark.parametrize("name", ["errors", "loader", "compile", "simulate"])
def test_the_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(f"edrfleet.policy.{name}"))
    assert result.attempted > 0 and result.failed == 0
