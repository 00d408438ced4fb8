"""``edrfleet lab up|down``: a fleet of network-namespace hosts on this machine (or qemu VMs)."""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import Any

from edrfleet.cli.exits import EXIT_OK


def _vm_lab() -> Any:
    # imported on use: the netns lab needs none of the qemu code
    return importlib.import_module("edrfleet.lab.vm.fleet")


def _workdir(args: argparse.Namespace) -> dict[str, Path]:
    """--dir when given; otherwise each lab's own default (under edrfleet.paths.STATE)."""
    return {"workdir": Path(args.dir)} if args.dir else {}


def _up(args: argparse.Namespace) -> int:
    from edrfleet.lab import netns as lab

    t0 = time.monotonic()
    if args.vm:
        # --os: one guest per release unless --hosts says how many; without it as always (3)
        oses = {"oses": args.os} if args.os else {}
        n = args.hosts if args.hosts is not None else 1 if args.os else 3
        inventory = _vm_lab().up(n, **_workdir(args), **oses)
        print(f"lab: VMs of {args.os or 'debian-12'} up in {time.monotonic() - t0:.2f} s")
    else:
        inventory = lab.up(3 if args.hosts is None else args.hosts, **_workdir(args))
        made = lab.Lab.load(inventory.parent)
        print(f"lab: {len(made.hosts)} hosts up in {time.monotonic() - t0:.2f} s (lab {made.id}, "
              f"{made.subnet}, {made.hosts[0].name}..{made.hosts[-1].name})")
    print(inventory)
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    from edrfleet.lab import netns as lab

    if args.vm:
        _vm_lab().down(**_workdir(args))
    else:
        lab.down(**_workdir(args))
    return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("lab", help="a lab fleet on this machine (root)")
    sub = p.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="make the lab hosts and write their inventory")
    up.add_argument("--hosts", type=int, metavar="N",
                    help="how many (default 3; with --vm: per release)")
    up.add_argument("--os", metavar="REL[,REL…]",
                    help="with --vm: the guests' Debian releases (debian-11, debian-12, "
                         "debian-13; default debian-12), one guest each unless --hosts is given")
    down = sub.add_parser("down", help="remove every netns, veth, cgroup, process and file")
    for q in (up, down):
        q.add_argument("--dir", metavar="DIR",
                       help="lab directory (default .edrfleet/lab of the checkout; "
                            "installed: of the working directory; $EDRFLEET_STATE_DIR/lab)")
        q.add_argument("--vm", action="store_true",
                       help="qemu VMs instead of namespaces (edrfleet.lab.vm.fleet)")
    up.set_defaults(func=_up)
    down.set_defaults(func=_down)
