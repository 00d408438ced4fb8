"""Deployer orchestration with a scripted stand-in transport (logic only; the lab tier runs
the real thing): phases, unreachable hosts, serial batches, max-fail-percent, check, abort on a
bad policy before any host is touched."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edrfleet.fleet.deploy.deployer import Deployer, DeployOptions
from edrfleet.fleet.deploy.hostpolicy import CompileCache, HostPolicyError
from edrfleet.fleet.deploy.release import Release

RELEASE = Release("r1", {"agent.pyz": b"a", "bpf/edrfleet.c": b"c", "bpf/edrfleet.h": b"h"})
BAD_RULE = {"id": "bad-regex", "description": "x", "severity": "low", "action": "block",
            "match": {"executable": ["rm"], "args": [{"regex": "(x"}]}}


@dataclass(frozen=True)
class Host:
    name: str
    vars: dict = field(default_factory=dict)
    groups: tuple = ("all",)


@dataclass
class Res:
    rc: int
    stdout: bytes
    stderr: bytes = b""


class Fake:
    """Facts of an empty host; apply succeeds unless the host is in `fail`."""

    log: list[tuple[str, str]] = []

    def __init__(self, host, fail=(), unreachable=()):
        if host.name in unreachable:
            raise ConnectionError(f"{host.name}: connection refused")
        self.name, self.fail = host.name, fail

    def run_script(self, script, *, args=(), input=None, timeout=60, check=True):
        kind = script_kind(script)
        Fake.log.append((self.name, kind))
        if kind == "facts":
            return self.facts()
        if kind == "edrfleet-apply" and self.name in self.fail:
            return Res(1, b"old_release=\ntouched_service=1\nresult=failed\n"
                          b"error=agent failed: boom\n")
        status = base64.b64encode(json.dumps({"state": "enforcing"}).encode())
        return Res(0, b"result=ok\nstatus=" + status + b"\n")

    def facts(self):
        return Res(0, b"kernel_release=6.1\npython_version=3.11\npython_bcc=1\n"
                      b"kernel_headers=1\npid1=init\n")

    def close(self):
        pass


def script_kind(script: str) -> str:
    """Which host script the deployer sent: apply and rollback by a variable only their
    preamble sets; anything else is the facts script."""
    if "\nWANT_SHA=" in script:
        return "edrfleet-apply"
    if "\nOLD_RELEASE=" in script:
        return "edrfleet-rollback"
    return "facts"


def run(tmp_path: Path, hosts, fail=(), unreachable=(), **opts):
    Fake.log = []
    d = Deployer(tmp_path, DeployOptions(**opts),
                 connect=lambda h, _d: Fake(h, fail, unreachable),
                 compiler=CompileCache(tmp_path / "cache"), release=RELEASE)
    report = d.run(hosts)
    return report, {r.name: r for r in report.results}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """Compile the default policy once for the module (the cache is keyed by text)."""
    return tmp_path_factory.mktemp("cache")


def hosts(n: int, **extra) -> list[Host]:
    return [Host(f"h{i}", dict(extra.get(f"h{i}", {}))) for i in range(1, n + 1)]


def test_every_host_gets_facts_then_apply_and_a_result(warm) -> None:
    report, by = run(warm, hosts(3))
    assert [r.status for r in report.results] == ["changed"] * 3
    assert "release none -> r1" in by["h1"].message and by["h1"].agent == {"state": "enforcing"}
    phases = [k for _, k in Fake.log]
    assert phases.index("edrfleet-apply") > max(i for i, k in enumerate(phases) if k == "facts")


def test_an_unreachable_host_does_not_stop_the_others(warm) -> None:
    report, by = run(warm, hosts(3), unreachable={"h2"})
    assert by["h2"].status == "unreachable" and "refused" in by["h2"].message
    assert by["h1"].status == by["h3"].status == "changed"
    assert [r.name for r in report.failed] == ["h2"]


def test_a_failed_host_is_rolled_back_and_reported_with_the_agent_error(warm) -> None:
    _, by = run(warm, hosts(2), fail={"h1"})
    assert by["h1"].status == "failed" and "agent failed: boom" in by["h1"].message
    assert ("h1", "edrfleet-rollback") in Fake.log and ("h2", "edrfleet-rollback") not in Fake.log


def test_a_failure_before_any_change_is_not_rolled_back(warm) -> None:
    class Early(Fake):
        def run_script(self, script, **kw):
            kind = script_kind(script)
            Fake.log.append((self.name, kind))
            if kind == "facts":
                return self.facts()
            return Res(1, b"old_release=\nresult=failed\nerror=payload did not unpack\n")

    Fake.log = []
    d = Deployer(warm, DeployOptions(), compiler=CompileCache(warm / "cache"), release=RELEASE,
                 connect=lambda h, _d: Early(h))
    (r,) = d.run(hosts(1)).results
    assert r.status == "failed" and "nothing was changed on the host" in r.message
    assert [k for _, k in Fake.log] == ["facts", "edrfleet-apply"]


def test_max_fail_percent_stops_later_batches(warm) -> None:
    report, by = run(warm, hosts(6), fail={"h1"}, serial=2, max_fail_percent=40)
    assert by["h1"].status == "failed" and by["h2"].status == "changed"
    for n in ("h3", "h4", "h5", "h6"):
        assert by[n].status == "failed" and by[n].message.startswith("not deployed")
        assert (n, "edrfleet-apply") not in Fake.log
    assert "1 of 2 hosts" in report.stopped


def test_below_max_fail_percent_every_batch_runs(warm) -> None:
    report, by = run(warm, hosts(4), fail={"h1"}, serial=2, max_fail_percent=50)
    assert report.stopped == "" and by["h4"].status == "changed"


def test_check_mode_sends_nothing(warm) -> None:
    report, by = run(warm, hosts(2), check=True)
    assert all(r.status == "changed" and r.message.startswith("would change") for r in
               report.results)
    assert {k for _, k in Fake.log} == {"facts"}


def test_a_bad_policy_on_one_host_stops_before_any_apply(warm) -> None:
    with pytest.raises(HostPolicyError, match=r"^host h3: .*rule 'bad-regex'"):
        run(warm, hosts(3, h3={"edrfleet_extra_rules": [BAD_RULE]}))
    assert {k for _, k in Fake.log} == {"facts"}


def test_missing_packages_fail_that_host_only(warm) -> None:
    class NoBcc(Fake):
        def facts(self):
            return Res(0, b"kernel_release=6.1\npython_version=3.11\nkernel_headers=1\n")

    Fake.log = []
    d = Deployer(warm, DeployOptions(), compiler=CompileCache(warm / "cache"), release=RELEASE,
                 connect=lambda h, _d: (NoBcc if h.name == "h1" else Fake)(h))
    by = {r.name: r for r in d.run(hosts(2)).results}
    assert by["h1"].status == "failed" and "apt-get install python3-bpfcc" in by["h1"].message
    assert by["h2"].status == "changed"


def test_a_bad_host_variable_fails_that_host_only(warm) -> None:
    _, by = run(warm, hosts(3, h1={"edrfleet_install_packages": "perhaps"},
                            h2={"edrfleet_start_timeout": "soon"}))
    assert by["h1"].status == "failed" and "edrfleet_install_packages" in by["h1"].message
    assert by["h2"].status == "failed" and "edrfleet_start_timeout: 'soon'" in by["h2"].message
    assert by["h3"].status == "changed"
