"""``edrfleet report``: pull new events from the hosts into the central store, summarize.

Modules: ``store`` (the store protocol, ``open_store``), its backends ``sqlite_store``
(embedded, the default) and ``postgres_store`` (several controllers), ``fields`` (which event
field fills which column), ``pull`` (hosts over Transport, bounded pool),
``summary`` (counts per host / rule, top blocked and would-block, timeline), ``formats`` and
``html_report`` (table, json, csv, html); ``queries`` (the command patterns and search the
backends share), ``events`` and ``event_formats`` (``edrfleet events``: the stored events
listed), ``times`` (``--since``, ISO times).  The host
side is ``edrfleet.agent.pull`` (``agent.pyz pull``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edrfleet.fleet.report.backends import open_store
from edrfleet.fleet.report.events import EventFilter, EventList, list_events
from edrfleet.fleet.report.pull import DEFAULT_FORKS, HostPull, connect_for, pull_hosts
from edrfleet.fleet.report.store import DEFAULT_DB, Store
from edrfleet.fleet.report.summary import summarize


@dataclass
class Report:
    summary: dict[str, Any]
    pulls: dict[str, HostPull]  # empty when not pulled

    @property
    def failed(self) -> list[HostPull]:
        return [p for p in self.pulls.values() if not p.ok]


@dataclass
class Pulled:
    """A store after the selected hosts were pulled into it (see :func:`pulled`)."""

    store: Store
    hosts: list[str]  # inventory names, in inventory order
    pulls: dict[str, HostPull]  # empty when not pulled

    @property
    def failed(self) -> list[HostPull]:
        return [p for p in self.pulls.values() if not p.ok]


@contextmanager
def pulled(inventory_path: str | Path | Sequence[str], *, limit: str | None = None,
           db: str | Path = DEFAULT_DB, forks: int = DEFAULT_FORKS, pull: bool = True,
           connect_timeout: float = 10, on_start: Callable[[int], None] | None = None,
           on_done: Callable[[HostPull], None] | None = None) -> Iterator[Pulled]:
    """Load the inventory, open the store, pull the selected hosts into it (unless ``pull``
    is False): what ``report`` and ``events`` do before they read the store.
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
        yield Pulled(store, [h.name for h in hosts], pulls)


def run_report(inventory_path: str | Path | Sequence[str], *, limit: str | None = None,
               db: str | Path = DEFAULT_DB, since: float | None = None,
               forks: int = DEFAULT_FORKS, pull: bool = True, connect_timeout: float = 10,
               on_start: Callable[[int], None] | None = None,
               on_done: Callable[[HostPull], None] | None = None,
               latest_events: int = 0, per_host_events: int = 0) -> Report:
    """:func:`pulled`, then summarize (``latest_events``, ``per_host_events``: see
    :func:`edrfleet.fleet.report.summary.summarize`)."""
    with pulled(inventory_path, limit=limit, db=db, forks=forks, pull=pull,
                connect_timeout=connect_timeout, on_start=on_start, on_done=on_done) as p:
        summary = summarize(p.store, p.hosts, since=since, pulls=p.pulls,
                            latest_events=latest_events, per_host_events=per_host_events)
    return Report(summary, p.pulls)


@dataclass
class Investigation:
    events: EventList
    pulls: dict[str, HostPull]  # empty when not pulled

    @property
    def failed(self) -> list[HostPull]:
        return [p for p in self.pulls.values() if not p.ok]


def run_events(inventory_path: str | Path | Sequence[str], *, limit: str | None = None,
               db: str | Path = DEFAULT_DB, rule: str | None = None,
               action: str | None = None, since: float | None = None,
               search: str | None = None, max_events: int | None = 100,
               forks: int = DEFAULT_FORKS, pull: bool = True, connect_timeout: float = 10,
               on_start: Callable[[int], None] | None = None,
               on_done: Callable[[HostPull], None] | None = None) -> Investigation:
    """:func:`pulled`, then the selected hosts' events that match every filter given,
    newest first, at most ``max_events`` (None: all).  The filter is checked before any
    host is contacted."""
    where = EventFilter(None, since=since, rule=rule, action=action, search=search)
    with pulled(inventory_path, limit=limit, db=db, forks=forks, pull=pull,
                connect_timeout=connect_timeout, on_start=on_start, on_done=on_done) as p:
        events = list_events(p.store, replace(where, hosts=p.hosts), max_events)
    return Investigation(events, p.pulls)
