"""``edrfleet inventory INVENTORY [--limit P] [--host H]``: the resolved inventory as JSON.

The output has the shape of ``ansible-inventory -i INVENTORY --list`` (or ``--host H``), so an
inventory is debugged the way Ansible users already do.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from edrfleet.fleet.inventory import load_inventory

EXIT_OK = 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inventory", help="print the resolved inventory (like ansible-inventory --list)",
        description="Resolve an Ansible YAML inventory (groups, ranges, group_vars, host_vars) "
        "and print it as JSON in the shape of 'ansible-inventory --list'.")
    parser.add_argument("inventory", metavar="INVENTORY", help="YAML inventory file")
    parser.add_argument("-l", "--limit", metavar="PATTERN",
                        help="only hosts matching an Ansible pattern (web:&prod:!web3, @FILE)")
    parser.add_argument("--host", metavar="HOST",
                        help="print one host's variables (like ansible-inventory --host)")
    parser.set_defaults(func=cmd_inventory)


def cmd_inventory(args: Any) -> int:
    inventory = load_inventory(args.inventory)
    for warning in inventory.warnings:
        print(f"edrfleet: warning: {warning}", file=sys.stderr)
    doc = inventory.host_vars(args.host) if args.host else inventory.to_ansible_list(args.limit)
    json.dump(doc, sys.stdout, sort_keys=True, indent=4, default=str)
    sys.stdout.write("\n")
    return EXIT_OK
