"""The inventory values deploy hands to a host, the policy template and the systemd unit, checked
on the controller before anything connects: each is what its variable says or refused.

The templates quote what they print (templates/*.j2), so a value that slipped past these checks
still cannot add a line; these checks make the refusal say which variable and how to fix it.
Values are used as written and never templated again: a ``{{ }}`` in a value is refused where
it cannot be meant (enums, paths, names) and stays text where text is fine (rule fields).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from edrfleet.errors import InputError


class HostVarError(InputError, ValueError):
    """An inventory value deploy cannot use as written; the message names the variable and fix."""


# Directories that are never ours to create, chown, chmod or remove, whatever the inventory says.
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/efi", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
    "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp",
    "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/sbin", "/usr/share",
    "/var", "/var/cache", "/var/lib", "/var/log", "/var/run", "/var/tmp", "/etc/systemd",
    "/etc/systemd/system"})

# A managed path is one shell word, one systemd word and one YAML plain scalar as written.
_PATH = re.compile(r"/[A-Za-z0-9._+@:/-]*\Z")
# Process and unit names the policy protects (they land inside regexes and YAML strings).
_NAME = re.compile(r"[A-Za-z0-9_@:-][A-Za-z0-9._@:-]*\Z")

PATH_VARS = ("edrfleet_install_dir", "edrfleet_config_dir", "edrfleet_spool_dir",
             "edrfleet_run_dir")
ENUMS = {"edrfleet_mode": ("enforce", "monitor"), "edrfleet_unscanned": ("block", "allow")}
BOOLS = ("edrfleet_strict", "edrfleet_log_risky")
LISTS = ("edrfleet_scope_cgroups", "edrfleet_extra_rules", "edrfleet_exceptions",
         "edrfleet_disabled_rules", "edrfleet_protected_agents", "edrfleet_protected_services")
NAME_LISTS = ("edrfleet_protected_agents", "edrfleet_protected_services")


def normalized(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p not in ("", "."))


def check_managed_dir(var: str, value: Any) -> str:
    """The directory ``value`` of ``var``, refused unless absolute, plain and not a system
    directory (returned without a trailing slash)."""
    text = value if isinstance(value, str) else repr(value)
    if not isinstance(value, str) or not _PATH.match(value) or ".." in value.split("/"):
        raise HostVarError(f"{var} is {text!r}: not an absolute path of letters, digits and "
                           "._+@:/- (fix: e.g. /opt/edrfleet)")
    if normalized(value) in SYSTEM_DIRS:
        raise HostVarError(f"{var} is {value!r}, a system directory deploy would chown, chmod "
                           "and uninstall would remove (fix: a directory of its own, e.g. "
                           f"{normalized(value).rstrip('/')}/edrfleet)")
    return normalized(value)


def check_file_path(var: str, value: Any) -> str:
    if not isinstance(value, str) or not _PATH.match(value) or value.endswith("/") \
            or ".." in value.split("/"):
        raise HostVarError(f"{var} is {value!r}: not an absolute file path of letters, digits "
                           "and ._+@:/- (fix: e.g. /usr/bin/python3)")
    return value


def check_host_name(name: Any) -> str:
    """The host's name as it reaches ``--host-name`` (quoted there): printable, one line."""
    if not isinstance(name, str) or not name or not name.isprintable():
        raise HostVarError(f"host name {name!r} holds a line break or control character (fix: "
                           "rename the host in the inventory)")
    return name


def _check_enum(var: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise HostVarError(f"{var} is {value!r} (fix: one of {', '.join(choices)}; values are "
                           "used as written, never templated)")


def check_policy_vars(hv: Mapping[str, Any]) -> None:
    """Every variable templates/policy.yaml.j2 reads, as its type says (HostVarError)."""
    for var, choices in ENUMS.items():
        if var in hv:
            _check_enum(var, hv[var], choices)
    for var in BOOLS:
        if var in hv and not isinstance(hv[var], bool):
            raise HostVarError(f"{var} is {hv[var]!r}: not true or false (fix: an unquoted "
                               "true or false)")
    for var in LISTS:
        if var in hv and not isinstance(hv[var], list):
            raise HostVarError(f"{var} is {hv[var]!r}: not a list (fix: [ ... ])")
    for var in NAME_LISTS:
        for item in hv.get(var) or []:
            if not isinstance(item, str) or not _NAME.match(item):
                raise HostVarError(f"{var} holds {item!r}: not a process or unit name of "
                                   "letters, digits and ._@:- (fix: the name as `ps -o comm` "
                                   "or systemctl shows it)")
    managed = hv.get("ansible_managed")
    if managed is not None and (not isinstance(managed, str) or not managed.isprintable()):
        raise HostVarError(f"ansible_managed is {managed!r}: not one printable line (fix: one "
                           "line of text)")


def check_unit_vars(hv: Mapping[str, Any]) -> None:
    """Every variable templates/edrfleet-agent.service.j2 reads (HostVarError)."""
    for var in ("edrfleet_install_dir", "edrfleet_spool_dir"):
        if var in hv:
            check_managed_dir(var, hv[var])
    for var in ("edrfleet_python", "edrfleet_agent_path", "edrfleet_policy_path",
                "edrfleet_outputs_path"):
        if var in hv:
            check_file_path(var, hv[var])
    if "edrfleet_bpf_dir" in hv:
        check_file_path("edrfleet_bpf_dir", hv["edrfleet_bpf_dir"])
    if "edrfleet_host_name" in hv:
        check_host_name(hv["edrfleet_host_name"])
    managed = hv.get("ansible_managed")
    if managed is not None and (not isinstance(managed, str) or not managed.isprintable()):
        raise HostVarError(f"ansible_managed is {managed!r}: not one printable line (fix: one "
                           "line of text)")
