"""The store seen by inventory names: what the summary and formats read for one fleet.

The store keys hosts by identity (:func:`edrfleet.fleet.report.store.host_key`: machine id and
inventory name), so that two fleets whose hosts share names stay apart.  A report is about one
inventory, whose names each mean one identity: the one this report pulled, or, for a host not
pulled now (``--no-pull``, unreachable), the one last pulled under that name.  This view
translates names to those keys on the way in and keys back to names on the way out, so code
reading a summary never sees a key.

Example::

    >>> view = FleetView(store, {"web1": host_key("web1", "0f3c…")})
    >>> view.counts(["web1"], None, 0.0, 60.0)[0][0]
    'web1'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from edrfleet.fleet.report.store import EventFilter, Store, host_key


def fleet_keys(store: Store, names: Sequence[str],
               pulled: Mapping[str, str] | None = None) -> dict[str, str]:
    """name -> key for ``names``: the machine id ``pulled`` gives (this report's pull), else
    the one last pulled under the name, else none known (an empty id)."""
    pulled = pulled or {}
    out = {}
    for name in names:
        machine_id = pulled.get(name)
        if machine_id is not None:
            out[name] = host_key(name, machine_id)
        else:
            out[name] = store.latest_key(name) or host_key(name, "")
    return out


class FleetView:
    """The read side of a :class:`Store` for the hosts ``keys`` names (name -> key)."""

    def __init__(self, store: Store, keys: Mapping[str, str]) -> None:
        self.store = store
        self.location = store.location
        self._keys = dict(keys)
        self._names = {k: n for n, k in self._keys.items()}

    def _to_keys(self, hosts: Sequence[str]) -> list[str]:
        return [self._keys[h] for h in hosts if h in self._keys]

    def _named(self, rows: list[tuple[Any, ...]], col: int) -> list[tuple[Any, ...]]:
        return [(*r[:col], self._names.get(r[col], r[col]), *r[col + 1:]) for r in rows]

    def count(self) -> int:
        return self.store.count()

    def time_range(self) -> tuple[float | None, float | None]:
        return self.store.time_range()

    def host_rows(self) -> dict[str, dict[str, Any]]:
        rows = self.store.host_rows()
        return {name: rows[key] for name, key in self._keys.items() if key in rows}

    def counts(self, hosts: Sequence[str], since: float | None, start: float,
               size: float) -> list[tuple[Any, ...]]:
        return self._named(self.store.counts(self._to_keys(hosts), since, start, size), 0)

    def top_commands(self, hosts: Sequence[str], since: float | None, action: str,
                     limit: int) -> list[tuple[Any, ...]]:
        return self.store.top_commands(self._to_keys(hosts), since, action, limit)

    def raw_events(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(inventory name, event id) -> raw line, read by the name's key."""
        keyed = [(self._keys[h], eid) for h, eid in refs if h in self._keys]
        return {(self._names[k], eid): raw
                for (k, eid), raw in self.store.raw_events(keyed).items()}

    def events(self, where: EventFilter, limit: int | None) -> list[tuple[Any, ...]]:
        hosts = list(self._keys.values()) if where.hosts is None else self._to_keys(where.hosts)
        return self._named(self.store.events(replace(where, hosts=hosts), limit), 1)

    def latest_per_host(self, hosts: Sequence[str], since: float | None,
                        per_host: int) -> list[tuple[Any, ...]]:
        return self._named(self.store.latest_per_host(self._to_keys(hosts), since, per_host), 1)

    def event_rows(self, host: str | None = None) -> list[tuple[Any, ...]]:
        if host is None:
            keys = set(self._names)
            return self._named([r for r in self.store.event_rows() if r[1] in keys], 1)
        if host not in self._keys:
            return []
        return self._named(self.store.event_rows(self._keys[host]), 1)
