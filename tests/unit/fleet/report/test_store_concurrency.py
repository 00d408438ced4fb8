"""Two controllers filling one store at the same time (issue 15: several controllers, one
PostgreSQL): disjoint shards and shared hosts, twice; the store must equal the spools.

Each controller is its own process running the real pull loop (pull_hosts) into its own
connection; the host side is the agent's own pull function called in that process (what
``agent.pyz pull`` runs over SSH), so the two race on the store rather than on starting
a subprocess per chunk.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edrfleet.agent.pull import pull as agent_pull
from edrfleet.agent.spool import Spool
from edrfleet.fleet.report.backends import open_store
from edrfleet.fleet.report.pull import pull_hosts
from tests.unit.helpers.report_helpers import event

NAMES = ("a", "b", "c", "d")
SHARDS = (("a", "b", "c"), ("b", "c", "d"))  # a, d: one controller each; b, c: both at once
PER_ROUND = 300


@dataclass(frozen=True)
class Host:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Out:
    rc: int
    stdout: bytes
    stderr: bytes


class InProcess:
    """Answers the pull command with the agent's pull function, here."""

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, argv: Sequence[str], *, input=None, timeout=60, check=True) -> Out:
        opt = dict(zip(argv[3::2], argv[4::2], strict=True))  # after python, agent.pyz, pull
        return Out(0, agent_pull(opt["--spool"], json.loads(opt["--cursor"]),
                                 int(opt["--max-bytes"])), b"")


def controller(db: str, hosts: list[Host], barrier: Any, results: Any) -> None:
    store = open_store(db)
    barrier.wait(timeout=120)  # both connected: start pulling together
    res = pull_hosts(hosts, store, lambda _h: InProcess(), forks=len(hosts), max_bytes=2000)
    results.put({h: (r.ok, r.error, r.inserted) for h, r in res.items()})
    store.close()


def ids(host: str, n: int) -> list[str]:
    return sorted(f"{host}-{i:05d}" for i in range(n))


def test_two_controllers_at_once_lose_and_double_nothing(store_db: str, tmp_path: Path):
    hosts = {n: Host(n, {"edrfleet_spool_dir": str(tmp_path / n)}) for n in NAMES}
    written = dict.fromkeys(NAMES, 0)
    ctx = mp.get_context("spawn")
    open_store(store_db).close()  # created once, so neither controller waits on the schema
    for _round in range(2):
        for n in NAMES:  # ~45 KiB a round in 4000-byte files: rotations, ~20 chunks a host
            with Spool(str(tmp_path / n), max_bytes=4000, keep=1000) as s:
                s.append([event(f"{n}-{i:05d}", host=n, cmd=f"rm -rf /x{i}")
                          for i in range(written[n], written[n] + PER_ROUND)])
            written[n] += PER_ROUND
        barrier, results = ctx.Barrier(len(SHARDS)), ctx.Queue()
        procs = [ctx.Process(target=controller,
                             args=(store_db, [hosts[n] for n in shard], barrier, results))
                 for shard in SHARDS]
        for p in procs:
            p.start()
        got = [results.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert all(ok for g in got for ok, _err, _n in g.values()), got
        # every new event stored by exactly one of the two
        assert {n: sum(g[n][2] for g in got if n in g) for n in NAMES} == dict.fromkeys(
            NAMES, PER_ROUND)
        with open_store(store_db) as store:
            assert store.count() == sum(written.values())
            rows = store.host_rows()
            for n in NAMES:
                assert sorted(r[0] for r in store.event_rows(n)) == ids(n, written[n])
                assert rows[n]["events"] == written[n] and rows[n]["lost"] == 0
            # the cursors ended at the spools' ends: none was set back by the slower one
            again = pull_hosts(list(hosts.values()), store, lambda _h: InProcess())
            assert [(r.ok, r.lines) for r in again.values()] == [(True, 0)] * len(NAMES)


def test_a_controller_overtaken_mid_pull_goes_on_from_the_other_ones_cursor(store_db, tmp_path):
    """While one chunk's reply is on its way, another controller pulls the whole host: the
    late chunk's events are ignored, its cursor never overwrites the other's (never back),
    and the loop goes on from the other's cursor."""
    host = Host("w", {"edrfleet_spool_dir": str(tmp_path / "w")})
    with Spool(str(tmp_path / "w"), max_bytes=4000, keep=1000) as s:
        s.append([event(f"w-{i:05d}", host="w") for i in range(100)])
    overtaken = []

    class Overtaken(InProcess):
        def run(self, argv, **kw) -> Out:
            out = super().run(argv, **kw)
            if not overtaken:
                with open_store(store_db) as other:
                    got = pull_hosts([host], other, lambda _h: InProcess())["w"]
                overtaken.append(got.inserted)
            return out

    store = open_store(store_db)
    cursors = []
    ingest = store.ingest

    def recording(*a, **kw):
        got = ingest(*a, **kw)
        cursors.append(store.cursor("w"))
        return got

    store.ingest = recording  # type: ignore[method-assign]
    r = pull_hosts([host], store, lambda _h: Overtaken(), max_bytes=2000)["w"]
    assert r.ok and overtaken == [100] and r.inserted == 0 and r.ignored > 0
    assert cursors and all(c == cursors[-1] for c in cursors), cursors
    assert store.count() == 100 and store.host_rows()["w"]["events"] == 100
    assert pull_hosts([host], store, lambda _h: InProcess())["w"].lines == 0
