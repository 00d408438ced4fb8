#!/usr/bin/env python3
"""What ending timed-out commands on the host costs: a command round trip over SSH with the
host-side ``timeout -k 5 T`` wrapper (what SshTransport sends) and without it, side by side.

One lab host in a temporary directory; --commands ``true``s each way, interleaved in rounds of
ten so both see the same machine load; median and p95 per way and their ratio.  The lab is
always removed.  Never asserts timing.

Usage: .venv/bin/python bench/remote_timeout.py [--commands 300]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edrfleet.fleet.inventory.load import load_inventory  # noqa: E402
from edrfleet.fleet.transport.ssh import SshTransport, remote_timeout  # noqa: E402
from edrfleet.lab import netns as lab  # noqa: E402


def _round_trip(t: SshTransport, wire: str) -> float:
    t0 = time.perf_counter()
    t._exec(wire, "true", None, 60, True)  # the wire line as given: with or without wrapper
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=300, help="commands timed each way")
    args = p.parse_args()
    ways = {"wrapped": shlex.join([*remote_timeout(60), "true"]), "bare": "true"}
    times: dict[str, list[float]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory(prefix="edrfleet-bench-timeout-") as tmp:
        inv = lab.up(1, Path(tmp) / "lab", log=lambda _m: None)
        try:
            (host,) = load_inventory(inv).hosts.values()
            with SshTransport(host, inv.parent) as t:
                t.run(["true"])  # connected before timing
                for _ in range(max(1, args.commands // 10)):
                    for way, wire in ways.items():
                        times[way] += [_round_trip(t, wire) for _ in range(10)]
        finally:
            lab.down(Path(tmp) / "lab", log=lambda _m: None)
    med = {w: statistics.median(v) for w, v in times.items()}
    for w, v in times.items():
        v.sort()
        print(f"{w:>8}: {len(v)} commands, median {med[w]:.2f} ms, "
              f"p95 {v[int(len(v) * 0.95) - 1]:.2f} ms")
    print(f"wrapped / bare median: {med['wrapped'] / med['bare']:.2f}x "
          f"(+{med['wrapped'] - med['bare']:.2f} ms a command)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
