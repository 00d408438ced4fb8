"""bench/report: pull + ingest of N events from H hosts into the report store, then again with
only a few new events (the second run must cost in proportion to the new events).

What a run measures (wall clock from the first pull command to the last commit, plus the CPU
seconds of this process and of the hosts' side: the pull commands, and with ssh their sshd,
read from the lab's cgroup):

- ``--transport local`` (default): each host's spool is a directory here, and each chunk is
  pulled by running the real ``python3 agent.pyz pull`` through the product's local transport
  (edrfleet.fleet.transport.local, what ``ansible_connection: local`` uses), exactly the
  command ``edrfleet report`` runs over SSH; the frame is decoded and ingested by the real
  controller code (edrfleet.fleet.report.pull_hosts into a Store).  Only the SSH hop is left
  out.
- ``--transport ssh``: an N-host lab (netns + sshd per host, edrfleet.lab.netns) is brought
  up, the agent release is put on each host over SSH and the same pull runs over real SSH
  (Fabric/paramiko); the lab is removed at the end.

Spools are written beforehand with the agent's Spool class (rotating at --spool-max-bytes),
with ECS events shaped like the agent's (nested, ~1 000 bytes each); writing them is not timed.

With ``--db postgresql://…`` the same pulls also go into PostgreSQL (a scratch database
created on that server and dropped at the end), so both stores' figures print side by side.
Each pull prints the controller's CPU per host and per event (this process: SSH, decoding,
and for SQLite the inserts) and, for PostgreSQL on this machine, the server's CPU for the
connections (read from /proc: the inserts' JSON parsing happens there).

    .venv/bin/python bench/report.py                        # 1 000 000 events, 20 hosts, local
    .venv/bin/python bench/report.py --transport ssh --events 100000
    .venv/bin/python bench/report.py --db postgresql://edrfleet@/postgres?host=/tmp/pg
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edrfleet.agent import ecs  # noqa: E402
from edrfleet.agent.spool import MiB, Spool  # noqa: E402
from edrfleet.agent.status import Status, write_status  # noqa: E402
from edrfleet.fleet.deploy.release import build_release  # noqa: E402
from edrfleet.fleet.report.backends import is_postgres, open_store  # noqa: E402
from edrfleet.fleet.report.pull import pull_hosts  # noqa: E402
from edrfleet.fleet.report.store import Store  # noqa: E402
from edrfleet.fleet.report.summary import summarize  # noqa: E402
from edrfleet.fleet.report.view import FleetView, fleet_keys  # noqa: E402
from edrfleet.fleet.transport.local import LocalTransport  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
T0 = 1796101200.0  # 2026-12-01T05:00:00Z


@dataclass(frozen=True)
class LocalHost:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)


def make_event(host: str, k: int, i: int) -> dict:
    ts = T0 + i * 0.01
    action = ("blocked", "would_block", "logged")[i % 3]
    args = ["rm", "-rf", f"/tmp/edrfleet-canary-{i % 5000}"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 10**6:06d}Z"
    severity = ("critical", "high", "medium")[i % 3]
    return ecs.nest({
        "@timestamp": stamp, "ecs.version": ecs.ECS_VERSION,
        "event.id": f"b{k:03d}0000-{i * 1000 + 17:x}-{i % 32768:x}", "event.action": action,
        **{f"event.{k}": v for k, v in ecs.classify(action).items()},
        "event.severity": ecs.SEVERITY_SCORES[severity], "host.name": host,
        "agent.type": ecs.AGENT_TYPE, "agent.version": "0.1.0", "process.pid": i % 32768,
        "process.executable": "/usr/bin/rm", "process.name": "rm",
        "process.command_line": " ".join(args), "process.args": args, "process.args_count": 3,
        "process.working_directory": "/root", "process.parent.pid": 4242,
        "process.parent.name": "bash", "process.parent.executable": "/usr/bin/bash",
        "user.id": "0", "user.name": "root", "group.id": "0",
        "rule.id": f"rule-{i % 12}", "rule.name": f"rule-{i % 12}",
        "rule.description": "recursive delete of an edrfleet canary",
        "edrfleet.severity": severity, "edrfleet.backend": "sigkill",
        "edrfleet.policy_sha256": "5e" * 32, "edrfleet.as_executed": "/usr/bin/rm",
        "edrfleet.stage": "exec", "edrfleet.reason": "rule", "edrfleet.args_truncated": False,
        "edrfleet.args_bytes": 44, "edrfleet.unscanned": False, "edrfleet.fileless": False,
        "edrfleet.cgroup_id": 81234})


def write_spools(spools: dict[str, Path], nexts: dict[str, int], count: int,
                 max_bytes: int) -> int:
    """Append ``count`` events spread over the hosts; returns the bytes the spools hold."""
    total = 0
    names = list(spools)
    for k, name in enumerate(names):
        n = count // len(names) + (1 if k < count % len(names) else 0)
        first = nexts.get(name, 0)
        nexts[name] = first + n
        with Spool(str(spools[name]), max_bytes=max_bytes, keep=50) as s:
            for b in range(first, first + n, 5000):
                s.append([make_event(name, k, i) for i in range(b, min(b + 5000, first + n))])
            total += sum(p.stat().st_size for p in spools[name].iterdir())
        write_status(str(spools[name]), Status(state="enforcing", backend="sigkill",
                                               policy_sha256="5e" * 32))
    return total


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_cpu() -> float:
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ch.ru_utime + ch.ru_stime


HOST_CPU = children_cpu  # ssh: the lab's cgroup (sshd and the pull commands under it)


def server_cpu(store: Store) -> float | None:
    """CPU seconds of the PostgreSQL backends serving this run's scratch database (its
    reader's and writers' connections); None: SQLite, or a server on another machine."""
    if not is_postgres(store.location):
        return None
    total = 0.0
    for (pid,) in store.query("SELECT pid FROM pg_stat_activity "
                              "WHERE datname = current_database()"):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime, HOST_CPU()


def timed_pull(hosts, store: Store, connect, forks: int, label: str, new: int) -> float:
    s0 = server_cpu(store)
    c0, w0 = cpu(), time.perf_counter()
    results = pull_hosts(hosts, store, connect, forks=forks)
    wall = time.perf_counter() - w0
    c1 = cpu()
    s1 = server_cpu(store)
    bad = [r for r in results.values() if not r.ok]
    if bad:
        sys.exit(f"bench: {bad[0].host}: {bad[0].error}")
    got = sum(r.inserted for r in results.values())
    chunks = sum(r.chunks for r in results.values())
    if got != new:
        sys.exit(f"bench: {label}: stored {got} new events, expected {new}")
    per = f"{wall / got * 1e6:6.2f} us/event" if got else "      -      "
    print(f"{label:<28} {got:>9} events {wall:8.2f} s wall  {per}  {chunks:>4} pulls  "
          f"cpu: controller {c1[0] - c0[0]:6.2f} s, hosts {c1[1] - c0[1]:6.2f} s; "
          f"peak RSS {rss_mib():.0f} MiB")
    ctl = c1[0] - c0[0]
    db = f"; database server {s1 - s0:6.2f} s" if s0 is not None and s1 is not None else ""
    per_event = f", {ctl / got * 1e6:.1f} us an event" if got else ""
    print(f"{'':<28} controller cpu {ctl / len(hosts) * 1e3:.1f} ms a host{per_event}{db}")
    return wall


@contextmanager
def scratch_database(server: str):
    """A new database on ``server`` (a postgresql:// URI) for this run; dropped at the end."""
    import psycopg

    name = f"edrfleet_bench_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def open_stores(work: Path, server: str | None):
    """name -> an empty store: SQLite, and PostgreSQL if ``server`` names one."""
    with ExitStack() as stack:
        stores: dict[str, Store] = {"sqlite": stack.enter_context(open_store(work / "r.db"))}
        if server is not None:
            uri = stack.enter_context(scratch_database(server))
            stores["postgresql"] = stack.enter_context(open_store(uri))
        yield stores


def store_mib(store: Store) -> float:
    if is_postgres(store.location):
        return store.query("SELECT pg_database_size(current_database())")[0][0] / MiB
    return os.path.getsize(store.location) / MiB


def local_fleet(work: Path, n: int):
    install = work / "install"
    (install / "current").mkdir(parents=True)
    (install / "current" / "agent.pyz").write_bytes(build_release().files["agent.pyz"])
    hosts = [LocalHost(f"bench{k:02d}", {"edrfleet_python": SYSTEM_PYTHON,
                                         "edrfleet_install_dir": str(install),
                                         "edrfleet_spool_dir": str(work / f"bench{k:02d}")})
             for k in range(n)]
    return hosts, (lambda h: LocalTransport(h.name)), (lambda: None)


def ssh_fleet(work: Path, n: int):
    from edrfleet.agent.run import cgroup2_root
    from edrfleet.fleet.inventory.load import load_inventory
    from edrfleet.fleet.report.pull import connect_for
    from edrfleet.fleet.transport.ssh import SshTransport
    from edrfleet.lab import netns as lab

    global HOST_CPU
    labdir = work / "lab"
    t = time.perf_counter()
    inv = lab.up(n, labdir, log=lambda _m: None)
    print(f"lab up: {n} hosts in {time.perf_counter() - t:.1f} s (not timed below)")
    cpu_stat = cgroup2_root() / lab.Lab.load(labdir).cgroup.lstrip("/") / "cpu.stat"

    def lab_cpu() -> float:  # sshd (crypto) and the pull commands on every lab host
        for line in cpu_stat.read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        return 0.0

    HOST_CPU = lab_cpu
    inventory = load_inventory(inv)
    hosts = inventory.select(None)
    rel = build_release()
    for h in hosts:
        d = f"{h.vars['edrfleet_install_dir']}/releases/{rel.id}"
        with SshTransport(h, inv.parent) as tr:
            tr.run(["mkdir", "-p", d])
            tr.put(rel.files["agent.pyz"], f"{d}/agent.pyz")
            tr.run(["ln", "-sfn", f"releases/{rel.id}",
                    f"{h.vars['edrfleet_install_dir']}/current"])
    return hosts, connect_for(inventory), (lambda: lab.down(labdir, log=lambda _m: None))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--hosts", type=int, default=20)
    p.add_argument("--new", type=int, nargs="+", default=[1000, 10000],
                   help="new events for the incremental runs (default 1000 10000)")
    p.add_argument("--forks", type=int, default=20)
    p.add_argument("--transport", choices=("local", "ssh"), default="local")
    p.add_argument("--spool-max-bytes", type=int, default=8 * MiB)
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    p.add_argument("--db", default=None, metavar="URI",
                   help="a PostgreSQL server (postgresql://…) to fill besides SQLite, in a "
                        "scratch database of its own")
    args = p.parse_args()
    if args.transport == "ssh" and os.geteuid() != 0:
        sys.exit("bench: --transport ssh needs root (network namespaces)")
    if args.db is not None and not is_postgres(args.db):
        sys.exit("bench: --db takes a postgresql:// URI (SQLite always runs)")
    work = Path(tempfile.mkdtemp(prefix="edrfleet-bench-report-", dir=args.workdir))
    cleanup = None
    stack = ExitStack()
    try:
        hosts, connect, cleanup = (ssh_fleet if args.transport == "ssh" else local_fleet)(
            work, args.hosts)
        spools = {h.name: Path(h.vars["edrfleet_spool_dir"]) for h in hosts}
        t = time.perf_counter()
        nexts: dict[str, int] = {}
        size = write_spools(spools, nexts, args.events, args.spool_max_bytes)
        print(f"spools: {args.events} events, {size / MiB:.0f} MiB on {args.hosts} hosts, "
              f"written in {time.perf_counter() - t:.1f} s (not timed); transport "
              f"{args.transport}, forks {args.forks}; peak RSS so far {rss_mib():.0f} MiB")
        stores = stack.enter_context(open_stores(work, args.db))
        first: dict[str, float] = {}
        for name, store in stores.items():
            first[name] = timed_pull(hosts, store, connect, args.forks,
                                     f"{name}: run 1 (all events)", args.events)
            print(f"  -> {args.events / first[name]:,.0f} events/s; target <= 10 s for "
                  "1 000 000")
            timed_pull(hosts, store, connect, args.forks, f"{name}: run 2 (nothing new)", 0)
        written = args.events
        for n in args.new:
            write_spools(spools, nexts, n, args.spool_max_bytes)
            written += n
            for name, store in stores.items():
                timed_pull(hosts, store, connect, args.forks, f"{name}: run (+{n} new)", n)
        for name, store in stores.items():
            if store.count() != written:
                sys.exit(f"bench: {name} holds {store.count()} events, {written} were written")
            t, c = time.perf_counter(), time.process_time()
            # by inventory name, as run_report reads it (the store keys hosts by identity)
            summarize(FleetView(store, fleet_keys(store, list(spools))), list(spools))
            wall, spent = time.perf_counter() - t, time.process_time() - c
            print(f"{name}: summary over the whole store ({written} events): {wall:.2f} s "
                  f"wall, {spent:.2f} s cpu; store {store_mib(store):.0f} MiB; controller "
                  f"peak RSS {rss_mib():.0f} MiB")
        print("first pull of " + ", ".join(f"{args.events:,} events into {name}: "
                                            f"{wall:.2f} s" for name, wall in first.items()))
    finally:
        stack.close()
        if cleanup is not None:
            cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
