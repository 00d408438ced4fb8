#!/usr/bin/env python3
"""In-kernel cost per exec of the option and path matchers, side by side with the regexes
they replace, in one agent and one run.

One policy of `allow` rules (nothing is killed or reported), one stand-in (a copy of
/bin/true) per case, each named by one rule: no argv condition, the old regex pair of
rm-recursive-root (option regex + path regex), and the new pair (``option`` + ``path`` over the
default policy's 35 system directories).  Each case runs with a short argv and a 40-argument
one (the automaton reads every byte).  Then relative arguments joined to the working directory:
the ``path`` case with a relative argv run from ``/`` (a cwd class: the kernel finds it in the
cwd walk's first lookup and reads NUL as "NUL, then the class") and from a directory 4 levels
down (no class: 3 lookups, nothing joined).  Prints the program's run time per exec from
BPF_ENABLE_STATS and each case's automaton size.  Never asserts timing.

Usage: .venv/bin/python bench/spelling_cost.py [--n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as c  # noqa: E402

from edrfleet.policy import compile_policy, load_policy_text  # noqa: E402

SYSDIRS = ["/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
           "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var", "/snap",
           "/mnt", "/media", "/efi", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib32",
           "/usr/lib64", "/usr/libx32", "/usr/libexec", "/usr/share", "/usr/include",
           "/var/lib", "/var/log", "/boot/efi"]
SYSDIRS_RE = ("(bin|boot|dev|etc|home|lib|lib32|lib64|libx32|opt|proc|root|run|sbin|srv|sys|usr|"
              "var|snap|mnt|media|efi|usr/+(bin|sbin|lib|lib32|lib64|libx32|libexec|share|"
              "include)|var/+(lib|log)|boot/+efi)")
CASES = {  # stand-in name -> its rule's args
    "edrspell-none": None,
    "edrspell-regex": [{"regex": "^(-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)$"},
                       {"regex": f"^/[/.]*(\\*|{SYSDIRS_RE}(/[/.]*\\*?)?)?$"}],
    "edrspell-spelled": [{"option": {"short": ["r", "R"], "long": "recursive"}},
                         {"path": SYSDIRS}],
}
ARGVS = {"short": ["-rf", "/tmp/build/out"],
         "40 args": ["-rf", *(f"/tmp/build/dir{i}/file.o" for i in range(39))]}
RELATIVE = ["-rf", *(f"build/dir{i}/file.o" for i in range(10))]


def policy(scope: str) -> dict:
    rules = []
    for name, args in CASES.items():
        match: dict = {"executable": [name]}
        if args:
            match["args"] = args
        rules.append({"id": name, "description": f"cost of {name}", "severity": "low",
                      "action": "allow", "match": match})
    return {"version": 1, "scope": {"cgroups": [scope]}, "rules": rules}


def states(text: str) -> dict[str, int]:
    bundle = compile_policy(load_policy_text(text, "bench.yaml"))
    out = {}
    for name, (g,) in bundle["executables"]["names"].items():
        index = bundle["groups"][g]["dfa"]
        d = bundle["dfas"][index] if index is not None else None
        out[name] = len(d["trans"]) // d["nclasses"] if d else 0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="execs per case and round (2000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    args = ap.parse_args()
    with c.standin_bench("edrfleet-bench-spell-", list(CASES), policy, "spell") as b:
        sizes = states(b.policy.read_text())
        totals: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):  # alternate cases so drift hits all of them alike
            for name in CASES:
                for label, argv in ARGVS.items():
                    _runs, per = c.bpf_us_per_exec(
                        b.agent.proc.pid, b.cg,
                        [str(b.loop), str(args.n), str(b.workdir / name), *argv])
                    totals.setdefault((name, label), []).append(per)
            deep = b.workdir / "a" / "b" / "c"
            deep.mkdir(parents=True, exist_ok=True)
            for label, where in (("rel, cwd /", Path("/")), ("rel, deep", deep)):
                here = Path.cwd()
                os.chdir(where)  # the exec loop inherits it
                try:
                    _runs, per = c.bpf_us_per_exec(
                        b.agent.proc.pid, b.cg,
                        [str(b.loop), str(args.n), str(b.workdir / "edrspell-spelled"),
                         *RELATIVE])
                finally:
                    os.chdir(here)
                totals.setdefault(("edrspell-spelled", label), []).append(per)
        print(f"{'rule args':<18} {'argv':<8} {'states':>6} {'bpf µs/exec (median)':>21} "
              f"{'vs none':>8}")
        for name in CASES:
            for label in [x for x in (*ARGVS, "rel, cwd /", "rel, deep") if (name, x) in totals]:
                per = sorted(totals[(name, label)])[len(totals[(name, label)]) // 2]
                base = sorted(totals[("edrspell-none", "short" if "rel" in label
                                      else label)])[args.rounds // 2]
                print(f"{name.removeprefix('edrspell-'):<18} {label:<8} {sizes[name]:>6} "
                      f"{per:>21.2f} {per / base:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
