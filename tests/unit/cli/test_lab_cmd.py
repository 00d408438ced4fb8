"""`edrfleet lab` argument handling that needs no root."""

from __future__ import annotations

from edrfleet.cli.exits import EXIT_USAGE
from edrfleet.cli.main import build_parser, main


def test_lab_up_and_down_parse_hosts_dir_and_vm():
    args = build_parser().parse_args(["lab", "up", "--hosts", "20", "--dir", "/x", "--vm"])
    assert (args.hosts, args.dir, args.vm) == (20, "/x", True)
    args = build_parser().parse_args(["lab", "down"])
    assert (args.dir, args.vm) == (None, False)


def test_lab_up_with_an_impossible_host_count_fails_before_touching_anything(capsys, tmp_path):
    assert main(["lab", "up", "--hosts", "0", "--dir", str(tmp_path / "l")]) == EXIT_USAGE
    assert "--hosts 0: between 1 and" in capsys.readouterr().err
    assert not (tmp_path / "l").exists()


def test_lab_vm_delegates_to_vm_lab_up_and_down(monkeypatch, capsys, tmp_path):
    import sys
    import types
    from pathlib import Path

    calls = []
    fake = types.ModuleType("edrfleet.lab.vm.fleet")
    fake.up = lambda n, workdir: calls.append(("up", n, workdir)) or workdir / "inventory.yml"
    fake.down = lambda workdir: calls.append(("down", workdir))
    monkeypatch.setitem(sys.modules, "edrfleet.lab.vm.fleet", fake)
    assert main(["lab", "up", "--vm", "--hosts", "2", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "inventory.yml")
    assert main(["lab", "down", "--vm", "--dir", str(tmp_path)]) == 0
    assert calls == [("up", 2, Path(tmp_path)), ("down", Path(tmp_path))]
