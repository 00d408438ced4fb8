"""What one host's inventory variables say about reaching it over SSH (no I/O here).

The variables are docs/fleet.md's table; below each one, Ansible's environment variables and
ansible.cfg (edrfleet.fleet.config: host variable > ANSIBLE_* > ansible.cfg > default).
``ssh_args``/``ssh_common_args``/``ssh_extra_args`` contribute only their proxy options
(``-o ProxyCommand=…``, ``-o ProxyJump=…``, ``-J …``) and ``-o CertificateFile=…``, parsed as
ssh(1) does.
"""

from __future__ import annotations

import getpass
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edrfleet.fleet.config import AnsibleConfig, Value, current

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


def parse_common_args(args: str, target: Hop, *, host: str,
                      var: str = "ansible_ssh_common_args") -> Proxy:
    """The proxy settings in ``ansible_ssh_common_args`` (other options are ignored).

    >>> parse_common_args("-o ProxyJump=bastion:2222", Hop("10.0.0.5", 22, "root"), host="web1")
    Proxy(command=None, jumps=(Hop(host='bastion', port=2222, user='root'),))
    """
    command: str | None = None
    jump: str | None = None
    for key, val in ssh_options(args, host=host, var=var):
        if key == "proxycommand" and val.lower() != "none":
            command = command or val
        elif key == "proxyjump" and val.lower() != "none":
            jump = jump or val
    if command and jump:
        raise ValueError(f"{host}: {var} gives both ProxyCommand and ProxyJump "
                         "(fix: keep one)")
    if command:
        return Proxy(command=expand_proxy_command(command, target, host=host))
    if jump:
        try:
            return Proxy(jumps=parse_jump(jump, default_user=target.user))
        except ValueError as exc:
            raise ValueError(f"{host}: {var}: {exc} (fix: [user@]host[:port])") from None
    return Proxy()


def ssh_options(args: str, *, host: str, var: str) -> list[tuple[str, str]]:
    """The ``-o Key=value`` / ``-o "Key value"`` options (key lower-cased) and ``-J`` (as
    ``proxyjump``) of an ssh argument string, in order."""
    try:
        words = shlex.split(args or "")
    except ValueError as exc:
        raise ValueError(f"{host}: {var}: {exc} (fix: balance the quotes)") from None
    out: list[tuple[str, str]] = []
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
            out.append(("proxyjump", value))
            continue
        key, sep, val = value.partition("=")
        if not sep:
            key, _, val = value.partition(" ")
        out.append((key.strip().lower(), val.strip()))
    return out


# What OpenSSH >= 9.6 refuses in a user or host name before it expands %h / %r into a shell
# command (ssh.c valid_hostname / valid_ruser): the command runs under `sh -c` on the controller.
_SHELL_META = frozenset("'`\"$\\;&<>|(){}")


def _expandable(value: str) -> bool:
    return bool(value) and not value.startswith("-") and not any(
        c in _SHELL_META or c.isspace() or not c.isprintable() for c in value)


def expand_proxy_command(command: str, target: Hop, *, host: str) -> str:
    """ProxyCommand with %h %p %r %% expanded; a host or user name holding shell metacharacters
    (or whitespace, or a leading ``-``) is refused, as OpenSSH >= 9.6 refuses it: the result
    runs under ``sh -c`` on the controller, so ``ansible_host: "$(cmd)"`` must never reach it.
    """
    names = {"%h": ("ansible_host", target.host), "%r": ("ansible_user", target.user)}
    for token, (var, value) in names.items():
        if token in command.replace("%%", "") and not _expandable(value):
            raise ValueError(
                f"{host}: {var} {value!r} holds shell metacharacters, whitespace or a leading "
                f"'-' and ansible_ssh_common_args' ProxyCommand expands it with {token} (fix: "
                f"a plain host or user name in {var})")
    return (command.replace("%%", "\0").replace("%h", target.host)
            .replace("%p", str(target.port)).replace("%r", target.user).replace("\0", "%"))


def _check_become(name: str, method: Value, hv: Mapping[str, Any]) -> None:
    """become is ``sudo -n`` only: refuse settings it would silently ignore."""
    if str(method.value or "sudo") != "sudo":
        where = _where(method, "become_method")
        raise ValueError(f"{name}: {where} {method.value!r}: only sudo is supported "
                         "(fix: sudo, or connect as the user you need)")
    for var in ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass"):
        if hv.get(var):
            raise ValueError(f"{name}: {var} is not used: become runs `sudo -n`, which never "
                             "prompts (fix: a NOPASSWD sudoers rule for the connecting user)")


def _where(v: Value, key: str) -> str:
    """Where a setting came from, for a message: the variable, the environment or the file."""
    if v.origin.startswith(("var: ", "env: ")):
        return v.origin[5:]
    return f"{key} in {v.origin}" if v.origin != "default" else key


def _bool(name: str, v: Value) -> bool:
    """A host variable is checked strictly (a typo there is an error, as before); the
    environment and ansible.cfg were already converted with Ansible's non-strict rule."""
    if v.origin.startswith("var: "):
        return as_bool(v.value, host=name, var=v.origin[5:])
    return bool(v.value)


