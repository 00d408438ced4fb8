"""``edrfleet paths [role|bpf|templates|state]``: where this edrfleet's own files are.

Installed from the wheel, the Ansible role, the BPF sources and the templates are package data
(edrfleet/paths.py); ``edrfleet paths role`` is how a playbook finds the role
(``ANSIBLE_ROLES_PATH="$(dirname "$(edrfleet paths role)")"``).
"""

from __future__ import annotations

import argparse
from typing import Any

from edrfleet import paths
from edrfleet.cli.exits import EXIT_OK

WHAT = {"role": paths.ROLE, "bpf": paths.BPF, "templates": paths.TEMPLATES,
        "state": paths.STATE}


def _paths(args: argparse.Namespace) -> int:
    if args.what:
        print(WHAT[args.what])
        return EXIT_OK
    for name, where in WHAT.items():
        print(f"{name:<10} {where}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("paths", help="where the role, BPF sources, templates and state "
                                            "of this edrfleet are")
    p.add_argument("what", nargs="?", choices=sorted(WHAT),
                   help="print only this directory (for scripts)")
    p.set_defaults(func=_paths)
