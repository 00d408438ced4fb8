"""``edrfleet policy import-sigma PATH... [-o FILE] [--action log|block]``.

Prints the policy (or writes it to FILE) and, on stderr, the import rate and every refused
Sigma rule with its reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from edrfleet.cli.exits import EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    imp = sub.add_parser(
        "import-sigma", help="convert Sigma process-creation rules into a policy",
        description="Convert Sigma rules (files, or folders searched recursively for .yml) "
        "into an edrfleet policy; list the rules that cannot be converted, with the reason.")
    imp.add_argument("paths", nargs="+", metavar="PATH", help="Sigma rule file or folder")
    imp.add_argument("-o", "--output", metavar="FILE", help="write the policy here "
                     "(default: stdout)")
    imp.add_argument("--action", choices=("log", "block"), default="log",
                     help="action of every imported rule (default: log)")
    imp.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from edrfleet.policy import PolicyError
    from edrfleet.policy.sigma import import_paths  # pySigma loads only for this command

    result = import_paths(args.paths, action=args.action)
    try:
        result.check()  # every imported policy passes `edrfleet policy check`
    except PolicyError as exc:
        print(f"edrfleet: the imported policy does not fit the kernel: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = result.policy_text()
    if args.output:
        tmp = f"{args.output}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, args.output)
    else:
        sys.stdout.write(text)
    for r in result.refused:
        print(f"refused: {r.file}: {r.title or r.sigma_id}: {r.reason}", file=sys.stderr)
    for i in result.partial:
        print(f"partly: {i.file}: {i.title}: left out: {'; '.join(i.dropped)}", file=sys.stderr)
    layout = " (one rule per executable, to fit the kernel's groups)" if result.split else ""
    print(f"imported {len(result.imported)} of {result.total} Sigma rules "
          f"({100 * result.rate:.1f} %; {len(result.partial)} of them partly: alternatives of "
          f"their condition that the kernel cannot check left out) as {len(result.rules())} "
          f"edrfleet rules{layout}"
          + (f" -> {args.output}" if args.output else ""), file=sys.stderr)
    return EXIT_OK
