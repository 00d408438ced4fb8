"""The LSM backend is x86-64 only (bpf/lsm.c): elsewhere the probe says no before any bpf()."""

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

