"""`policy test` judges an exec as the kernel on `int` does beyond its names: the loader run
directly, byte-identical copies, files of a protected size (edrfleet/policy/simulate_identity.py).
The kernel tier (tests/kernel/test_agreement_identity.py) asks the real program the same."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from edrfleet import paths
from edrfleet.cli.main import main
from edrfleet.policy import compile_policy, load_policy_text, simulate
from edrfleet.policy.limits import EDR_ARGS_MAX, EDR_CAND_MAX
from edrfleet.policy.simulate_identity import (
    LOADER_ARGS,
    LOADER_OPTIONS,
    is_loader,
    loader_program,
    merge_lists,
)

LOADER = "/lib64/ld-linux-x86-64.so.2"


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & (2**64 - 1)
    return h


def test_the_loader_options_and_argument_count_are_the_kernels():
    src = (Path(paths.BPF) / "loader.c").read_text()
    assert int(re.search(r"#define EDR_LOADER_ARGS (\d+)", src).group(1)) == LOADER_ARGS
    with_value = src[src.index("loader_option"):src.index("return 2;")]
    flags = src[src.index("return 2;"):src.index("return 1;")]
    for opt, kind in LOADER_OPTIONS.items():
        assert f"0x{fnv1a(opt):016x}ULL" in (with_value if kind == 2 else flags), opt
    assert len(re.findall(r"0x[0-9a-f]{16}ULL", src[src.index("loader_option"):
                                                      src.index("return 0;")])) == len(
        LOADER_OPTIONS)


@pytest.mark.parametrize(("argv", "index", "unjudged"), [
    ([b"ld.so", b"/usr/bin/rm", b"-rf"], 1, False),
    ([b"ld.so", b"--argv0", b"rm", b"/bin/x", b"-rf"], 3, False),  # a value is not PROGRAM
    ([b"ld.so", b"--list", b"--inhibit-cache", b"rm"], 3, False),
    ([b"ld.so", b"--list"], None, False),  # nothing after the options: nothing unjudged
    ([b"ld.so", *[b"--verify"] * (LOADER_ARGS - 1), b"rm", b"-rf"], None, True),
    ([b"ld.so", *[b"--verify"] * (LOADER_ARGS - 2), b"rm"], LOADER_ARGS - 1, False),
    ([b"ld.so", b"--preload", b"x" * EDR_ARGS_MAX, b"rm"], None, True),  # past the copy
])
def test_the_loaders_program_is_found_as_the_kernel_reads_it(argv, index, unjudged):
    run = loader_program(argv)
    assert (run.index, run.unjudged) == (index, unjudged)
    if index is not None:
        assert run.name == argv[index].rsplit(b"/", 1)[-1]


def test_loader_names():
    assert all(is_loader(n) for n in (b"ld-linux-x86-64.so.2", b"ld-musl-x86_64.so.1",
                                      b"ld64.so.2", b"ld-linux-aarch64.so.1"))
    assert not any(is_loader(n) for n in (b"ld", b"ldd", b"ld.so", b"ldconfig", b"rm"))


def test_a_merged_list_keeps_block_groups_first_and_says_what_it_left_out():
    kept, left = merge_lists([list(range(10)), list(range(10, 20))], blocks={15, 19}, limit=16)
    assert kept[:2] == [15, 19] and len(kept) == 16 and sorted(kept + left) == list(range(20))


POLICY = """\
version: 1
multicall: [edrbox]
rules:
  - {{id: rm-rf, description: d, severity: critical, action: block,
     match: {{executable: [{rm}], args: [{{any: [-rf]}}]}}}}
  - {{id: cmd, description: d, severity: high, action: log,
     match: {{executable: [rm], cmdline: '^\\S*/rm -rf'}}}}
