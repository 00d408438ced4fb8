"""`molecule test` of roles/edrfleet_agent: create (a qemu VM), converge, idempotence, verify.

Molecule boots its own VM (create.yml -> edrfleet/lab/vm/fleet.py) so its converge starts from a
clean guest; the image is the cached one every VM test shares.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "edrfleet_agent"


def test_molecule_test_passes_in_a_qemu_vm(tmp_path):
    bin_dir = Path(sys.executable).parent  # molecule runs ansible-playbook by name
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
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
