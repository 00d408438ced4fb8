"""Ansible's configuration (``ansible.cfg`` and ``ANSIBLE_*``), for the settings edrfleet uses.

The file is found as ``ansible-config`` finds it: ``$ANSIBLE_CONFIG`` (a file, or a directory
holding ``ansible.cfg``), ``./ansible.cfg`` (skipped with a warning when the working directory
is world-writable), ``~/.ansible.cfg``, ``/etc/ansible/ansible.cfg``; the first that exists and
is readable is the only one read.  A setting's value comes from, highest first: the host's
variable (``ansible_user`` …, resolved per host by :meth:`AnsibleConfig.for_host`), the
environment, the file, the default.  Where several environment variables or ini keys name one
setting, the last one present wins, as in Ansible.  Values are converted with Ansible's rules
(non-strict booleans: anything not true is false; integers with a zero fraction; paths from
the file relative to the file's directory, ``~`` and ``$VARS`` expanded; quotes around an ini
value removed).  Settings edrfleet does not use are not read: an unknown or unused key is
ignored, as Ansible ignores unknown keys.

What each setting does in edrfleet is :data:`OPTIONS`' ``use``.  Where edrfleet differs from
Ansible: ``forks`` defaults to 50 (Ansible: 5) — edrfleet's per-host work is one SSH round trip
per phase; ``host_key_checking = False`` means accept-new (an unknown key is recorded, a
*changed* key still fails the host) — an EDR deploy must not be pushed through a machine in the
middle; ``pipelining`` is not read: edrfleet always sends its host scripts on stdin in one round
trip, which is what pipelining buys Ansible.
"""

from __future__ import annotations

import configparser
import decimal
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edrfleet.errors import InputError
from edrfleet.fleet.transport.pool import DEFAULT_FORKS

SYSTEM_CONFIG = "/etc/ansible/ansible.cfg"
TRUE_WORDS = frozenset(("y", "yes", "on", "1", "true", "t"))  # Ansible's boolean()


class ConfigError(InputError, ValueError):
    """An ansible.cfg that cannot be read, or a setting whose value has the wrong type."""


@dataclass(frozen=True)
class Option:
    """One setting, with the sources Ansible reads it from (ansible-core 2.19's definitions:
    ``config/base.yml`` for ``DEFAULT_*``, the ssh connection plugin for ``ssh:*``)."""

    key: str                            # edrfleet's name for it (``edrfleet config``)
    ansible: str                        # Ansible's name in ``ansible-config dump``
    type: str                           # str | int | bool | path | pathlist
    default: Any
    env: tuple[str, ...]
    ini: tuple[tuple[str, str], ...]    # (section, key)
    vars: tuple[str, ...] = ()          # host variables above everything (last defined wins)
    use: str = ""


_D = "defaults"
_SSH = "ssh_connection"
_PE = "privilege_escalation"
OPTIONS: tuple[Option, ...] = (
    Option("inventory", "DEFAULT_HOST_LIST", "pathlist", ["/etc/ansible/hosts"],
           ("ANSIBLE_INVENTORY",), ((_D, "inventory"),),
           use="the inventory when a command is given none"),
    Option("forks", "DEFAULT_FORKS", "int", DEFAULT_FORKS, ("ANSIBLE_FORKS",),
           ((_D, "forks"),), use=f"hosts worked on at once (-f/--forks); edrfleet's default "
           f"is {DEFAULT_FORKS}"),
    Option("timeout", "ssh:timeout", "int", 10, ("ANSIBLE_TIMEOUT", "ANSIBLE_SSH_TIMEOUT"),
           ((_D, "timeout"), (_SSH, "timeout")), ("ansible_ssh_timeout",),
           use="SSH connect timeout in seconds (--connect-timeout)"),
    Option("remote_user", "ssh:remote_user", "str", None, ("ANSIBLE_REMOTE_USER",),
           ((_D, "remote_user"),), ("ansible_user", "ansible_ssh_user"),
           use="the SSH user (default: yours)"),
    Option("remote_port", "ssh:port", "int", None, ("ANSIBLE_REMOTE_PORT",),
           ((_D, "remote_port"),), ("ansible_port", "ansible_ssh_port"),
           use="the SSH port (default 22)"),
    Option("private_key_file", "ssh:private_key_file", "str", None,
           ("ANSIBLE_PRIVATE_KEY_FILE",), ((_D, "private_key_file"),),
           ("ansible_private_key_file", "ansible_ssh_private_key_file"),
           use="the only key offered (~ expanded; relative to the working directory)"),
    Option("host_key_checking", "ssh:host_key_checking", "bool", True,
           ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_SSH_HOST_KEY_CHECKING"),
           ((_D, "host_key_checking"), (_SSH, "host_key_checking")),
           ("ansible_host_key_checking", "ansible_ssh_host_key_checking"),
           use="true: edrfleet_host_key_policy strict; false: accept-new (a changed key "
               "still fails); edrfleet_host_key_policy on a host wins"),
    Option("become", "DEFAULT_BECOME", "bool", False, ("ANSIBLE_BECOME",), ((_PE, "become"),),
           ("ansible_become",), use="run host commands through sudo -n"),
    Option("become_user", "DEFAULT_BECOME_USER", "str", "root", ("ANSIBLE_BECOME_USER",),
           ((_PE, "become_user"),), ("ansible_become_user",), use="the user sudo runs as"),
    Option("become_method", "DEFAULT_BECOME_METHOD", "str", "sudo", ("ANSIBLE_BECOME_METHOD",),
           ((_PE, "become_method"),), ("ansible_become_method",),
           use="sudo only (anything else is refused)"),
    Option("ssh_args", "ssh:ssh_args", "str", "-C -o ControlMaster=auto -o ControlPersist=60s",
           ("ANSIBLE_SSH_ARGS",), ((_SSH, "ssh_args"),), ("ansible_ssh_args",),
           use="only -o ProxyCommand=, -o ProxyJump=, -J are used"),
    Option("ssh_common_args", "ssh:ssh_common_args", "str", "", ("ANSIBLE_SSH_COMMON_ARGS",),
           ((_SSH, "ssh_common_args"),), ("ansible_ssh_common_args",),
           use="only -o ProxyCommand=, -o ProxyJump=, -J are used"),
    Option("ssh_extra_args", "ssh:ssh_extra_args", "str", "", ("ANSIBLE_SSH_EXTRA_ARGS",),
           ((_SSH, "ssh_extra_args"),), ("ansible_ssh_extra_args",),
           use="only -o ProxyCommand=, -o ProxyJump=, -J are used"),
)
BY_KEY = {o.key: o for o in OPTIONS}


