"""edrfleet uninstall, its real script run here on a tmp layout (no agent running): the spool
is kept unless purged, a failing or unreachable host is a result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edrfleet.fleet.deploy.uninstall import fleet_uninstall
from edrfleet.fleet.transport.local import LocalTransport

DIRS = ("install", "config", "spool", "run")


@dataclass(frozen=True)
class Host:
    name: str
    vars: dict = field(default_factory=dict)


def installed(root: Path, name: str) -> Host:
    hv = {}
    for d in DIRS:
        p = root / name / d
        p.mkdir(parents=True)
        (p / "file").write_text(d)
        hv[f"edrfleet_{d}_dir"] = str(p)
    return Host(name, hv)


def local(host, _inventory_dir):
    return LocalTransport(host.name)


def test_uninstall_keeps_the_spool_and_purge_removes_it(tmp_path: Path) -> None:
    hosts = [installed(tmp_path, "a"), installed(tmp_path, "b")]
    done: list[str] = []
    results = fleet_uninstall(tmp_path, hosts, connect=local,
                              on_done=lambda h, r: done.append(h.name))
    assert [(r.name, r.status, r.message) for r in results] == [
        ("a", "changed", "removed (spool kept)"), ("b", "changed", "removed (spool kept)")]
    assert sorted(done) == ["a", "b"]
    for name in ("a", "b"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["spool"]
    results = fleet_uninstall(tmp_path, hosts, purge=True, connect=local)
    assert [r.message for r in results] == ["removed (spool too)"] * 2
    assert all(list((tmp_path / n).iterdir()) == [] for n in ("a", "b"))


class Refusing(LocalTransport):
    """A host whose uninstall script fails, saying why as the script does."""

    def run(self, argv, **kw):
        return super().run(["sh", "-c", "echo result=failed; echo error=boom; exit 1"], **kw)


def test_a_failing_or_unreachable_host_does_not_stop_the_others(tmp_path: Path) -> None:
    good, bad = installed(tmp_path, "good"), installed(tmp_path, "bad")
    down = Host("down", {})

    def connect(host, inventory_dir):
        if host.name == "down":
            raise ConnectionError("down: cannot connect: refused")
        if host.name == "bad":
            return Refusing(host.name)
        return local(host, inventory_dir)

    by = {r.name: r for r in fleet_uninstall(tmp_path, [good, bad, down], connect=connect)}
    assert (by["good"].status, by["bad"].status, by["down"].status) == \
        ("changed", "failed", "unreachable")
    assert by["bad"].message == "boom" and "refused" in by["down"].message
    assert (tmp_path / "bad" / "config" / "file").exists()
