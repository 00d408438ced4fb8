"""Time `compile_policy` on a synthetic policy: 1 000 rules, 200 of them with a regex.

Usage: .venv/bin/python bench/compile_policy.py [--rules N] [--regexes N] [--seed S]
Prints the load, compile and total wall times, the CPU time (steadier on a busy machine),
and the size of the bundle; then the same for the capacity policy (64 executables, each with
an automaton of more than 1 024 states: more than 65 536 states in all), which
tests/kernel/test_capacity.py loads into the kernel.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edrfleet.policy import compile_policy, dump_bundle, load_policy_text  # noqa: E402

NAMES = ["rm", "dd", "curl", "wget", "nc", "ncat", "bash", "sh", "python3", "perl", "chmod",
         "chown", "mkfs", "iptables", "systemctl", "useradd", "passwd", "crontab", "ssh", "scp",
         "tar", "base64", "openssl", "socat", "mount", "insmod", "kill", "shred", "find", "awk"]
ARG_REGEXES = [
    r"^-[a-zA-Z]*[rR][a-zA-Z]*$",
    r"(?i)^--?(force|recursive|no-preserve-root)$",
    r"^https?://[^/]+/.*\.(sh|py|pl)$",
    r"^/dev/(sd[a-z]|nvme\d+n\d+|vd[a-z])$",
    r"^of=/dev/",
    r"\d{1,3}(\.\d{1,3}){3}",
    r"^[0-7]?777$",
    r"^/etc/(shadow|passwd|sudoers)$",
    r"^-[a-z]*e[a-z]*$",
    r"(?i)\.onion(:\d+)?$",
]
CMD_REGEXES = [
    r"\|\s*(ba)?sh\b",
    r"base64\s+(-d|--decode)",
    r"/dev/(tcp|udp)/",
    r"(?i)\bmimikatz\b",
    r"^\S+ -c .*(curl|wget) ",
    r"chmod\s+[0-7]*[1357]\d\d\s+/tmp/",
    r"\bLD_PRELOAD=",
    r"--no-preserve-root",
]


def synthetic_policy_text(n_rules: int = 1000, n_regexes: int = 200, seed: int = 1) -> str:
    """A policy YAML with ``n_rules`` rules, ``n_regexes`` of which carry a regex."""
    rnd = random.Random(seed)
    names = NAMES + [f"tool{i}" for i in range(90)]
    lines = ["version: 1", "mode: enforce", "rules:"]
    regex_rules = set(rnd.sample(range(n_rules), n_regexes))
    for i in range(n_rules):
        action = rnd.choice(["block", "block", "log", "allow"])
        exe = rnd.choice(names)
        lines += [f"  - id: rule-{i}", f"    description: synthetic rule {i}",
                  "    severity: high", f"    action: {action}", "    match:"]
        wildcard = i in regex_rules and rnd.random() < 0.1
        if not wildcard:
            lines.append(f"      executable: [{exe}]")
        lines.append("      args:")
        lines.append(f'        - any: ["-x{i}", "--opt{i % 37}", "-{chr(97 + i % 26)}"]')
        if rnd.random() < 0.5:
            lines.append(f'        - glob: "/tmp/{i % 13}*"')
        if i in regex_rules:
            if rnd.random() < 0.6:
                pat = rnd.choice(ARG_REGEXES).replace("^", f"^(?:x{i})?", 1) \
                    if rnd.random() < 0.5 else rnd.choice(ARG_REGEXES)
                lines.append(f"        - regex: '{pat}'")
            else:
                lines.append(f"      cmdline: '{rnd.choice(CMD_REGEXES)}{i % 7 or ''}'")
    return "\n".join(lines) + "\n"


CAPACITY_GROUPS = 64
CAPACITY_STATES = 1024


def capacity_arg(i: int) -> tuple[str, str]:
    """The argument that walks group ``i``'s automaton to its last state, and a near miss."""
    hit = "a" * 600 + "b" * (CAPACITY_STATES - 600 + i)
    return hit, hit[:-1]


def capacity_policy_text(scope: str | None = None, n: int = CAPACITY_GROUPS) -> str:
    """``n`` executables ``edrcap-<i>``, each with a regex whose DFA has > 1 024 states
    (distinct, so none is shared): ``^a{600}b{424+i}$``."""
    lines = ["version: 1"] + ([f"scope: {{cgroups: [{scope}]}}"] if scope else []) + ["rules:"]
    for i in range(n):
        b = CAPACITY_STATES - 600 + i
        lines += [f"  - id: cap-{i}", f"    description: capacity group {i}",
                  "    severity: high", "    action: block", "    match:",
                  f"      executable: [edrcap-{i}]",
                  f"      args: [{{regex: '^a{{600}}b{{{b}}}$'}}]"]
    return "\n".join(lines) + "\n"


def measure(label: str, text: str) -> None:
    c0, t0 = time.process_time(), time.perf_counter()
    policy = load_policy_text(text, "synthetic.yaml")
    t1 = time.perf_counter()
    bundle = compile_policy(policy)
    c2, t2 = time.process_time(), time.perf_counter()
    size = len(dump_bundle(bundle))
    per_dfa = [len(d["trans"]) // d["nclasses"] for d in bundle["dfas"]]
    trans = sum(len(d["trans"]) for d in bundle["dfas"])
    print(f"{label}: rules={len(bundle['rules'])} groups={len(bundle['groups'])} "
          f"dfas={len(bundle['dfas'])} states={sum(per_dfa)} (largest {max(per_dfa, default=0)}) "
          f"transitions={trans} bytes={size}")
    print(f"  load {t1 - t0:.3f} s  compile {t2 - t1:.3f} s  total {t2 - t0:.3f} s "
          f"(cpu {c2 - c0:.3f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--regexes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    measure(f"synthetic ({args.regexes} regexes)",
            synthetic_policy_text(args.rules, args.regexes, args.seed))
    measure("capacity", capacity_policy_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
