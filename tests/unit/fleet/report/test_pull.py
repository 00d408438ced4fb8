"""edrfleet.fleet.report.pull: the controller's loop over hosts, chunks and cursors.

The transport here is the product's local one (edrfleet.fleet.transport.local): the real
``agent.pyz pull`` runs as a subprocess of this machine (the lab tier does the same over real
SSH); only the SSH hop is left out.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edrfleet.agent import ecs
from edrfleet.agent.spool import Spool
from edrfleet.fleet.deploy.release import build_release
from edrfleet.fleet.report.backends import open_store
from edrfleet.fleet.report.pull import pull_argv, pull_hosts
from edrfleet.fleet.report.store import Store, host_key
from edrfleet.fleet.transport.base import Result
from edrfleet.fleet.transport.local import LocalTransport


@dataclass(frozen=True)
class FakeHost:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)


class LocalRunner(LocalTransport):
    """The product's local transport; ``mangle`` may rewrite the reply (a connection cut
    mid-reply)."""

    def __init__(self, mangle: Callable[[Result], Result] | None = None) -> None:
        super().__init__()
        self.mangle = mangle

    def run(self, argv, **kw) -> Result:
        out = super().run(argv, **kw)
        return self.mangle(out) if self.mangle else out


@pytest.fixture(scope="module")
def install_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("install")
    (d / "current").mkdir()
    (d / "current" / "agent.pyz").write_bytes(build_release().files["agent.pyz"])
    return d


def machine_id(name: str) -> str:
    """Each fake host's own machine id (they all share this machine's /etc/machine-id)."""
    return hashlib.md5(name.encode()).hexdigest()


def key(name: str) -> str:
    return host_key(name, machine_id(name))


def make_host(tmp_path: Path, install_dir: Path, name: str, mid: str | None = None,
              spool: str = "spool") -> FakeHost:
    (tmp_path / name).mkdir(parents=True, exist_ok=True)
    id_file = tmp_path / name / f"machine-id-{mid or machine_id(name)}"
    id_file.write_text((mid or machine_id(name)) + "\n")
    return FakeHost(name, {"edrfleet_python": sys.executable,
                           "edrfleet_install_dir": str(install_dir),
                           "edrfleet_spool_dir": str(tmp_path / name / spool),
                           "edrfleet_machine_id_file": str(id_file)})


def ev(host: str, i: int) -> dict:
    return ecs.nest({"event.id": f"{host}-{i}", "event.action": "blocked", "host.name": host,
                     "@timestamp": "2026-12-01T05:00:00Z",
                     "process.command_line": f"rm -rf /x{i}"})


def stored_ids(store: Store, host: str) -> list[str]:
    return sorted(r[0] for r in store.event_rows(key(host)))


def expect(host: str, n: int) -> list[str]:
    return sorted(f"{host}-{i}" for i in range(n))


def test_argv_uses_the_host_paths_and_quotes_nothing_itself(tmp_path, install_dir) -> None:
    h = FakeHost("w", {"edrfleet_install_dir": "/opt/x/", "edrfleet_spool_dir": "/s p;rm"})
    argv = pull_argv(h, {"inode": 1, "offset": 2}, 99, timeout=30)
    # The host's timeout ends a hung pull there too; the reader is shipped in the argv.
    assert argv[:5] == ["timeout", "--kill-after=5", "30", "/usr/bin/python3", "-"]
    assert argv[5:] == ["--spool", "/s p;rm", "--cursor", '{"inode": 1, "offset": 2}',
                        "--max-bytes", "99", "--max-line", "65536", "--machine-id-file",
                        "/etc/machine-id", "--agent", "/opt/x/current/agent.pyz"]
    assert pull_argv(FakeHost("w"), None, 5)[-1] == "/opt/edrfleet/current/agent.pyz"


def test_hosts_are_pulled_in_chunks_and_again_only_for_new_events(tmp_path, install_dir,
        store_db):
    hosts = [make_host(tmp_path, install_dir, f"web{k}") for k in range(3)]
    spools = [Spool(h.vars["edrfleet_spool_dir"], max_bytes=2000, keep=100) for h in hosts]
    for h, s in zip(hosts, spools, strict=True):
        s.append([ev(h.name, i) for i in range(100)])
    store = open_store(store_db)
    runners: dict[str, LocalRunner] = {}

    def connect(h):
        return runners.setdefault(h.name, LocalRunner())

    res = pull_hosts(hosts, store, connect, forks=2, max_bytes=1500)
    assert all(r.ok for r in res.values()) and list(res) == ["web0", "web1", "web2"]
    assert res["web0"].inserted == 100 and res["web0"].chunks > 3
    for h, s in zip(hosts, spools, strict=True):
        s.append([ev(h.name, i) for i in range(100, 130)])  # rotates a few times more
    res2 = pull_hosts(hosts, store, connect, forks=2, max_bytes=1500)
    for h in hosts:
        assert (res2[h.name].inserted, res2[h.name].ignored) == (30, 0)
        assert stored_ids(store, h.name) == expect(h.name, 130)
    res3 = pull_hosts(hosts, store, connect)
    assert [r.chunks for r in res3.values()] == [1, 1, 1] and store.count() == 390


def test_an_unreachable_host_is_a_result_and_the_others_are_pulled(tmp_path, install_dir,
        store_db):
    hosts = [make_host(tmp_path, install_dir, n) for n in ("a", "down", "c")]
    for h in hosts:
        with Spool(h.vars["edrfleet_spool_dir"]) as s:
            s.append([ev(h.name, i) for i in range(5)])
    store = open_store(store_db)

    def connect(h):
        if h.name == "down":
            raise ConnectionRefusedError(111, "Connection refused")
        return LocalRunner()

    res = pull_hosts(hosts, store, connect)
    assert [r.ok for r in res.values()] == [True, False, True]
    assert "Connection refused" in res["down"].error
    assert stored_ids(store, "a") == expect("a", 5) and stored_ids(store, "down") == []
    assert store.host_rows()[host_key("down", "")]["last_error"] == res["down"].error


def test_a_reply_cut_short_fails_the_host_and_keeps_its_cursor(tmp_path, install_dir,
        store_db):
    h = make_host(tmp_path, install_dir, "w")
    s = Spool(h.vars["edrfleet_spool_dir"])
    s.append([ev("w", i) for i in range(10)])
    store = open_store(store_db)
    pull_hosts([h], store, lambda _h: LocalRunner())
    before = store.cursor(key("w"))
    s.append([ev("w", i) for i in range(10, 20)])

    def cut(out: Result) -> Result:
        return Result(out.rc, out.stdout[: len(out.stdout) // 2], out.stderr)

    r = pull_hosts([h], store, lambda _h: LocalRunner(cut))["w"]
    assert not r.ok and "FrameError" in r.error and "truncated" in r.error
    assert store.cursor(key("w")) == before and stored_ids(store, "w") == expect("w", 10)
    assert pull_hosts([h], store, lambda _h: LocalRunner())["w"].inserted == 10
    assert stored_ids(store, "w") == expect("w", 20)


def test_a_failing_remote_command_names_its_exit_and_stderr(tmp_path, install_dir) -> None:
    h = FakeHost("w", {"edrfleet_python": str(tmp_path / "no-python3"),
                       "edrfleet_spool_dir": str(tmp_path / "spool")})
    r = pull_hosts([h], open_store(tmp_path / "r.db"), lambda _h: LocalRunner())["w"]
    assert not r.ok and r.error.startswith("RuntimeError: pull exited 127:")
    assert "no-python3" in r.error


def test_pulls_run_in_parallel_up_to_forks(tmp_path, install_dir) -> None:
    hosts = [make_host(tmp_path, install_dir, f"h{k}") for k in range(6)]
    lock, live, peak = threading.Lock(), [0], [0]

    class Counting(LocalRunner):
        def run(self, argv, **kw):
            with lock:
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            try:
                return super().run(argv, **kw)
            finally:
                with lock:
                    live[0] -= 1

    res = pull_hosts(hosts, open_store(tmp_path / "r.db"), lambda _h: Counting(), forks=3)
    assert all(r.ok for r in res.values()) and 1 < peak[0] <= 3
    with pytest.raises(ValueError, match="--forks 0"):
        pull_hosts(hosts, open_store(tmp_path / "r2.db"), lambda _h: Counting(), forks=0)


def test_a_rotation_past_the_cursor_is_reported_as_lost(tmp_path, install_dir, store_db) -> None:
    h = make_host(tmp_path, install_dir, "w")
    s = Spool(h.vars["edrfleet_spool_dir"], max_bytes=300, keep=2)
    s.append([ev("w", 0)])
    store = open_store(store_db)
    assert not pull_hosts([h], store, lambda _h: LocalRunner())["w"].lost
    s.append([ev("w", i) for i in range(1, 40)])
    r = pull_hosts([h], store, lambda _h: LocalRunner())["w"]
    assert r.ok and r.lost and 0 < r.inserted < 39
    assert json.loads(json.dumps(store.host_rows()[key("w")]))["lost"] == 1