"""


@pytest.fixture
def world(tmp_path: Path) -> dict:
    rm = tmp_path / "protected-rm"
    rm.write_bytes(b"\x7fELF protected " * 64)
    copy = tmp_path / "innocent"
    shutil.copy(rm, copy)
    same = tmp_path / "same-size"  # the size and first 256 bytes of rm, another tail
    same.write_bytes(rm.read_bytes()[:256].ljust(rm.stat().st_size, b"d"))
    head = tmp_path / "other-head"  # the size of rm, another head
    head.write_bytes(b"\x7fELF different " * 64)
    other = tmp_path / "other"
    other.write_bytes(b"\x7fELF other")
    bundle = compile_policy(load_policy_text(POLICY.format(rm=rm)))
    return {"bundle": bundle, "rm": str(rm), "copy": str(copy), "same": str(same),
            "other": str(other), "head": str(head)}


def kinds(decision) -> list[str]:
    return [n.kind for n in decision.notes]


def test_the_loader_is_judged_as_its_program_by_basename_on_its_argv(world):
    b = world["bundle"]
    d = simulate(b, [LOADER, "/usr/bin/rm", "-rf", "x"])
    assert (d.action, d.rules) == ("log", ("cmd",)) and kinds(d) == ["loader"]
    # the rule names a path: the kernel has no inode for PROGRAM, only its name
    assert simulate(b, [LOADER, world["rm"], "-rf"]).action == "allow"
    assert simulate(b, [LOADER, "--argv0", "rm", "/bin/x", "-rf"]).action == "allow"
    many = [LOADER, *["--verify"] * LOADER_ARGS, "/usr/bin/rm", "-rf"]
    # PROGRAM past what the kernel reads: fails closed, with no candidate group at all too
    d = simulate(b, many)
    assert (d.action, d.reason, kinds(d)) == ("block", "dropped", ["loader-unjudged"])
    wild = compile_policy(load_policy_text(POLICY.format(rm="rm") + """\
  - {id: any, description: d, severity: low, action: log, match: {cmdline: 'q.q.q'}}
"""))
    d = simulate(wild, many)
    assert (d.action, d.reason, kinds(d)) == ("block", "dropped", ["loader-unjudged"])


def test_a_byte_identical_copy_is_the_protected_file(world):
    d = simulate(world["bundle"], [world["copy"], "-rf"])
    assert (d.rule, kinds(d)) == ("rm-rf", ["content"]) and d.notes[0].host
    assert world["rm"] in d.notes[0].detail
    assert simulate(world["bundle"], [world["other"], "-rf"]).action == "allow"


def test_a_file_of_a_protected_size_is_judged_by_size_and_says_so(world):
    b = world["bundle"]
    d = simulate(b, [world["same"], "-rf"])
    assert (d.rule, kinds(d)) == ("rm-rf", ["size"]) and "judged by size" in d.notes[0].detail
    assert simulate(b, [world["head"], "-rf"]).action == "allow"  # the kernel hashes the head
    d = simulate(b, ["x", "-rf"], filename=world["same"], fileless=True)
    assert (d.rule, kinds(d)) == ("rm-rf", ["size"]) and "fileless" in d.notes[0].detail
    assert simulate(b, [world["same"], "-r"]).action == "allow"  # its argv must still match


def test_more_groups_than_the_kernel_evaluates_are_noted(tmp_path):
    (tmp_path / "edrq").write_bytes(b"q")
    (tmp_path / "edrl").symlink_to("edrq")  # judged under both names: their groups add up
    half = EDR_CAND_MAX // 2 + 1
    rules = "".join(f"  - {{id: {n}{i}, description: d, severity: low, action: log, "
                    f"match: {{executable: [{n}, {n}{i}], cmdline: 'z{i}z'}}}}\n"
                    for n in ("edrq", "edrl") for i in range(half))
    import edrfleet.policy.limits as limits_mod
    lifted, limits_mod.MAX_CANDIDATES = limits_mod.MAX_CANDIDATES, 64
    try:
        b = compile_policy(load_policy_text("version: 1\nrules:\n" + rules))
    finally:
        limits_mod.MAX_CANDIDATES = lifted
    d = simulate(b, [str(tmp_path / "edrl"), "a"])
    assert "dropped" in kinds(d) and d.reason is None  # no block rule left out: no fail closed


def test_policy_test_prints_and_serializes_how_it_judged(world, tmp_path, capsys):
    pol = tmp_path / "p.yaml"
    pol.write_text(POLICY.format(rm=world["rm"]))
    assert main(["policy", "test", str(pol), "--", world["copy"], "-rf"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "blocked by rule 'rm-rf' (critical)"
    assert out[1].startswith("  judged: content: a byte-identical copy of ")
    assert out[1].endswith("(depends on the host)")
    assert main(["policy", "test", str(pol), "--format", "json", "--", world["other"],
                 "-rf"]) == 0
    assert json.loads(capsys.readouterr().out) == {"action": "allow", "rule": None,
                                                   "rules": []}
    assert main(["policy", "test", str(pol), "--format", "json", "--", LOADER,
                 "/bin/rm", "-rf"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["rule"] == "cmd" and got["judged"][0]["kind"] == "loader"
    assert got["judged"][0]["depends_on_host"] is False
