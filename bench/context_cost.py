#!/usr/bin/env python3
"""In-kernel cost of the context matchers (parent executable, cwd walk) per exec.

One agent, one policy of `allow` rules (so nothing is killed or reported; the context is still
read, because an allow rule's argv conditions hold): a stand-in with a plain rule, one whose
rule names a parent executable, one whose rule names a cwd prefix, the last run from a
directory 3 and 30 levels deep (the walk goes to '/' every time).  Prints the program's run
time per exec from BPF_ENABLE_STATS.  Never asserts timing.

Usage: .venv/bin/python bench/context_cost.py [--n 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

CASES = (  # (label, stand-in, cwd depth)
    ("no context", "edrctx-none", 3),
    ("parent executable", "edrctx-parent", 3),
    ("cwd walk", "edrctx-cwd", 3),
    ("cwd walk", "edrctx-cwd", 30),  # with the work dir: past the 32-directory limit
)


def policy(scope: str) -> dict:
    def rule(name: str, extra: dict) -> dict:
        return {"id": name, "description": f"cost of {name}", "severity": "low",
                "action": "allow", "match": {"executable": [name], **extra}}

    return {"version": 1, "scope": {"cgroups": [scope]}, "rules": [
        rule("edrctx-none", {}),
        rule("edrctx-parent", {"parent": {"executable": ["bash"]}}),
        rule("edrctx-cwd", {"cwd": ["/dev/shm"]}),
    ]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="execs per case (2000)")
    args = ap.parse_args()
    here = os.getcwd()
    names = sorted({name for _, name, _ in CASES})
    with c.standin_bench("edrfleet-bench-ctx-", names, policy, "ctx") as b:
        try:
            print(f"{'case':<26} {'execs':>6} {'bpf µs/exec':>12}")
            for label, name, depth in CASES:
                cwd = b.workdir.joinpath(*["d"] * depth)
                cwd.mkdir(parents=True, exist_ok=True)
                os.chdir(cwd)  # the loop and its children inherit it
                runs, per = c.bpf_us_per_exec(b.agent.proc.pid, b.cg,
                                              [str(b.loop), str(args.n), str(b.workdir / name)])
                os.chdir(here)
                if name == "edrctx-cwd":
                    label = f"{label}, cwd {len(cwd.parts) - 1} deep"
                print(f"{label:<26} {runs:>6} {per:>12.2f}")
        finally:
            os.chdir(here)
    return 0


if __name__ == "__main__":
    sys.exit(main())
