"""Events and stores for the report unit tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from edrfleet.agent import ecs
from edrfleet.fleet.report.backends import open_store
from edrfleet.fleet.report.store import Store

T0 = datetime(2026, 12, 1, 5, 0, tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def event(eid: str, *, ts: float = T0, action: str = "blocked", rule: str = "r1",
          severity: str = "high", cmd: str = "rm -rf /tmp/edrfleet-canary-1",
          host: str = "web1", fields: dict | None = None) -> dict:
    """An event; ``fields``: more of them by dotted ECS name (``{"user.name": "root"}``)."""
    return ecs.nest({"@timestamp": iso(ts), "event.id": eid, "event.action": action,
                     "host.name": host, "rule.id": rule, "edrfleet.severity": severity,
                     "process.command_line": cmd, "process.args": cmd.split(" "),
                     **(fields or {})})


def line(e: dict) -> str:
    return json.dumps(e, ensure_ascii=False, separators=(",", ":"))


def store_with(where: Path | str, per_host: dict[str, list[dict]]) -> Store:
    """A store holding ``per_host``'s events: ``where`` is a directory (a SQLite file in it)
    or the store's location (a file path or a postgresql:// URI, as tests' store_db)."""
    store = open_store(where / "report.db" if isinstance(where, Path) else where)
    for host, events in per_host.items():
        store.ingest(host, [line(e) for e in events], cursor={"inode": 1, "offset": 1},
                     status={"state": "enforcing", "backend": "sigkill",
                             "policy_sha256": "ab" * 32, "version": "0.1.0"}, lost=False)
    return store
