"""`molecule test` of roles/edrfleet_agent on Debian 11, 12 and 13 (one qemu VM each): create,
converge, idempotence, verify, side effect (state absent), destroy.

The tier's three-release lab (the `matrix_lab` session fixture) is handed to molecule
(EDRFLEET_MOLECULE_LAB): create adopts its guests instead of booting three more, destroy leaves
them to the fixture.  test_matrix.py, which runs first on them, uninstalls its agents, so the
converge starts from clean guests.  `molecule test` run by hand boots its own three.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "edrfleet_agent"


def test_molecule_test_passes_on_three_debian_releases(tmp_path, matrix_lab):
    bin_dir = Path(sys.executable).parent  # molecule runs ansible-playbook by name
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
           "EDRFLEET_MOLECULE_LAB": str(matrix_lab.workdir),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_FORCE_COLOR": "0",
           "NO_COLOR": "1", "PY_COLORS": "0"}
    started = time.monotonic()
    r = subprocess.run([str(bin_dir / "molecule"), "test"], cwd=ROLE, env=env,
                       capture_output=True, text=True, timeout=3000)
    took = time.monotonic() - started
    out = r.stdout + r.stderr
    print(f"molecule test: {took:.0f} s, rc {r.returncode}")
    assert r.returncode == 0, out[-6000:]
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert f"{step}: Executed: Successful" in out, (step, out[-3000:])
    for host in (g.name for g in matrix_lab.guests.values()):
        # each platform in the recap of converge, idempotence and verify, nothing failed
        recaps = re.findall(rf"^{re.escape(host)}\s+: ok=[1-9][0-9]* .*failed=0", out, re.M)
        assert len(recaps) >= 3, (host, out[-3000:])
