"""Operations: compare a host's facts with what deploy wants and keep only what must change.

Pure logic (no SSH): ``plan(facts, desired)`` returns a :class:`Plan`; an empty plan means the
host is already right and nothing is sent, written or restarted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from edrfleet.errors import HostError
from edrfleet.fleet.deploy.facts import HostPaths
from edrfleet.fleet.deploy.hostpolicy import HostPolicy
from edrfleet.fleet.deploy.hostvars import check_unit_vars
from edrfleet.fleet.deploy.outputs import FILES as OUTPUT_FILES
from edrfleet.fleet.deploy.release import Release
from edrfleet.fleet.deploy.render import UNIT_TEMPLATE, render

SERVICE_MANAGERS = ("auto", "systemd", "supervisor")
RUNNING_STATES = ("enforcing", "monitoring")


class HostFailed(HostError, RuntimeError):
    """This host cannot be deployed as it stands; the message says what to do."""


@dataclass(frozen=True)
class Desired:
    """Everything deploy wants on one host."""

    name: str
    paths: HostPaths
    release: Release
    policy: HostPolicy
    manager: str               # "systemd" | "supervisor"
    unit: str | None           # the rendered unit (systemd only)
    install_packages: bool = False
    start_timeout: float = 90.0
    outputs: dict[str, bytes] = field(default_factory=dict)  # outputs.py: config_dir files

    @property
    def outputs_sha256(self) -> dict[str, str]:
        return {n: hashlib.sha256(self.outputs[n]).hexdigest() if n in self.outputs else ""
                for n in OUTPUT_FILES}

    @property
    def unit_sha256(self) -> str:
        return hashlib.sha256(self.unit.encode()).hexdigest() if self.unit else ""


@dataclass
class Plan:
    packages: list[str] = field(default_factory=list)  # apt-get install these first
    push_release: bool = False    # send the release files (releases/<id>/ missing or wrong)
    swap_release: bool = False    # point `current` at the wanted release
    write_policy: bool = False    # policy.json / policy.yaml differ
    write_unit: bool = False      # the systemd unit differs
    write_outputs: bool = False   # outputs.json / webhook.header differ (a reload applies them)
    service: str = "none"         # none | start | restart | reload
    reasons: list[str] = field(default_factory=list)  # what would change, one line each

    @property
    def changed(self) -> bool:
        return bool(self.packages or self.push_release or self.swap_release
                    or self.write_policy or self.write_unit or self.write_outputs
                or self.service != "none")


def service_manager(host_vars: dict[str, Any], facts: dict[str, Any]) -> str:
    wanted = str(host_vars.get("edrfleet_service_manager", "auto"))
    if wanted not in SERVICE_MANAGERS:
        raise HostFailed(f"edrfleet_service_manager is {wanted!r} (fix: one of "
                         f"{', '.join(SERVICE_MANAGERS)})")
    if wanted == "auto":
        return "systemd" if facts.get("systemd") else "supervisor"
    if wanted == "systemd" and not facts.get("systemd"):
        raise HostFailed("edrfleet_service_manager is systemd but PID 1 is not systemd (fix: "
                         "set it to supervisor or auto)")
    return wanted


def render_unit(paths: HostPaths, name: str) -> str:
    variables = {
        "edrfleet_python": paths.python, "edrfleet_install_dir": paths.install_dir,
        "edrfleet_policy_path": f"{paths.config_dir}/policy.json",
        "edrfleet_spool_dir": paths.spool_dir, "edrfleet_host_name": name,
        "edrfleet_outputs_path": f"{paths.config_dir}/outputs.json",
    }
    check_unit_vars(variables)
    return render(UNIT_TEMPLATE, variables, host=name)


def _release_ok(hashes: dict[str, str], release: Release) -> bool:
    return all(hashes.get(n) == release.sha256(n) for n in release.files)


def _packages(facts: dict[str, Any], desired: Desired) -> list[str]:
    missing = list(facts.get("missing_packages") or [])
    if not missing:
        return []
    if not desired.install_packages:
        raise HostFailed(f"missing package{'s' if len(missing) > 1 else ''} "
                         f"{' '.join(missing)} (fix: apt-get install {' '.join(missing)} on the "
                         "host, or set edrfleet_install_packages: true)")
    if not facts.get("apt"):
        raise HostFailed(f"missing {' '.join(missing)} and the host has no apt-get (fix: "
                         "install them with the host's package manager)")
    return missing


def plan(facts: dict[str, Any], desired: Desired) -> Plan:
    """What must change on the host so that it runs ``desired`` (raises HostFailed)."""
    if facts.get("uid", 0) != 0:
        raise HostFailed(f"commands run as uid {facts['uid']}, the agent needs root (fix: "
                         "ansible_user: root, or ansible_become: true with passwordless sudo)")
    p = Plan(packages=_packages(facts, desired))
    if p.packages:
        p.reasons.append(f"install packages {' '.join(p.packages)}")
    rel = desired.release
    if facts.get("release_id") != rel.id or not _release_ok(facts["release_sha256"], rel):
        p.swap_release = True
        p.push_release = not _release_ok(facts.get("wanted_release_sha256") or {}, rel)
        old = facts.get("release_id") or "none"
        p.reasons.append(f"release {old} -> {rel.id}" + ("" if p.push_release else
                                                          " (already on the host)"))
    if (facts.get("policy_sha256") != desired.policy.file_sha256
            or facts.get("policy_yaml_sha256") != _sha(desired.policy.yaml_text)):
        p.write_policy = True
        p.reasons.append(f"policy -> {desired.policy.sha256[:12]}")
    held = facts.get("outputs_sha256") or {}
    if {n: held.get(n, "") for n in OUTPUT_FILES} != desired.outputs_sha256:
        p.write_outputs = True
        p.reasons.append("outputs (syslog, webhook)")
    if desired.manager == "systemd" and facts.get("unit_sha256") != desired.unit_sha256:
        p.write_unit = True
        p.reasons.append("systemd unit")
    p.service = _service_action(facts, desired, p)
    if p.service != "none":
        p.reasons.append(f"{p.service} agent" + _why_service(facts, desired, p))
    return p


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _service_action(facts: dict[str, Any], desired: Desired, p: Plan) -> str:
    status = facts.get("status") or {}
    if not facts.get("agent_active"):
        return "start"
    if p.swap_release or p.write_unit or p.packages:
        return "restart"
    if status.get("pid") != facts.get("agent_pid") or status.get("state") not in RUNNING_STATES:
        return "restart"  # alive but not (yet, or any more) enforcing
    if p.write_policy or p.write_outputs or status.get("policy_sha256") != desired.policy.sha256:
        return "reload"  # SIGHUP: the policy and the outputs file read again
    return "none"


def _why_service(facts: dict[str, Any], desired: Desired, p: Plan) -> str:
    status = facts.get("status") or {}
    if p.service == "start":
        why = facts.get("agent_not_alive")
        return f" (not running: {why})" if why else " (not running)"
    if p.service == "restart" and not (p.swap_release or p.write_unit or p.packages):
        return f" (state {status.get('state', 'unknown')})"
    if p.service == "reload" and not p.write_policy:
        return f" (running policy {str(status.get('policy_sha256', ''))[:12] or 'none'})"
    return ""
