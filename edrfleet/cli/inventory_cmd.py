"""``edrfleet inventory INVENTORY [--limit P] [--host H | --graph [G]]``: the resolved inventory.

The output is that of ``ansible-inventory -i INVENTORY --list`` (JSON; or ``--host H``, or the
``--graph`` tree), so an inventory is debugged the way Ansible users already do.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from edrfleet.cli import fleet_args
from edrfleet.cli.exits import EXIT_OK
from edrfleet.fleet.inventory.load import load_inventory


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inventory", help="print the resolved inventory (like ansible-inventory --list)",
        description="Resolve an Ansible inventory (groups, ranges, group_vars, host_vars) "
        "and print it as JSON in the shape of 'ansible-inventory --list'.")
    fleet_args.add_inventory(parser)
    parser.add_argument("-l", "--limit", metavar="PATTERN",
                        help="only hosts matching an Ansible pattern (web:&prod:!web3, @FILE)")
    show = parser.add_mutually_exclusive_group()
    show.add_argument("--host", metavar="HOST",
                      help="print one host's variables (like ansible-inventory --host)")
    show.add_argument("--graph", metavar="GROUP", nargs="?", const="all",
                      help="print the group tree (like ansible-inventory --graph)")
    parser.set_defaults(func=cmd_inventory)


class _StderrWarnings(logging.Handler):
    """Pattern warnings (a name that matches nothing) as 'edrfleet: warning: ...' lines on
    whatever sys.stderr is when they happen."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"edrfleet: warning: {record.getMessage()}", file=sys.stderr)


def _warnings_to_stderr() -> None:
    log = logging.getLogger("edrfleet.fleet.inventory.patterns")
    if not any(isinstance(h, _StderrWarnings) for h in log.handlers):
        log.addHandler(_StderrWarnings(logging.WARNING))


def cmd_inventory(args: Any) -> int:
    _warnings_to_stderr()
    inventory = load_inventory(fleet_args.inventory_sources(args))
    for warning in inventory.warnings:
        print(f"edrfleet: warning: {warning}", file=sys.stderr)
    if args.graph:
        print(inventory.to_ansible_graph(args.graph))
        return EXIT_OK
    doc = inventory.host_vars(args.host) if args.host else inventory.to_ansible_list(args.limit)
    json.dump(doc, sys.stdout, sort_keys=True, indent=4, default=str)
    sys.stdout.write("\n")
    return EXIT_OK
