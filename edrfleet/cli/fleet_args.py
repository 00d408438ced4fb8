"""The options every command that reads an inventory shares, as an Ansible user types them.

``INVENTORY`` positional or ``-i/--inventory``; given neither, ansible.cfg's ``inventory`` (or
``ANSIBLE_INVENTORY``).  ``-l/--limit``, ``-f/--forks`` and ``--connect-timeout`` default to
ANSIBLE_FORKS / ``forks`` and ANSIBLE_TIMEOUT / ``timeout`` (edrfleet.fleet.config); a flag on
the command line wins over both.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from edrfleet.errors import InputError
from edrfleet.fleet.config import AnsibleConfig, current


class ArgumentError(InputError, ValueError):
    """A command-line value that cannot be used (one line, exit 2)."""


def add_inventory(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """INVENTORY (optional positional) and ``-i/--inventory``."""
    if positional:
        p.add_argument("inventory", metavar="INVENTORY", nargs="?", default=None,
                       help="YAML/INI/TOML file, directory, script, plugin config or "
                       "'h1,h2,' (or -i; default: ansible.cfg's inventory)")
    p.add_argument("-i", "--inventory", dest="inventory_opt", action="append", default=None,
                   metavar="INVENTORY", help="an inventory source, as ansible's -i (repeatable)")


def add_fleet_options(p: argparse.ArgumentParser, *, connect_timeout: bool = True) -> None:
    """INVENTORY/-i, -l, -f and --connect-timeout."""
    add_inventory(p)
    p.add_argument("-l", "--limit", metavar="PATTERN", help="host pattern (Ansible's), or @FILE")
    p.add_argument("-f", "--forks", type=int, default=None, metavar="N",
                   help="hosts worked on at once (default: ansible.cfg's forks, else 50)")
    if connect_timeout:
        p.add_argument("--connect-timeout", type=float, default=None, metavar="S",
                       help="SSH connect timeout in seconds (default: ansible.cfg's timeout, "
                       "else 10)")


def config() -> AnsibleConfig:
    """The settings in force; the warning about a skipped world-writable ansible.cfg is
    printed once per process."""
    cfg = current()
    for w in cfg.warnings:
        if w not in _warned:
            _warned.add(w)
            print(f"edrfleet: warning: {w}", file=sys.stderr)
    return cfg


_warned: set[str] = set()


def inventory_sources(args: argparse.Namespace) -> list[str]:
    """The inventory sources of this command: the positional and every -i, in that order (as
    ``ansible -i A -i B``), else ansible.cfg's ``inventory``.  The config is read here in any
    case: a broken ansible.cfg stops the command before any host is tried."""
    cfg = config()
    given = ([args.inventory] if getattr(args, "inventory", None) else []) + list(
        getattr(args, "inventory_opt", None) or [])
    if given:
        return given
    v = cfg.values["inventory"]
    if v.origin == "default" and not any(os.path.exists(p) for p in v.value):
        raise ArgumentError("no inventory given (fix: INVENTORY or -i INVENTORY, or "
                            "inventory = FILE in ansible.cfg's [defaults], or ANSIBLE_INVENTORY)")
    return list(v.value)


def forks(args: argparse.Namespace) -> int:
    """-f N, else ANSIBLE_FORKS / ansible.cfg's forks, else 50; at least 1."""
    if args.forks is not None:
        n, where = args.forks, "--forks"
    else:
        v = config().values["forks"]
        n, where = v.value, ("forks" if v.origin == "default" else
                             v.origin.removeprefix("env: ") if v.origin.startswith("env: ")
                             else f"forks in {v.origin}")
    if n < 1:
        raise ArgumentError(f"{where} {n}: at least one host must be worked on at a time "
                            "(fix: 1 or more)")
    return int(n)


def connect_timeout(args: argparse.Namespace) -> float:
    """--connect-timeout S, else ANSIBLE_TIMEOUT / ansible.cfg's timeout, else 10."""
    seconds = args.connect_timeout
    where = "--connect-timeout"
    if seconds is None:
        v = config().values["timeout"]
        seconds, where = v.value, f"timeout ({v.origin})"
    if seconds <= 0:
        raise ArgumentError(f"{where} {seconds:g}: not a number of seconds (fix: e.g. 10)")
    return float(seconds)


def warn_typos(hosts: list[Any]) -> None:
    """Unknown edrfleet_* variables and disabled rule ids that no rule has, with the name
    meant when one is close: a typo there is otherwise ignored in silence."""
    from edrfleet.fleet.deploy.varcheck import fleet_warnings

    for line in fleet_warnings(hosts):
        print(f"edrfleet: warning: {line}", file=sys.stderr)


def without_host(name: str, message: str) -> str:
    """The message without a leading ``NAME: `` where the host is named beside it already."""
    return message.removeprefix(f"{name}: ")
