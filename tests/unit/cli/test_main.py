"""`edrfleet` maps errors by kind: bad input exits 2, a failed host 1, Ctrl-C 130; one line on
stderr, never a traceback for an edrfleet error."""

from __future__ import annotations

import argparse

import pytest

from edrfleet.cli import inventory_cmd
from edrfleet.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from edrfleet.cli.main import main
from edrfleet.errors import EdrfleetError, HostError, InputError
from edrfleet.fleet.inventory.parse import InventoryError
from edrfleet.fleet.transport.base import CommandTimeout, HostKeyError, RemoteError, Unreachable
from edrfleet.lab.host import LabError, LabInputError
from edrfleet.policy import PolicyError


def _main_raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> int:
    def fail(args: argparse.Namespace) -> int:
        raise exc

    # main builds its parser on each call, so `inventory` is routed to `fail`
    monkeypatch.setattr(inventory_cmd, "cmd_inventory", fail)
    return main(["inventory", "x.yml"])


@pytest.mark.parametrize(("exc", "status"), [
    (PolicyError("bad", source="p.yaml", line=3, fix="fix it"), EXIT_USAGE),
    (InventoryError("no host 'x'", source="inv.yml", fix="one of a"), EXIT_USAGE),
    (LabInputError("lab: --hosts 0: between 1 and 9"), EXIT_USAGE),
    (Unreachable("web1: cannot connect"), EXIT_FAILED),
    (HostKeyError("web1: host key changed"), EXIT_FAILED),
    (RemoteError("web1", "python3 -", 1, b"boom"), EXIT_FAILED),
    (CommandTimeout("web1", "python3 -", -1, b"", "ran past 5 s"), EXIT_FAILED),
    (LabError("lab: lab01: sshd exited"), EXIT_FAILED),
    (FileNotFoundError(2, "No such file or directory", "inv.yml"), EXIT_USAGE),
])
def test_an_error_maps_to_its_kinds_exit_status_in_one_line(monkeypatch, capsys, exc,
                                                             status) -> None:
    assert _main_raising(monkeypatch, exc) == status
    err = capsys.readouterr().err
    assert err == f"edrfleet: error: {exc}\n"
    assert "Traceback" not in err


def test_ctrl_c_exits_130_and_a_closed_pipe_0(monkeypatch) -> None:
    assert _main_raising(monkeypatch, KeyboardInterrupt()) == EXIT_INTERRUPTED == 130
    assert _main_raising(monkeypatch, BrokenPipeError()) == EXIT_OK


def test_the_kinds_keep_their_builtin_bases() -> None:
    # code written against the old classes still catches them
    assert issubclass(PolicyError, ValueError) and issubclass(PolicyError, InputError)
    assert issubclass(Unreachable, ConnectionError) and issubclass(Unreachable, HostError)
    assert issubclass(RemoteError, RuntimeError) and issubclass(RemoteError, HostError)
    assert issubclass(LabError, OSError) and issubclass(LabInputError, LabError)
    for kind in (InputError, HostError):
        assert issubclass(kind, EdrfleetError)
