"""Every error class of the controller side is an EdrfleetError of a kind the CLI maps to an exit
status; the agent's stay outside the tree (it runs alone on the hosts)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import edrfleet
from edrfleet.errors import EdrfleetError, HostError, InputError


def _controller_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(edrfleet.__path__, "edrfleet.")]
    return sorted(n for n in names if not n.startswith("edrfleet.agent"))


def _error_classes() -> dict[str, type[BaseException]]:
    found = {}
    for name in _controller_modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == name):
                found[f"{name}.{attr}"] = obj
    return found


def test_the_walk_finds_the_package_errors() -> None:
    found = _error_classes()
    for name in ("edrfleet.policy.errors.PolicyError", "edrfleet.fleet.transport.base.Unreachable",
                 "edrfleet.lab.vm.qemu.VmError", "edrfleet.fleet.report.store.ReportError"):
        assert name in found
    assert not any(n.startswith("edrfleet.agent") for n in found)


def test_every_controller_error_is_an_edrfleet_error_of_a_kind() -> None:
    outside = [n for n, cls in _error_classes().items()
               if not issubclass(cls, (InputError, HostError)) and cls is not EdrfleetError]
    assert not outside, f"not under edrfleet.errors.InputError/HostError: {outside}"


def test_the_errors_module_imports_nothing_of_ours() -> None:
    import ast

    tree = ast.parse(inspect.getsource(importlib.import_module("edrfleet.errors")))
    imported = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in imported)
