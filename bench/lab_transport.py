#!/usr/bin/env python3
"""Lab and SSH transport figures: `lab up`/`lab down` time, command round trip over SshTransport.

For each size in --sizes: time `lab up` (namespaces, keys, sshds, known_hosts, inventory),
connect to every host from a thread pool (first command included), run --commands `true`s
on the first host one after another (round trip per command: median, p95), one command on
every host in parallel, then time `lab down`.  Labs live in a temporary directory and are
always removed.  Never asserts timing.

Usage: .venv/bin/python bench/lab_transport.py [--sizes 3,20] [--commands 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edrfleet.fleet.inventory.load import load_inventory  # noqa: E402
from edrfleet.fleet.transport.ssh import SshTransport  # noqa: E402
from edrfleet.lab import netns as lab  # noqa: E402


def one_size(n: int, commands: int, base: Path) -> dict[str, Any]:
    workdir = base / f"lab{n}"
    t0 = time.monotonic()
    inv = lab.up(n, workdir, log=lambda _m: None)
    out: dict[str, Any] = {"hosts": n, "up_s": round(time.monotonic() - t0, 3)}
    try:
        hosts = list(load_inventory(inv).hosts.values())
        transports = [SshTransport(h, inv.parent) for h in hosts]
        t0 = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda t: t.run(["true"]), transports))
        out["connect_all_s"] = round(time.monotonic() - t0, 3)
        rtts = []
        for _ in range(commands):
            t1 = time.perf_counter()
            transports[0].run(["true"])
            rtts.append((time.perf_counter() - t1) * 1000)
        rtts.sort()
        out["rtt_ms_median"] = round(statistics.median(rtts), 2)
        out["rtt_ms_p95"] = round(rtts[int(len(rtts) * 0.95) - 1], 2)
        t0 = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda t: t.run(["true"]), transports))
        out["one_command_all_hosts_ms"] = round((time.monotonic() - t0) * 1000, 1)
        for t in transports:
            t.close()
    finally:
        t0 = time.monotonic()
        lab.down(workdir, log=lambda _m: None)
        out["down_s"] = round(time.monotonic() - t0, 3)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="3,20", help="comma-separated host counts")
    p.add_argument("--commands", type=int, default=200, help="sequential commands timed")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="edrfleet-bench-lab-") as tmp:
        results = [one_size(int(n), args.commands, Path(tmp))
                   for n in args.sizes.split(",")]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(f"{r['hosts']:>3} hosts: lab up {r['up_s']:.2f} s, connect+first command on all "
              f"{r['connect_all_s']:.2f} s, round trip median {r['rtt_ms_median']:.2f} ms "
              f"(p95 {r['rtt_ms_p95']:.2f}), one command on all hosts "
              f"{r['one_command_all_hosts_ms']:.0f} ms, lab down {r['down_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