@dataclass(frozen=True)
class Value:
    value: Any
    origin: str   # "default", "env: NAME", the config file's path, or "var: NAME"


@dataclass(frozen=True)
class AnsibleConfig:
    """The settings in force for this process (environment, file, defaults)."""

    file: Path | None
    values: Mapping[str, Value]
    warnings: tuple[str, ...] = field(default=())

    def __getitem__(self, key: str) -> Any:
        return self.values[key].value

    def for_host(self, key: str, hv: Mapping[str, Any]) -> Value:
        """The setting for one host: its variable when it has one (raw, as written), else the
        process-wide value."""
        found: Value | None = None
        for name in BY_KEY[key].vars:
            if hv.get(name) is not None:
                found = Value(hv[name], f"var: {name}")
        return found or self.values[key]

    def changed(self) -> list[tuple[str, Value]]:
        """The settings not at their default, as ``ansible-config dump --only-changed``."""
        return [(k, v) for k, v in self.values.items() if v.origin != "default"]


def find_config_file(environ: Mapping[str, str], cwd: str,
                     home: str | None = None) -> tuple[Path | None, list[str]]:
    """The one ansible.cfg Ansible would read, and the warning about a skipped world-writable
    working directory (Ansible's find_ini_config_file)."""
    candidates: list[str] = []
    from_env = environ.get("ANSIBLE_CONFIG")
    if from_env is not None:
        path = _resolve(from_env, cwd, environ)
        candidates.append(os.path.join(path, "ansible.cfg") if os.path.isdir(path) else path)
    skipped_cwd = False
    try:
        cwd_cfg = os.path.join(cwd, "ansible.cfg")
        if os.stat(cwd).st_mode & stat.S_IWOTH:  # anyone could plant a config there
            skipped_cwd = os.path.exists(cwd_cfg)
        else:
            candidates.append(cwd_cfg)
    except OSError:
        pass
    home = home if home is not None else environ.get("HOME") or os.path.expanduser("~")
    candidates += [os.path.join(home, ".ansible.cfg"), SYSTEM_CONFIG]
    found = next((p for p in candidates if os.path.exists(p) and os.access(p, os.R_OK)), None)
    warnings = []
    if skipped_cwd and (from_env is None or found != candidates[0]):
        warnings.append(f"the working directory {cwd} is world-writable: its ansible.cfg is "
                        "ignored, as Ansible ignores it (fix: chmod o-w it, or set "
                        "ANSIBLE_CONFIG)")
    return (Path(found) if found else None), warnings


