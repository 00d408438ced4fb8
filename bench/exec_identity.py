#!/usr/bin/env python3
"""Cost of keeping identities current (edrfleet/agent/identity/): what every exec of the host
pays for the fanotify FAN_OPEN_EXEC notifications, and what the first exec of a new binary
pays now that it is hashed after the exec, never before (the kernel judges it by size and
head meanwhile: bpf/identity.c).

The identity keeper runs in a process of its own (as in the agent, minus the BPF maps: its
kernel-map writes go to a stand-in, one syscall each in the agent), protecting two files: a
copy of /bin/true and an 8 MiB file.  Side by side in one run, rounds alternating:

- steady: a C loop of fork + execve(/bin/true) + wait, without and with the keeper, and the
  same loop on a protected file (its exec opens keep going to the keeper);
- first exec: fresh files run once each, timed by fork + exec + wait: a new binary of a size
  no protected file has (fstat only), a new binary of a protected size and head (hashed after
  it ran, not a copy), a fresh copy of each protected file (hashed after it ran), and a second
  run (cached).

Usage: .venv/bin/python bench/exec_identity.py [--n 2000] [--rounds 5] [--fresh 40]
Never asserts timing; the keeper marks every filesystem of the host while it runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

BIG = 8 << 20


class _StubEngine:
    """Where the agent writes BPF map keys, the benchmark counts them and notes when."""

    def __init__(self) -> None:
        self.keys = 0
        self.written: dict = {}

    def put_inodes(self, _slot, items) -> None:
        for ident, _groups in items:
            self.keys += 1
            self.written[ident] = time.monotonic()

    def put_sizes(self, _slot, items) -> None:
        self.keys += len(list(items))

    def drop_inode(self, _slot, _ident) -> None:
        pass


def serve(paths: list[str]) -> int:
    """--serve: run the keeper protecting ``paths`` until stdin closes."""
    from edrfleet.agent.identity.keeper import IdentityKeeper
    from edrfleet.kernel_abi import load_header

    header = load_header(c.REPO / "bpf")
    keeper = IdentityKeeper(lambda m: print(m, file=sys.stderr), header)
    bundle = {"executables": {"paths": {p: [0] for p in paths}}, "groups": [{"has_block": 1}]}

    class Packed:
        inodes: dict = {}

    keeper.follow(_StubEngine(), 0, bundle, Packed())
    keeper.start()
    print("ready", flush=True)
    sys.stdin.read()
    print(keeper.stats(), file=sys.stderr)
    keeper.close()
    return 0


def rename_bound(work: Path, n: int) -> list[float]:
    """µs from a rename over a named path to its new key being written, inotify alone (an
    exec in between is judged by its names and size and head)."""
    from edrfleet.agent.identity.keeper import IdentityKeeper
    from edrfleet.agent.maps import kernel_dev
    from edrfleet.kernel_abi import load_header

    named = work / "named-tool"
    named.write_bytes(b"x")
    keeper = IdentityKeeper(lambda _m: None, load_header(c.REPO / "bpf"), content=False)
    engine = _StubEngine()

    class Packed:
        inodes: dict = {}

    bundle = {"executables": {"paths": {str(named): [0]}}, "groups": [{"has_block": 1}]}
    keeper.follow(engine, 0, bundle, Packed())
    keeper.start()
    out = []
    try:
        for i in range(n):
            new = work / f".named-tool.{i}"
            new.write_bytes(b"x")
            st = new.stat()
            ident = (kernel_dev(st.st_dev), st.st_ino)
            engine.written.pop(ident, None)  # inode numbers are reused
            t0 = time.monotonic()
            os.rename(new, named)
            while ident not in engine.written and time.monotonic() < t0 + 5:
                time.sleep(0.0002)
            out.append((engine.written.get(ident, t0 + 5) - t0) * 1e6)
    finally:
        keeper.close()
    return out


def unique(path: Path, base: bytes, size: int | None = None) -> Path:
    data = base + uuid.uuid4().bytes * 4
    if size is not None:
        data = (data + b"\0" * size)[:size]
    path.write_bytes(data)
    path.chmod(0o755)
    return path


def exec_once(path: Path) -> float:
    t0 = time.perf_counter()
    pid = os.posix_spawn(str(path), [str(path)], {})
    os.waitpid(pid, 0)
    return (time.perf_counter() - t0) * 1e6


def first_execs(work: Path, protected: list[Path], n: int) -> dict[str, float]:
    """Median µs of one fork+exec+wait of each kind of fresh file."""
    true = Path("/bin/true").read_bytes()
    small, big = protected
    times: dict[str, list[float]] = {k: [] for k in (
        "new, other size", "new, protected size (hashed after)", "copy of protected 40 KiB",
        "copy of protected 8 MiB", "second run (cached)")}
    for i in range(n):
        other = unique(work / f"o{i}", true)
        same = unique(work / f"s{i}", true, small.stat().st_size)
        copy_small = work / f"cs{i}"
        shutil.copy(small, copy_small)
        copy_big = work / f"cb{i}"
        shutil.copy(big, copy_big)
        times["new, other size"].append(exec_once(other))
        times["new, protected size (hashed after)"].append(exec_once(same))
        times["copy of protected 40 KiB"].append(exec_once(copy_small))
        times["copy of protected 8 MiB"].append(exec_once(copy_big))
        times["second run (cached)"].append(exec_once(other))
        for f in (other, same, copy_small, copy_big):
            f.unlink()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="execs per steady round (2000)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fresh", type=int, default=40, help="fresh files per kind and round")
    args = ap.parse_args()
    c.preflight()
    work = c.make_workdir("edrfleet-bench-ident-")
    cg = c.Cgroup.create()
    try:
        loop = c.compile_c(c.EXEC_LOOP_C, "exec_loop", work)
        small = unique(work / "protected-small", Path("/bin/true").read_bytes())
        big = unique(work / "protected-big", Path("/bin/true").read_bytes(), BIG)
        steady: dict[bool, list[float]] = {False: [], True: []}
        steady_protected: dict[bool, list[float]] = {False: [], True: []}
        first: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for keeper_on in (False, True):
                keeper = None
                if keeper_on:
                    keeper = subprocess.Popen(
                        [c.PYTHON, __file__, "--serve", str(small), str(big)],
                        cwd=c.REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                    assert keeper.stdout is not None and keeper.stdout.readline() == "ready\n"
                try:
                    s = c.timed_loop(cg, [str(loop), str(args.n), "/bin/true"])
                    steady[keeper_on].append(s.wall / args.n * 1e6)
                    # a protected file keeps its events (an overlay may show it): notified
                    s = c.timed_loop(cg, [str(loop), str(args.n), str(small)])
                    steady_protected[keeper_on].append(s.wall / args.n * 1e6)
                    first[keeper_on].append(first_execs(work, [small, big], args.fresh))
                finally:
                    if keeper is not None:
                        keeper.communicate("", timeout=30)
        bound = rename_bound(work, 200)
        print(f"rename over a named path -> key written (inotify alone, 200 renames): median "
              f"{statistics.median(bound):.0f} µs, max {max(bound):.0f} µs")
        base, on = statistics.median(steady[False]), statistics.median(steady[True])
        print(f"steady fork+exec of /bin/true: {base:.1f} µs without the keeper, {on:.1f} µs "
              f"with it: {on / base:.3f}x (medians of {args.rounds} rounds of {args.n})")
        base, on = (statistics.median(steady_protected[False]),
                    statistics.median(steady_protected[True]))
        print(f"steady fork+exec of a protected file: {base:.1f} µs without, {on:.1f} µs with "
              f"the keeper: {on / base:.3f}x (+{on - base:.1f} µs: a notification, no wait)")
        print("first exec of a fresh file (median µs, without -> with the keeper):")
        for kind in first[False][0]:
            off_v = statistics.median(r[kind] for r in first[False])
            on_v = statistics.median(r[kind] for r in first[True])
            print(f"  {kind:32s} {off_v:8.1f} -> {on_v:8.1f}  (+{on_v - off_v:.1f} µs, "
                  f"{on_v / off_v:.2f}x)")
    finally:
        cg.remove()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