def _host_key_policy(name: str, hv: Mapping[str, Any], cfg: AnsibleConfig) -> str:
    """edrfleet_host_key_policy on the host wins; else Ansible's host_key_checking maps true to
    strict and false to accept-new (a changed key fails the host either way)."""
    policy = hv.get("edrfleet_host_key_policy")
    if policy is None:
        checking = _bool(name, cfg.for_host("host_key_checking", hv))
        return "strict" if checking else "accept-new"
    if str(policy) not in ("strict", "accept-new"):
        raise ValueError(f"{name}: edrfleet_host_key_policy {policy!r} is not strict or "
                         "accept-new (fix: one of those)")
    return str(policy)


def _proxy(name: str, hv: Mapping[str, Any], cfg: AnsibleConfig, target: Hop) -> Proxy:
    """The proxy options of ssh_args, ssh_common_args and ssh_extra_args (each from the host
    variable, the environment or ansible.cfg).  Ansible puts them on ssh's command line in that
    order and ssh(1) keeps the first value it obtains, so the first that names a proxy wins."""
    for key in ("ssh_args", "ssh_common_args", "ssh_extra_args"):
        v = cfg.for_host(key, hv)
        got = parse_common_args(str(v.value or ""), target, host=name, var=_where(v, key))
        if got != Proxy():
            return got
    return Proxy()


def _certificate_file(name: str, hv: Mapping[str, Any], cfg: AnsibleConfig) -> str | None:
    """``-o CertificateFile=…`` of the ssh args (the first one, as ssh keeps the first)."""
    for key in ("ssh_args", "ssh_common_args", "ssh_extra_args"):
        v = cfg.for_host(key, hv)
        for opt, val in ssh_options(str(v.value or ""), host=name, var=_where(v, key)):
            if opt == "certificatefile" and val:
                return os.path.expanduser(val)
    return None


def become_prefix(name: str, hv: Mapping[str, Any], user: str,
                  config: AnsibleConfig | None = None) -> tuple[str, ...]:
    """``sudo -n [-u USER] --`` when the host asks to become a user other than the one its
    commands run as (``user``); () otherwise.  SSH and the local transport both use it."""
    cfg = config if config is not None else current()
    if not _bool(name, cfg.for_host("become", hv)):
        return ()
    _check_become(name, cfg.for_host("become_method", hv), hv)
    become_user = str(cfg.for_host("become_user", hv).value or "root")
    if become_user == user:
        return ()
    return ("sudo", "-n", *(() if become_user == "root" else ("-u", become_user)), "--")


@dataclass(frozen=True)
class Settings:
    """Everything Transport reads from one host's variables (and, below them, ANSIBLE_* and
    ansible.cfg: edrfleet.fleet.config)."""

    name: str
    target: Hop
    key_file: str | None
    proxy: Proxy
    become_prefix: tuple[str, ...]
    known_hosts_files: tuple[Path, ...]
    record_file: Path            # the inventory-level file; accept-new appends here
    accept_new: bool
    connect_timeout: float | None = None   # ansible_ssh_timeout of this host
    cert_file: str | None = None   # -o CertificateFile= of the ssh args (else KEY-cert.pub)

    @classmethod
    def from_vars(cls, name: str, hv: Mapping[str, Any], inventory_dir: Path,
                  config: AnsibleConfig | None = None) -> Settings:
        cfg = config if config is not None else current()
        user = str(cfg.for_host("remote_user", hv).value or getpass.getuser())
        port_v = cfg.for_host("remote_port", hv)
        try:
            port = int(port_v.value if port_v.value is not None else 22)
        except (TypeError, ValueError):
            where = _where(port_v, "remote_port")
            raise ValueError(f"{name}: {where} {port_v.value!r} is not a "
                             "number (fix: a TCP port like 22)") from None
        target = Hop(str(hv.get("ansible_host") or name), port, user)
        key = cfg.for_host("private_key_file", hv).value
        key_file = os.path.expanduser(str(key)) if key else None
        prefix = become_prefix(name, hv, user, cfg)
        policy = _host_key_policy(name, hv, cfg)
        # Without edrfleet_known_hosts_file, accept-new records beside the inventory.
        record = Path(os.path.normpath(Path(inventory_dir) / os.path.expanduser(
            str(hv.get("edrfleet_known_hosts_file") or "known_hosts"))))
        files = (Path(os.path.expanduser("~/.ssh/known_hosts")), record)
        return cls(name, target, key_file, _proxy(name, hv, cfg, target), prefix,
                   files, record, policy == "accept-new", _timeout(name, hv),
                   _certificate_file(name, hv, cfg))


def _timeout(name: str, hv: Mapping[str, Any]) -> float | None:
    value = hv.get("ansible_ssh_timeout")
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"{name}: ansible_ssh_timeout {value!r} is not a number of seconds "
                         "(fix: e.g. 10)")
    return seconds
