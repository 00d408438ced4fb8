"""The exit statuses are defined once (cli/exits.py): no command module defines its own or
returns a bare number."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edrfleet.cli import exits

CLI = Path(exits.__file__).parent


def _offences(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            found += [f"line {node.lineno}: defines {n}" for n in names if n.startswith("EXIT_")]
        elif (isinstance(node, ast.Return) and isinstance(node.value, ast.Constant)
              and type(node.value.value) is int):
            found.append(f"line {node.lineno}: return {node.value.value}")
    return found


def test_the_check_sees_both_offences() -> None:
    assert _offences("EXIT_OK, EXIT_FAILED = 0, 1\ndef f():\n    return 0\n") == [
        "line 1: defines EXIT_OK", "line 1: defines EXIT_FAILED", "line 3: return 0"]


@pytest.mark.parametrize("path", sorted(p for p in CLI.glob("*.py") if p.name != "exits.py"),
                         ids=lambda p: p.name)
def test_commands_use_the_one_set_of_exit_statuses(path: Path) -> None:
    assert _offences(path.read_text(encoding="utf-8")) == []
