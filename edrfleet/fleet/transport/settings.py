"""What one host's inventory variables say about reaching it over SSH (no I/O here).

The variables are docs/fleet.md's table; ``ansible_ssh_common_args`` contributes only its proxy
options (``-o ProxyCommand=…``, ``-o ProxyJump=…``, ``-J …``), parsed as ssh(1) does.
"""

from __future__ import annotations

import getpass
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TRUE = {"1", "yes", "y", "true", "on"}
_FALSE = {"0", "no", "n", "false", "off", ""}


def as_bool(value: Any, *, host: str, var: str) -> bool:
    """Ansible's booleans: true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{host}: {var}: {value!r} is not a boolean (fix: use true or false)")


@dataclass(frozen=True)
class Hop:
    """One SSH endpoint: the target or a jump host."""

    host: str
    port: int
    user: str


@dataclass(frozen=True)
class Proxy:
    command: str | None = None         # ProxyCommand, %h %p %r %% already expanded
    jumps: tuple[Hop, ...] = ()        # ProxyJump hops, first hop first


def parse_jump(spec: str, *, default_user: str) -> tuple[Hop, ...]:
    """``[user@]host[:port][,…]`` or ``ssh://[user@]host[:port]`` hops, as ssh -J takes."""
    hops = []
    for part in spec.split(","):
        part = part.strip().removeprefix("ssh://")
        user, _, hostport = part.rpartition("@")
        host, port = hostport, 22
        if hostport.startswith("["):  # [v6addr]:port
            host, _, rest = hostport[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif hostport.count(":") == 1:
            host, _, p = hostport.partition(":")
            port = int(p)
        if not host:
            raise ValueError(f"ProxyJump {spec!r}: empty host in {part!r}")
        hops.append(Hop(host, port, user or default_user))
    return tuple(hops)


def parse_common_args(args: str, target: Hop, *, host: str) -> Proxy:
    """The proxy settings in ``ansible_ssh_common_args`` (other options are ignored).

    >>> parse_common_args("-o ProxyJump=bastion:2222", Hop("10.0.0.5", 22, "root"), host="web1")
    Proxy(command=None, jumps=(Hop(host='bastion', port=2222, user='root'),))
    """
    var = "ansible_ssh_common_args"
    try:
        words = shlex.split(args or "")
    except ValueError as exc:
        raise ValueError(f"{host}: {var}: {exc} (fix: balance the quotes)") from None
    command: str | None = None
    jump: str | None = None
    i = 0
    while i < len(words):
        w = words[i]
        value: str | None = None
        if w in ("-o", "-J") and i + 1 < len(words):
            value, i = words[i + 1], i + 1
        elif w.startswith(("-o", "-J")) and len(w) > 2:
            value = w[2:]
        i += 1
        if value is None:
            continue
        if w.startswith("-J"):
            key, val = "proxyjump", value
        else:
            key, sep, val = value.partition("=")
            if not sep:
                key, _, val = value.partition(" ")
            key, val = key.strip().lower(), val.strip()
        if key == "proxycommand" and val.lower() != "none":
            command = val
        elif key == "proxyjump" and val.lower() != "none":
            jump = val
    if command and jump:
        raise ValueError(f"{host}: {var} gives both ProxyCommand and ProxyJump "
                         "(fix: keep one)")
    if command:
        expanded = (command.replace("%%", "\0").replace("%h", target.host)
                    .replace("%p", str(target.port)).replace("%r", target.user)
                    .replace("\0", "%"))
        return Proxy(command=expanded)
    if jump:
        try:
            return Proxy(jumps=parse_jump(jump, default_user=target.user))
        except ValueError as exc:
            raise ValueError(f"{host}: {var}: {exc} (fix: [user@]host[:port])") from None
    return Proxy()


def _check_become(name: str, hv: Mapping[str, Any]) -> None:
    """become is ``sudo -n`` only: refuse settings it would silently ignore."""
    method = str(hv.get("ansible_become_method") or "sudo")
    if method != "sudo":
        raise ValueError(f"{name}: ansible_become_method {method!r}: only sudo is supported "
                         "(fix: sudo, or connect as the user you need)")
    for var in ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass"):
        if hv.get(var):
            raise ValueError(f"{name}: {var} is not used: become runs `sudo -n`, which never "
                             "prompts (fix: a NOPASSWD sudoers rule for the connecting user)")


def become_prefix(name: str, hv: Mapping[str, Any], user: str) -> tuple[str, ...]:
    """``sudo -n [-u USER] --`` when the host's variables ask to become a user other than the
    one commands run as (``user``); () otherwise."""
    if not as_bool(hv.get("ansible_become", False), host=name, var="ansible_become"):
        return ()
    _check_become(name, hv)
    become_user = str(hv.get("ansible_become_user") or "root")
    if become_user == user:
        return ()
    return ("sudo", "-n", *(() if become_user == "root" else ("-u", become_user)), "--")


@dataclass(frozen=True)
class Settings:
    """Everything Transport reads from one host's variables."""

    name: str
    target: Hop
    key_file: str | None
    proxy: Proxy
    become_prefix: tuple[str, ...]
    known_hosts_files: tuple[Path, ...]
    record_file: Path            # the inventory-level file; accept-new appends here
    accept_new: bool

    @classmethod
    def from_vars(cls, name: str, hv: Mapping[str, Any], inventory_dir: Path) -> Settings:
        user = str(hv.get("ansible_user") or getpass.getuser())
        try:
            port = int(hv.get("ansible_port", 22))
        except (TypeError, ValueError):
            raise ValueError(f"{name}: ansible_port {hv.get('ansible_port')!r} is not a "
                             "number (fix: a TCP port like 22)") from None
        target = Hop(str(hv.get("ansible_host") or name), port, user)
        key = hv.get("ansible_ssh_private_key_file")
        key_file = os.path.expanduser(str(key)) if key else None
        prefix = become_prefix(name, hv, user)
        policy = str(hv.get("edrfleet_host_key_policy", "strict"))
        if policy not in ("strict", "accept-new"):
            raise ValueError(f"{name}: edrfleet_host_key_policy {policy!r} is not strict or "
                             "accept-new (fix: one of those)")
        # Without edrfleet_known_hosts_file, accept-new records beside the inventory.
        record = Path(os.path.normpath(Path(inventory_dir) / os.path.expanduser(
            str(hv.get("edrfleet_known_hosts_file") or "known_hosts"))))
        files = (Path(os.path.expanduser("~/.ssh/known_hosts")), record)
        return cls(name, target, key_file, parse_common_args(
            str(hv.get("ansible_ssh_common_args") or ""), target, host=name), prefix,
            files, record, policy == "accept-new")
