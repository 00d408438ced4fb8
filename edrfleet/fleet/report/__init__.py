"""``edrfleet report``: pull new events from the hosts into the central store, summarize.

Modules: ``store`` (the store protocol, ``open_store``), its backends ``sqlite_store``
(embedded, the default) and ``postgres_store`` (several controllers), ``fields`` (which event
field fills which column), ``pull`` (hosts over Transport, bounded pool),
``summary`` (counts per host / rule, top blocked, timeline), ``formats`` and ``html_report``
(table, json, csv, html).  The host side is ``edrfleet.agent.pull`` (``agent.pyz pull``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edrfleet.fleet.report.backends import open_store
from edrfleet.fleet.report.pull import DEFAULT_FORKS, HostPull, connect_for, pull_hosts
from edrfleet.fleet.report.store import DEFAULT_DB
from edrfleet.fleet.report.summary import summarize


@dataclass
class Report:
    summary: dict[str, Any]
    pulls: dict[str, HostPull]  # empty when not pulled

    @property
    def failed(self) -> list[HostPull]:
        return [p for p in self.pulls.values() if not p.ok]


def run_report(inventory_path: str | Path, *, limit: str | None = None,
               db: str | Path = DEFAULT_DB, since: float | None = None,
               forks: int = DEFAULT_FORKS, pull: bool = True, connect_timeout: float = 10,
               on_start: Callable[[int], None] | None = None,
               on_done: Callable[[HostPull], None] | None = None) -> Report:
    """Load the inventory, pull the selected hosts (unless ``pull`` is False), summarize.
    ``on_start(number of hosts)`` and ``on_done(HostPull)`` let a caller show progress.

    Raises:
        ValueError: bad inventory, pattern or store (InventoryError, PatternError, ...).
        OSError: the inventory or the store cannot be read.
    """
    from edrfleet.fleet.inventory.load import load_inventory

    inventory = load_inventory(inventory_path)
    hosts = inventory.select(limit)
    with open_store(db) as store:
        pulls: dict[str, HostPull] = {}
        if pull:
            if on_start is not None:
                on_start(len(hosts))
            pulls = pull_hosts(hosts, store,
                               connect_for(inventory, connect_timeout=connect_timeout),
                               forks=forks, on_done=on_done)
        summary = summarize(store, [h.name for h in hosts], since=since, pulls=pulls)
    return Report(summary, pulls)
