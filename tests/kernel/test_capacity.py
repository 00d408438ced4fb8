"""The capacity targets, in the kernel: >= 1 024 DFA states in one executable's group,
>= 65 536 states in all, 4 KiB of command line scanned to its last byte.

The policy is bench/compile_policy.py's capacity policy (64 executables, each with its own
automaton of 1 031..1 094 states: 68 000 states) plus a command-line rule whose match is the
last bytes of a 4 KiB argv.  Canaries are copies of /bin/true.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "compile_policy.py"
CMD_RULE = """\
  - id: cap-cmdline-end
    description: the marker at the very end of a 4 KiB command line
    severity: high
    action: block
    match:
      executable: [edrcap-cmd]
      cmdline: 'edrcap-end-marker$'
"""


def _bench():
    spec = importlib.util.spec_from_file_location("bench_compile_policy", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def cap(start_agent, cgroup):
    bench = _bench()
    agent = start_agent(bench.capacity_policy_text(cgroup.name) + CMD_RULE)
    return agent, bench


def killed(res) -> bool:
    return res.returncode in (-9, 137)


def test_the_longest_automaton_of_every_part_of_the_table_decides_in_the_kernel(
        cap, cgroup, standins):
    agent, bench = cap
    from edrfleet.policy import compile_policy, load_policy_text

    bundle = compile_policy(load_policy_text(bench.capacity_policy_text()))
    states = [len(d["trans"]) // d["nclasses"] for d in bundle["dfas"]]
    assert min(states) >= 1024 and sum(states) >= 65536
    for i in (0, 31, bench.CAPACITY_GROUPS - 1):  # first, middle and last DFA of the table
        hit, miss = bench.capacity_arg(i)
        exe = str(standins(f"edrcap-{i}"))
        assert killed(cgroup.run([exe, hit])), i
        assert cgroup.run([exe, miss]).returncode == 0, i
        assert cgroup.run([exe, hit + "b"]).returncode == 0, i
    evs = agent.wait_events(lambda e: e["rule.id"].startswith("cap-"), count=3, timeout=20)
    assert {e["rule.id"] for e in evs} == {"cap-0", "cap-31", "cap-63"}


def test_four_kib_of_command_line_are_scanned_to_the_last_byte(cap, cgroup, standins):
    agent, _ = cap
    exe = str(standins("edrcap-cmd"))
    marker = "edrcap-end-marker"
    pad = 4096 - len(exe) - 1 - len(marker) - 1 - 1  # argv block: 4096 bytes with its NULs
    argv = [exe, "p" * pad, marker]
    assert sum(len(a) + 1 for a in argv) == 4096
    assert killed(cgroup.run(argv))
    assert cgroup.run([exe, "p" * pad, marker + "x"]).returncode == 0
    (ev,) = agent.wait_events(lambda e: e["rule.id"] == "cap-cmdline-end", timeout=20)
    assert ev["edrfleet.args_bytes"] == 4096 and not ev["edrfleet.unscanned"]
