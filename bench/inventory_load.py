"""Time `load_inventory`, a --limit and `to_ansible_list` on a synthetic inventory.

Usage: .venv/bin/python bench/inventory_load.py [--hosts N] [--ansible]
N hosts in groups of 100 (each with vars and a group_vars file), half the groups under
``prod``, host_vars files for one host in ten. Prints the best of 3 wall and CPU times; with
``--ansible`` also times ``ansible-inventory --list`` on the same files (one run).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edrfleet.fleet.inventory.load import load_inventory  # noqa: E402


def write_inventory(root: Path, hosts: int) -> Path:
    groups = max(1, hosts // 100)
    lines = ["all:", "  vars: {edrfleet_mode: enforce}", "  children:"]
    for g in range(groups):
        lines += [f"    g{g}:", "      vars:", f"        rack: {g}", "      hosts:"]
        lines += [f"        h{g}-{i:02d}:\n          ansible_host: 10.{g // 256}.{g % 256}.{i}\n"
                  f"          ansible_user: u{i}" for i in range(100)]
    lines += ["    prod:", "      children:"] + [f"        g{g}:" for g in range(0, groups, 2)]
    path = root / "inventory.yml"
    path.write_text("\n".join(lines) + "\n")
    (root / "group_vars").mkdir()
    (root / "host_vars").mkdir()
    for g in range(groups):
        (root / "group_vars" / f"g{g}.yml").write_text(f"x: {g}\n")
        for i in range(0, 100, 10):
            (root / "host_vars" / f"h{g}-{i:02d}.yml").write_text("note: 1\n")
    return path


def best_of_3(fn) -> tuple[float, float, object]:
    wall = cpu = float("inf")
    result = None
    for _ in range(3):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--ansible", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="edrfleet-bench-inventory-"))
    try:
        path = write_inventory(root, args.hosts)
        wall, cpu, inv = best_of_3(lambda: load_inventory(path))
        print(f"load_inventory, {len(inv.hosts)} hosts: {wall * 1000:.0f} ms wall, "
              f"{cpu * 1000:.0f} ms CPU")
        wall, cpu, sel = best_of_3(lambda: inv.select("prod:&g*:!h2-0*"))
        print(f"select('prod:&g*:!h2-0*') -> {len(sel)} hosts: {wall * 1000:.1f} ms wall")
        wall, cpu, _ = best_of_3(inv.to_ansible_list)
        print(f"to_ansible_list: {wall * 1000:.0f} ms wall")
        tool = shutil.which("ansible-inventory", path=str(Path(sys.executable).parent))
        if args.ansible and tool:
            start = time.perf_counter()
            subprocess.run([tool, "-i", str(path), "--list"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
            print(f"ansible-inventory --list: {(time.perf_counter() - start) * 1000:.0f} ms wall")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
