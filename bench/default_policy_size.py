#!/usr/bin/env python3
"""What the default policy costs the kernel's tables: rules, groups, transition entries
(against the kernel's cap), compile CPU, and the argv scan budget of some executables.

``--template FILE`` measures another version of templates/policy.yaml.j2 (e.g. one from
``git show REV:templates/policy.yaml.j2``) with the same compiler, so two can be put side by
side.  Prints figures, never asserts.

Usage: .venv/bin/python bench/default_policy_size.py [--template FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jinja2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edrfleet.policy import compile_policy, load_policy_text  # noqa: E402
from edrfleet.policy.limits import EDR_TRANS_PARTS, MAX_TRANS_TOTAL  # noqa: E402
from edrfleet.policy.simulate import scan_budget  # noqa: E402

EXECUTABLES = ("rm", "sh", "tar", "find", "pkill", "sed", "dd")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", type=Path, default=REPO / "templates" / "policy.yaml.j2")
    args = ap.parse_args()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(args.template.parent)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    policy = load_policy_text(env.get_template(args.template.name).render(), "policy.yaml")
    t0 = time.process_time()
    bundle = compile_policy(policy)
    cpu = time.process_time() - t0
    trans = sum(len(d["trans"]) for d in bundle["dfas"])
    names = bundle["executables"]["names"]
    wild = bundle["executables"]["wildcard"]
    print(f"rules {len(policy.rules)}, groups {len(bundle['groups'])}, compile {cpu:.1f} s CPU")
    share = 100 * trans / (EDR_TRANS_PARTS * MAX_TRANS_TOTAL)
    print(f"transition entries {trans} of {EDR_TRANS_PARTS} x {MAX_TRANS_TOTAL} ({share:.0f} %)")
    for exe in EXECUTABLES:
        if exe in names:
            budget = scan_budget(bundle, names[exe] + wild) or 0
            print(f"{exe:<6} groups {len(names[exe])}, argv scan budget {budget // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
