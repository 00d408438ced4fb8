"""Which pinned program a start adopts, and where pins live (logic only; tests/kernel/
test_pinned.py does it on the kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edrfleet.agent.engine import bpf_text
from edrfleet.agent.pinned import adopt, pins, tamper
from edrfleet.paths import BPF

NEEDS = {"EDR_MAX_RULES": 10, "EDR_WITH_UIDS": 0}


def _manifest(tmp_path: Path, **over) -> dict:
    pdir = tmp_path / "p1"
    pdir.mkdir(exist_ok=True)
    (pdir / "link_exec").touch()
    m = {"pdir": str(pdir), "links": ["exec"], "text_sha256": "abc", "version": "1",
         "capacities": {"EDR_MAX_RULES": 64, "EDR_WITH_UIDS": 0}, "backend": "sigkill"}
    return {**m, **over}


def test_the_same_program_with_room_is_adopted(tmp_path):
    assert adopt.why_not(_manifest(tmp_path), "abc", NEEDS, "auto", "1") == ""
    assert adopt.why_not(_manifest(tmp_path), "abc", NEEDS, "sigkill", "1") == ""


@pytest.mark.parametrize(("over", "text", "needs", "wanted", "reason"), [
    ({}, "new", NEEDS, "auto", "a new release"),
    ({"version": "0"}, "abc", NEEDS, "auto", "a new release"),
    ({}, "abc", {"EDR_MAX_RULES": 65}, "auto", "needs a program built for it"),
    ({}, "abc", {"EDR_WITH_UIDS": 1}, "auto", "needs a program built for it"),
    ({}, "abc", NEEDS, "lsm", "backend lsm wanted"),
    ({"links": ["exec", "lsm"]}, "abc", NEEDS, "auto", "no longer pinned"),
    ({"pdir": "/nonexistent/p9"}, "abc", NEEDS, "auto", "is gone"),
])
def test_anything_else_gets_a_new_program_and_says_why(tmp_path, over, text, needs, wanted,
                                                        reason):
    assert reason in adopt.why_not(_manifest(tmp_path, **over), text, needs, wanted, "1")


def test_nothing_pinned_is_said_so():
    assert adopt.why_not(None, "abc", NEEDS, "auto", "1") == "nothing pinned for this spool"


def test_each_spool_has_its_own_directory_whatever_the_spelling(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert pins.instance_dir(a) != pins.instance_dir(b)
    assert pins.instance_dir(a) == pins.instance_dir(f"{a}/../a")
    assert pins.instance_dir(a).startswith(pins.PIN_ROOT + "/")


def test_every_map_of_the_program_is_found():
    names = pins.map_names(bpf_text(BPF))  # every file: identity.c declares "fsizes"
    assert {"active", "config", "rules", "groups", "trans", "names", "progs", "progs_lsm",
            "lsm_passed", "events", "events_block", "logagg", "counters", "fsizes"} <= set(names)
    assert set(tamper.POLICY_MAPS) <= set(names)


def test_an_unreadable_manifest_names_the_file_and_the_fix(tmp_path):
    (tmp_path / pins.MANIFEST).write_text("{")
    with pytest.raises(ValueError, match="pinned.json.*agent disarm"):
        pins.read_manifest(tmp_path)


def test_the_manifest_round_trips(tmp_path):
    pins.write_manifest(tmp_path, {"pdir": "x", "gen": 3})
    assert pins.read_manifest(tmp_path) == {"pdir": "x", "gen": 3}


def test_a_tamper_report_says_what_changed():
    want, have = (2).to_bytes(4, "little") + bytes(8), bytes(12)
    assert tamper.describe("config", b"\1\0\0\0", have, want) == "mode 0, was 2"
    assert tamper.describe("rules", b"\1\0\0\0", b"\0\0\1", b"\0\0\0") == \
        "changed (1 bytes from offset 2)"
    assert tamper.digest({"a": {b"k": b"v"}}) != tamper.digest({"a": {b"k": b"w"}})
