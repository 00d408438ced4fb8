"""Facts: what a host is and has, read in ONE SSH round trip (one ``sh`` script).

The script is ``host/facts.sh``; it runs ``host/facts.py`` on the host's python3 (one process
for every fact) and falls back to the basics in shell without one.

Facts only read.  Templates get them as ``edrfleet_facts``, and deploy compares them with what
it wants (fleet/deploy/operations.py) so it pushes and restarts only what differs.

``edrfleet_facts`` keys (every key is always present; unknown values are "" / None / False):

    kernel_release     "6.1.0-18-amd64"                          (uname -r)
    lsm                ["lockdown", "capability", "bpf"]         (/sys/kernel/security/lsm)
    bpf_lsm            True when "bpf" is among the active LSMs
    cgroup2_mount      "/sys/fs/cgroup"                          ("" when none is mounted)
    distribution       {"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12"}
    python             {"path": "/usr/bin/python3", "version": "3.11.2", "bcc": True}
                       (path "" when the interpreter is missing)
    systemd            True when PID 1 is systemd
    uid                the remote uid the commands run as (0 after become)
    apt                True when apt-get is there
    release_id         release `current` points to ("" when none)
    release_sha256     {"agent.pyz": hex, "bpf/edrfleet.c": hex, …} of the current release
                       (every file of release.FILES; "" for a missing one)
    wanted_release_sha256   the same for releases/<the id deploy wants>/, if it exists
    policy_sha256      sha256 of <config_dir>/policy.json ("" when missing)
    policy_yaml_sha256 sha256 of <config_dir>/policy.yaml
    policy_yaml        its text when asked for (deploy --diff), else None
    unit_sha256        sha256 of the systemd unit file ("" when missing)
    outputs_sha256     {"outputs.json": sha256, "webhook.header": sha256} in <config_dir>
                       ("" when missing: the host has no outputs)
    status             <spool_dir>/status.json as a dict (None when missing or unreadable)
    supervisor_pid     pid of this install's live supervisor (0 when none), from
                       <run_dir>/supervisor.pid
    agent_pid          pid of this install's live agent (0 when none): supervisor's agent.pid, or
                       systemd's MainPID.  Liveness is by identity, not by kill(pid, 0): the
                       process's /proc cmdline must be this install's `agent.pyz run --spool
                       <spool_dir>` (`supervise --pidfile <run_dir>/supervisor.pid`) and it must
                       have started before its pidfile was written (systemd: before status.json's
                       started_at), so a pid reused by another process is not the agent
    agent_active       True when the agent is alive (as above) and, when it says it enforces or
                       monitors, its status.json is fresh (STATUS_STALE)
    agent_not_alive    why a pid found is not taken as the live agent ("" otherwise)
    missing_packages   Debian packages the agent needs and the host lacks
                       ("python3-bpfcc", "linux-headers-<release>")
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from dataclasses import dataclass
from typing import Any, Protocol

from edrfleet.fleet.deploy.hostfiles import host_file
from edrfleet.fleet.deploy.hostvars import check_file_path, check_managed_dir
from edrfleet.fleet.deploy.release import FILES

UNIT_PATH = "/etc/systemd/system/edrfleet-agent.service"
UNIT_NAME = "edrfleet-agent.service"


@dataclass(frozen=True)
class HostPaths:
    """Where things live on one host (docs/fleet.md, "Host layout")."""

    install_dir: str = "/opt/edrfleet"
    config_dir: str = "/etc/edrfleet"
    spool_dir: str = "/var/lib/edrfleet"
    run_dir: str = "/run/edrfleet"
    python: str = "/usr/bin/python3"
    unit_path: str = UNIT_PATH

    @classmethod
    def from_vars(cls, hv: dict[str, Any]) -> HostPaths:
        """The host's paths, each checked (hostvars.HostVarError: not absolute, not plain, a
        system directory): on the controller, before anything connects."""
        return cls(
            install_dir=check_managed_dir("edrfleet_install_dir",
                                          hv.get("edrfleet_install_dir", cls.install_dir)),
            config_dir=check_managed_dir("edrfleet_config_dir",
                                         hv.get("edrfleet_config_dir", cls.config_dir)),
            spool_dir=check_managed_dir("edrfleet_spool_dir",
                                        hv.get("edrfleet_spool_dir", cls.spool_dir)),
            run_dir=check_managed_dir("edrfleet_run_dir",
                                      hv.get("edrfleet_run_dir", cls.run_dir)),
            python=check_file_path("edrfleet_python", hv.get("edrfleet_python", cls.python)),
        )

    @property
    def managed_dirs(self) -> tuple[str, ...]:
        return (self.install_dir, self.config_dir, self.spool_dir, self.run_dir)

    def shell_vars(self) -> str:
        """Shell assignments for the scripts (every value quoted)."""
        pairs = {
            "INSTALL_DIR": self.install_dir, "CONFIG_DIR": self.config_dir,
            "SPOOL_DIR": self.spool_dir, "RUN_DIR": self.run_dir, "PYTHON": self.python,
            "UNIT_PATH": self.unit_path, "UNIT_NAME": UNIT_NAME,
        }
        return "".join(f"{k}={shlex.quote(v)}\n" for k, v in pairs.items())


class Runner(Protocol):
    """The part of fleet.transport.Transport facts need."""

    def run_script(self, script: str, *, args: Any = (), timeout: float = 60,
                   check: bool = True) -> Any: ...


def facts_script(paths: HostPaths, *, want_release: str = "", want_yaml: bool = False) -> str:
    """host/facts.sh after the quoted preamble; host/facts.py travels in $FACTS_PY."""
    return (f"{paths.shell_vars()}WANT_RELEASE={shlex.quote(want_release)}\n"
            f"RELEASE_FILES={shlex.quote(' '.join(FILES))}\n"
            f"WANT_YAML={'1' if want_yaml else ''}\n"
            f"FACTS_PY={shlex.quote(host_file('facts.py'))}\n{host_file('facts.sh')}")


def gather_facts(transport: Runner, paths: HostPaths, *, want_release: str = "",
                 want_yaml: bool = False, timeout: float = 30) -> dict[str, Any]:
    """Run the facts script on the host and parse what it printed."""
    result = transport.run_script(facts_script(paths, want_release=want_release,
                                               want_yaml=want_yaml), timeout=timeout)
    return parse_facts(result.stdout.decode(errors="replace"), paths)


def _unb64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode(errors="replace")
    except (binascii.Error, ValueError):
        return ""


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                parts = shlex.split(value)
            except ValueError:
                parts = [value]
            out[key.strip().lower()] = parts[0] if parts else ""
    return {k: out.get(k, "") for k in ("id", "version_id", "pretty_name")}


def _status(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_unb64(text))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# A running agent rewrites status.json every second; one this old speaks for a hung or dead
# agent (a "starting" one may compile for longer: its age is not held against it).
STATUS_STALE = 30.0


def _stale(status: dict[str, Any] | None, age: str) -> str:
    try:
        seconds = float(age)
    except ValueError:
        return ""
    if status and status.get("state") in ("enforcing", "monitoring") and seconds > STATUS_STALE:
        return (f"status.json was last written {seconds:.0f} s ago (a running agent rewrites "
                "it every second)")
    return ""


def _pid(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0


def parse_facts(stdout: str, paths: HostPaths) -> dict[str, Any]:
    """The ``edrfleet_facts`` dict (keys in the module docstring) from the script's output."""
    raw: dict[str, str] = {}
    release: dict[str, str] = {}
    wanted: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key.startswith("release_sha256 "):
            release[key.split(" ", 1)[1]] = value
        elif key.startswith("wanted_release_sha256 "):
            wanted[key.split(" ", 1)[1]] = value
        else:
            raw[key] = value
    lsm = [x for x in raw.get("lsm", "").strip().split(",") if x]
    kernel = raw.get("kernel_release", "")
    bcc = raw.get("python_bcc") == "1"
    python_version = raw.get("python_version", "")
    missing = []
    if not bcc:
        missing.append("python3-bpfcc")
    if raw.get("kernel_headers") != "1":
        missing.append(f"linux-headers-{kernel}" if kernel else "linux-headers")
    agent_pid = _pid(raw.get("agent_pid", ""))
    status = _status(raw["status"]) if "status" in raw else None
    not_alive = raw.get("agent_not_alive", "") or _stale(status, raw.get("status_age", ""))
    return {
        "kernel_release": kernel,
        "lsm": lsm,
        "bpf_lsm": "bpf" in lsm,
        "cgroup2_mount": raw.get("cgroup2_mount", ""),
        "distribution": parse_os_release(_unb64(raw.get("os_release", ""))),
        "python": {"path": paths.python if python_version else "", "version": python_version,
                   "bcc": bcc},
        "systemd": raw.get("pid1", "") == "systemd",
        "uid": _pid(raw.get("uid", "")),
        "apt": raw.get("apt") == "1",
        "release_id": raw.get("release_id", ""),
        "release_sha256": release,
        "wanted_release_sha256": wanted,
        "policy_sha256": raw.get("policy_sha256", ""),
        "policy_yaml_sha256": raw.get("policy_yaml_sha256", ""),
        "policy_yaml": _unb64(raw["policy_yaml"]) if "policy_yaml" in raw else None,
        "unit_sha256": raw.get("unit_sha256", ""),
        "outputs_sha256": {"outputs.json": raw.get("outputs_sha256", ""),
                           "webhook.header": raw.get("webhook_header_sha256", "")},
        "status": status,
        "supervisor_pid": _pid(raw.get("supervisor_pid", "")),
        "agent_pid": agent_pid,
        "agent_active": agent_pid > 0 and not not_alive,
        "agent_not_alive": not_alive,
        "missing_packages": missing,
        "machine_id": raw.get("machine_id", ""),  # /etc/machine-id, "" when not one
    }
