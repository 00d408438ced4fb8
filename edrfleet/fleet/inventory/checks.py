"""Checks of the variables edrfleet itself reads (docs/fleet.md), where they are written.

A wrong port or a misspelt policy mode found at load time names the file and line; found at
deploy time it would be one failed host among many. Values holding ``{{`` are left alone:
Ansible would template them, edrfleet takes them as written and the consumer decides.

>>> check_known_vars({"ansible_port": 22, "edrfleet_mode": "monitor"}, "inv.yml", "host 'a'")
>>> check_known_vars({"ansible_port": "ssh"}, "inv.yml", "host 'a'")
Traceback (most recent call last):
...
edrfleet.fleet.inventory.yaml_lines.YamlError: inv.yml: ansible_port of host 'a' must be a port \
number (1-65535), not 'ssh' (fix: write e.g. 'ansible_port: 2222')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edrfleet.fleet.inventory.yaml_lines import YamlError

_BOOL_WORDS = {"yes", "no", "true", "false", "on", "off", "1", "0"}


def _port(v: Any) -> bool:
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535


def _boolish(v: Any) -> bool:
    return isinstance(v, bool) or v in (0, 1) or str(v).strip().lower() in _BOOL_WORDS


def _strict_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _text(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _list(v: Any) -> bool:
    return isinstance(v, list)


# name -> (accepts the value?, what it must be, an example to write)
KNOWN: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "ansible_port": (_port, "a port number (1-65535)", "ansible_port: 2222"),
    "ansible_host": (_text, "a host name or address", "ansible_host: 192.0.2.10"),
    "ansible_user": (_text, "a user name", "ansible_user: deploy"),
    "ansible_become": (_boolish, "true or false", "ansible_become: true"),
    "ansible_become_user": (_text, "a user name", "ansible_become_user: root"),
    "ansible_ssh_private_key_file": (_text, "a file path", "ansible_ssh_private_key_file: "
                                     "~/.ssh/id_ed25519"),
    "ansible_ssh_common_args": (lambda v: isinstance(v, str), "one string of ssh options",
                                "ansible_ssh_common_args: '-o ProxyJump=bastion'"),
    "edrfleet_host_key_policy": (_one_of("strict", "accept-new"), "strict or accept-new",
                                 "edrfleet_host_key_policy: accept-new"),
    "edrfleet_service_manager": (_one_of("systemd", "supervisor", "auto"),
                                 "systemd, supervisor or auto", "edrfleet_service_manager: auto"),
    "edrfleet_install_packages": (_strict_bool, "true or false (unquoted)",
                                  "edrfleet_install_packages: true"),
    "edrfleet_mode": (_one_of("enforce", "monitor"), "enforce or monitor",
                      "edrfleet_mode: monitor"),
    "edrfleet_scope_cgroups": (_list, "a list of cgroup paths",
                               "edrfleet_scope_cgroups: [/system.slice/app.service]"),
    "edrfleet_extra_rules": (_list, "a list of rules", "edrfleet_extra_rules: [{id: ...}]"),
    "edrfleet_exceptions": (_list, "a list of allow rules", "edrfleet_exceptions: [{id: ...}]"),
    "edrfleet_disabled_rules": (_list, "a list of rule ids",
                                "edrfleet_disabled_rules: [python-http-server]"),
}

# Names that belong to the inventory's structure, not to a host's variables.
_MISPLACED = {"vars": "write the host's variables directly under the host",
              "hosts": "hosts go under a group's 'hosts:', not under a host",
              "children": "child groups go under a group's 'children:', not under a host"}


def check_known_vars(data: dict[Any, Any], source: str, owner: str, *, text_values: bool = False,
                     line: int = 0) -> None:
    """Raise `YamlError` at the first variable edrfleet reads whose value cannot be right.

    ``owner`` names where it was written ("host 'web1'", "group 'db'", "group_vars/db.yml").
    ``text_values``: the format has no booleans (INI), so ``true``/``no`` words count as such.
    """
    lines = getattr(data, "key_lines", {})
    for name, value in data.items():
        rule = KNOWN.get(name)
        if rule is None or (isinstance(value, str) and "{{" in value):
            continue
        ok, what, example = rule
        if text_values and ok is _strict_bool:
            ok = _boolish
        if not ok(value):
            raise YamlError(f"{name} of {owner} must be {what}, not {value!r}", source=source,
                            line=lines.get(name, line), fix=f"write e.g. '{example}'")


def misplaced_host_keys(data: dict[Any, Any], source: str, host: str) -> list[str]:
    """Warnings for host variables named like inventory sections (``vars:`` under a host)."""
    lines = getattr(data, "key_lines", {})
    return [f"{source}:{lines.get(k, 0)}: host {host!r} has a variable named {k!r}, which "
            f"Ansible takes as a plain variable ({fix})"
            for k, fix in _MISPLACED.items() if k in data]
