"""The kernel probes: the LSM backend (x86-64 only, the helpers bpf/lsm.c calls) and scope."""

from __future__ import annotations

from types import SimpleNamespace

from edrfleet.agent import lsm_probe


def test_on_another_architecture_the_lsm_backend_is_not_offered(monkeypatch):
    def no_syscall(*_a):
        raise AssertionError("no bpf() call: the syscall number is x86-64's")

    monkeypatch.setattr(lsm_probe.os, "uname", lambda: SimpleNamespace(machine="aarch64"))
    monkeypatch.setattr(lsm_probe.ct, "CDLL", lambda *_a, **_k: SimpleNamespace(syscall=no_syscall))
    ok, why = lsm_probe.probe_lsm_load(1)
    assert not ok and "x86-64 only" in why and "aarch64" in why



def test_the_lsm_probe_program_calls_the_helpers_the_lsm_programs_need():
    import struct

    calls = [struct.unpack_from("<i", lsm_probe.INSNS, i + 4)[0]
             for i in range(0, len(lsm_probe.INSNS), 8) if lsm_probe.INSNS[i] == 0x85]
    assert calls == [lsm_probe.BPF_FUNC_GET_CURRENT_TASK_BTF, lsm_probe.BPF_FUNC_TASK_PT_REGS]


def test_a_kernel_without_the_ancestor_cgroup_helper_is_told_scope_cannot_work(monkeypatch):
    import errno

    monkeypatch.setattr(lsm_probe.os, "uname", lambda: SimpleNamespace(machine="x86_64"))
    monkeypatch.setattr(lsm_probe, "_load", lambda *_a, **_k: -errno.EINVAL)
    ok, why = lsm_probe.probe_scope()
    assert not ok and "bpf_get_current_ancestor_cgroup_id" in why and "scope.cgroups" in why
    monkeypatch.setattr(lsm_probe, "_load", lambda *_a, **_k: -errno.EPERM)
    assert lsm_probe.probe_scope() == (True, "")  # the real load reports other refusals


def test_a_scoped_policy_is_refused_where_scope_cannot_work():
    import pytest

    from edrfleet.agent.run import Agent

    no_scope = SimpleNamespace(scope_possible=False, scope_why="no ancestor helper")
    with pytest.raises(ValueError, match="no ancestor helper"):
        Agent._check_scope(no_scope, {"scope": {"cgroups": ["/edr"]}})
    Agent._check_scope(no_scope, {"scope": {}})  # a whole-host policy loads
    Agent._check_scope(SimpleNamespace(scope_possible=True, scope_why=""),
                       {"scope": {"cgroups": ["/edr"]}})
