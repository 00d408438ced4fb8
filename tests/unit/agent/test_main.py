"""`agent.pyz service` and `agent.pyz wait` run where BPF is not loaded yet: no bcc, no engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

PROBE = """
import sys
from edrfleet.agent.__main__ import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m == "bcc" or m.startswith("bcc.")
               or m in ("edrfleet.agent.engine", "edrfleet.agent.run", "edrfleet.agent.maps"))
print(code, heavy)
"""


def run(*argv: str) -> str:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_wait_and_service_import_neither_bcc_nor_the_engine(tmp_path: Path) -> None:
    assert run("wait", "--spool", str(tmp_path), "--timeout", "0") == "3 []"
    assert run("service", "stop", "--run-dir", str(tmp_path)) == "0 []"