def read_ini(path: Path) -> configparser.ConfigParser:
    """The file as Ansible parses it: ``;`` starts an inline comment, keys are lowercased,
    a duplicate key or section is an error."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))
    try:
        parser.read_string(path.read_bytes().decode("utf-8"), source=str(path))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}) "
                          "(fix: save it as UTF-8)") from None
    except configparser.Error as exc:
        where, what = _ini_error(exc)
        raise ConfigError(f"{path}{where}: {what} (fix: the INI syntax Ansible reads)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    return parser


def _ini_error(exc: configparser.Error) -> tuple[str, str]:
    """(":LINE" or "", what is wrong) without configparser's repetition of the file name."""
    if isinstance(exc, configparser.DuplicateOptionError):
        return f":{exc.lineno}", f"{exc.option!r} given twice in [{exc.section}]"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f":{exc.lineno}", f"section [{exc.section}] given twice"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f":{exc.lineno}", f"{exc.line.strip()!r} is not under a [section]"
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno, line = exc.errors[0]
        return f":{lineno}", f"cannot parse {line}"  # configparser gives it repr()-ed
    return "", " ".join(str(exc).split())


def load_config(environ: Mapping[str, str] | None = None, cwd: str | None = None,
                home: str | None = None) -> AnsibleConfig:
    """Every setting of :data:`OPTIONS` from the environment, the file and the defaults."""
    environ = os.environ if environ is None else environ
    cwd = os.getcwd() if cwd is None else cwd
    path, warnings = find_config_file(environ, cwd, home)
    if path is not None and path.suffix not in (".cfg", ".ini"):
        raise ConfigError(f"{path}: Ansible reads only .cfg or .ini config files "
                          "(fix: rename it, or point ANSIBLE_CONFIG at an ansible.cfg)")
    parser = read_ini(path) if path is not None else None
    values = {o.key: _resolve_option(o, environ, parser, path, cwd) for o in OPTIONS}
    return AnsibleConfig(path, values, tuple(warnings))


_cache: dict[tuple[Any, ...], AnsibleConfig] = {}


def current() -> AnsibleConfig:
    """:func:`load_config` for this process now; read again when the environment, the working
    directory or the file changes (the tests change them, and a long run might)."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("ANSIBLE_")))
    cwd = os.getcwd()
    home = os.environ.get("HOME", "")
    path, _ = find_config_file(os.environ, cwd)
    try:
        st = os.stat(path) if path else None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino) if st else None
    except OSError:
        stamp = None
    key = (env, cwd, home, str(path), stamp)
    if key not in _cache:
        _cache.clear()
        _cache[key] = load_config()
    return _cache[key]


def _resolve_option(o: Option, environ: Mapping[str, str],
                    parser: configparser.ConfigParser | None, path: Path | None,
                    cwd: str) -> Value:
    raw: str | None = None
    origin = "default"
    for name in o.env:
        if name in environ:
            raw, origin = environ[name], f"env: {name}"
    from_file = False
    if raw is None and parser is not None:
        for section, key in o.ini:
            got = parser.get(section, key, raw=True, fallback=None)
            if got is not None:
                raw, origin, from_file = got, str(path), True
    if raw is None:
        return Value(o.default, "default")
    base = str(path.parent) if from_file and path is not None else cwd
    try:
        value = convert(raw, o.type, base, environ)
    except ValueError:
        if origin.startswith("env:") and raw == "":  # Ansible: an empty variable is unset
            return Value(o.default, "default")
        raise ConfigError(f"{o.key} ({o.ansible}) from {origin!r}: {raw!r} is not "
                          f"{_TYPE_NAMES[o.type]} (fix: {_TYPE_FIX[o.type]})") from None
    if from_file and isinstance(value, str):
        value = _unquote(value)
    return Value(value, origin)


_TYPE_NAMES = {"int": "an integer", "bool": "a boolean", "str": "a string", "path": "a path",
               "pathlist": "a list of paths"}
_TYPE_FIX = {"int": "a whole number like 10", "bool": "true or false", "str": "a string",
             "path": "a path", "pathlist": "comma-separated paths"}


def convert(raw: str, type_: str, base: str, environ: Mapping[str, str]) -> Any:
    """Ansible's ensure_type for the types used here; ValueError when it does not convert."""
    if type_ == "bool":
        return raw.strip().lower() in TRUE_WORDS
    if type_ == "int":
        try:
            number = decimal.Decimal(raw)
            whole = int(number)
        except (decimal.DecimalException, ValueError):
            raise ValueError(raw) from None
        if number != whole:
            raise ValueError(raw)
        return whole
    if type_ == "path":
        return _resolve(raw, base, environ)
    if type_ == "pathlist":
        return [_resolve(p.strip(), base, environ) for p in raw.split(",")]
    return raw


def _resolve(path: str, base: str, environ: Mapping[str, str]) -> str:
    """Ansible's unfrackpath without following links: $VARS and ~ expanded, relative to base."""
    if "{{CWD}}" in path:
        path = path.replace("{{CWD}}", os.getcwd())
    expanded = os.path.expanduser(os.path.expandvars(path))
    return os.path.normpath(os.path.join(base, expanded))


def _unquote(text: str) -> str:
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" and text[-2] != "\\":
        return text[1:-1]
    return text
