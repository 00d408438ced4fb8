"""``edrfleet config [--only-changed] [--host HOST [INVENTORY|-i INVENTORY]] [--format F]``.

The Ansible settings edrfleet uses, their values in force and where each came from, in the
shape of ``ansible-config dump`` (``NAME(ORIGIN) = VALUE``; origin ``default``, ``env: VAR``,
the ansible.cfg path, or with ``--host`` ``var: VARIABLE`` for the host's own variable).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edrfleet.cli import fleet_args
from edrfleet.cli.exits import EXIT_OK
from edrfleet.fleet.config import OPTIONS, Value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "config", help="the ansible.cfg / ANSIBLE_* settings in force and where each came from",
        description="Show the Ansible settings edrfleet reads (ansible.cfg, ANSIBLE_* "
        "variables, defaults; with --host, the host's variables above them), like "
        "'ansible-config dump'.")
    p.add_argument("--only-changed", action="store_true",
                   help="only the settings not at their default")
    p.add_argument("--host", metavar="HOST",
                   help="the values for one inventory host (its variables win)")
    fleet_args.add_inventory(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_config)


def _host_vars(args: argparse.Namespace) -> dict[str, Any]:
    from edrfleet.fleet.inventory.load import load_inventory

    inventory = load_inventory(fleet_args.inventory_sources(args))
    return inventory.host_vars(args.host)


def settings_in_force(args: argparse.Namespace) -> list[tuple[str, str, Value, str]]:
    """(edrfleet name, Ansible name, value, what edrfleet does with it), in OPTIONS order."""
    cfg = fleet_args.config()
    hv = _host_vars(args) if args.host else None
    rows = []
    for o in OPTIONS:
        v = cfg.for_host(o.key, hv) if hv is not None else cfg.values[o.key]
        if args.only_changed and v.origin == "default":
            continue
        rows.append((o.key, o.ansible, v, o.use))
    return rows


def cmd_config(args: argparse.Namespace) -> int:
    cfg = fleet_args.config()
    rows = settings_in_force(args)
    if args.format == "json":
        doc = [{"name": "CONFIG_FILE", "origin": "", "value": str(cfg.file) if cfg.file
                else None}]
        doc += [{"name": k, "ansible": a, "origin": v.origin, "value": v.value, "use": u}
                for k, a, v, u in rows]
        json.dump(doc, sys.stdout, indent=4)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"CONFIG_FILE() = {cfg.file if cfg.file else None}")
    for key, _ansible, v, _use in rows:
        print(f"{key}({v.origin}) = {_show(v.value)}")
    return EXIT_OK


def _show(value: Any) -> str:
    """As ansible-config prints: strings bare, lists and booleans as Python writes them."""
    return value if isinstance(value, str) else repr(value)
