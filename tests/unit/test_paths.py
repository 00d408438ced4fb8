"""edrfleet/paths.py and `edrfleet paths`: in a checkout, its own directories and state."""

from __future__ import annotations

import os

from edrfleet import paths
from edrfleet.cli.main import main


def test_a_checkout_reads_its_own_tree_and_keeps_state_in_it() -> None:
    assert not paths.INSTALLED  # no edrfleet/data/ in a checkout: setup.py makes it in wheels
    assert paths.BPF == paths.REPO / "bpf" and (paths.BPF / "edrfleet.h").is_file()
    assert (paths.TEMPLATES / "policy.yaml.j2").is_file()
    assert (paths.ROLE / "tasks" / "main.yml").is_file()
    assert (paths.ROLE / "files" / "dirs.sh").read_bytes() == (
        paths.PACKAGE / "fleet" / "deploy" / "host" / "dirs.sh").read_bytes()
    assert paths.STATE == paths.REPO / ".edrfleet" or os.environ.get("EDRFLEET_STATE_DIR")


def test_edrfleet_paths_prints_one_or_all(capsys) -> None:
    assert main(["paths", "role"]) == 0
    assert capsys.readouterr().out == f"{paths.ROLE}\n"
    assert main(["paths"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["role", "bpf", "templates", "state"]
