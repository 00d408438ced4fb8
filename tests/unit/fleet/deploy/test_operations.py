"""plan(): only what differs is changed, and the service action fits the change."""

from __future__ import annotations

import hashlib

import pytest

from edrfleet.fleet.deploy.facts import HostPaths
from edrfleet.fleet.deploy.hostpolicy import HostPolicy
from edrfleet.fleet.deploy.operations import Desired, HostFailed, plan, render_unit, service_manager
from edrfleet.fleet.deploy.release import Release

RELEASE = Release("r2", {"agent.pyz": b"a", "bpf/edrfleet.c": b"c", "bpf/edrfleet.h": b"h"})
POLICY = HostPolicy("version: 1\n", {"sha256": "b" * 64}, '{"x":1}\n')


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def desired(**kw) -> Desired:
    base = dict(name="web1", paths=HostPaths(), release=RELEASE, policy=POLICY,
                manager="supervisor", unit=None)
    return Desired(**(base | kw))


def converged(**kw) -> dict:
    hashes = {n: RELEASE.sha256(n) for n in RELEASE.files}
    facts = {
        "release_id": "r2", "release_sha256": hashes, "wanted_release_sha256": hashes,
        "policy_sha256": sha(b'{"x":1}\n'), "policy_yaml_sha256": sha(b"version: 1\n"),
        "unit_sha256": "", "agent_active": True, "agent_pid": 42, "missing_packages": [],
        "status": {"pid": 42, "state": "enforcing", "policy_sha256": "b" * 64},
    }
    return facts | kw


def test_a_converged_host_has_an_empty_plan() -> None:
    p = plan(converged(), desired())
    assert not p.changed and p.reasons == [] and p.service == "none"


def test_first_install_pushes_everything_and_starts() -> None:
    p = plan({"release_id": "", "release_sha256": {}, "agent_active": False,
              "missing_packages": []}, desired())
    assert p.push_release and p.swap_release and p.write_policy and p.service == "start"


def test_policy_only_change_reloads_not_restarts() -> None:
    p = plan(converged(policy_sha256="old"), desired())
    assert p.write_policy and not p.swap_release and p.service == "reload"


def test_release_change_restarts() -> None:
    p = plan(converged(release_id="r1", wanted_release_sha256={}), desired())
    assert p.swap_release and p.push_release and p.service == "restart"


def test_release_already_staged_is_not_sent_again() -> None:
    hashes = {n: RELEASE.sha256(n) for n in RELEASE.files}
    p = plan(converged(release_id="r1", release_sha256={}, wanted_release_sha256=hashes),
             desired())
    assert p.swap_release and not p.push_release


def test_a_corrupted_release_file_is_repaired() -> None:
    facts = converged()
    facts["release_sha256"] = dict(facts["release_sha256"], **{"agent.pyz": "0" * 64})
    facts["wanted_release_sha256"] = facts["release_sha256"]
    p = plan(facts, desired())
    assert p.push_release and p.service == "restart"


def test_agent_running_another_policy_is_reloaded() -> None:
    st = {"pid": 42, "state": "enforcing", "policy_sha256": "a" * 64}
    assert plan(converged(status=st), desired()).service == "reload"


def test_agent_alive_but_failed_is_restarted() -> None:
    st = {"pid": 42, "state": "failed", "policy_sha256": "b" * 64}
    assert plan(converged(status=st), desired()).service == "restart"


def test_missing_packages_fail_with_the_package_to_install() -> None:
    with pytest.raises(HostFailed, match="apt-get install python3-bpfcc on the host"):
        plan(converged(missing_packages=["python3-bpfcc"]), desired())
    p = plan(converged(missing_packages=["python3-bpfcc"], apt=True),
             desired(install_packages=True))
    assert p.packages == ["python3-bpfcc"] and p.service == "restart"


def test_a_non_root_session_fails_with_the_fix() -> None:
    with pytest.raises(HostFailed, match="ansible_become: true"):
        plan(converged(uid=1000), desired())


def test_package_install_script_retries_after_apt_update() -> None:
    from edrfleet.fleet.deploy.hostscripts import apply_script

    p = plan(converged(missing_packages=["python3-bpfcc", "linux-headers-6.1.0-9-amd64"],
                       apt=True), desired(install_packages=True))
    script = apply_script(desired(install_packages=True), p, payload=False)
    assert ("apt-get install -y -q -- python3-bpfcc linux-headers-6.1.0-9-amd64 >&2 || "
            "{ apt-get update -q >&2 &&") in script


def test_systemd_unit_written_when_it_differs() -> None:
    unit = render_unit(HostPaths(), "web1")
    assert "--host-name web1" in unit and "/opt/edrfleet/current/agent.pyz" in unit
    p = plan(converged(), desired(manager="systemd", unit=unit))
    assert p.write_unit and p.service == "restart"
    p = plan(converged(unit_sha256=sha(unit.encode())), desired(manager="systemd", unit=unit))
    assert not p.changed


def test_service_manager_auto_follows_pid1() -> None:
    assert service_manager({}, {"systemd": True}) == "systemd"
    assert service_manager({}, {"systemd": False}) == "supervisor"
    with pytest.raises(HostFailed, match="PID 1 is not systemd"):
        service_manager({"edrfleet_service_manager": "systemd"}, {"systemd": False})
    with pytest.raises(HostFailed, match="one of auto"):
        service_manager({"edrfleet_service_manager": "runit"}, {})
