"""One host's policy as `edrfleet deploy` would render it, without deploying anything.

``edrfleet policy render INVENTORY HOST`` prints it: the host's merged variables and, unless
told not to connect, the facts gathered from the host (over SSH, or here for
``ansible_connection: local``), through the same template and
compiler deploy uses, so what it shows is what deploy would send.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edrfleet.fleet.deploy.facts import HostPaths, gather_facts
from edrfleet.fleet.deploy.hostpolicy import CompileCache, HostPolicy, host_policy
from edrfleet.fleet.inventory.parse import InventoryError
from edrfleet.fleet.transport.connection import transport_for


def host_facts(host: Any, inventory_dir: Path, connect_timeout: float = 10.0) -> dict[str, Any]:
    """The facts of one host, over a connection of its own (Unreachable, RemoteError: it
    could not be asked)."""
    with transport_for(host, inventory_dir, connect_timeout=connect_timeout) as t:
        return gather_facts(t, HostPaths.from_vars(host.vars))


def preview_host_policy(inventory: Any, name: str, *, facts: bool = True,
                        connect_timeout: float = 10.0) -> HostPolicy:
    """Render, validate and compile the policy of host ``name`` of a loaded inventory; with
    ``facts=False`` the template sees ``edrfleet_facts = {}`` and nothing connects.

    Raises InventoryError (no such host), HostPolicyError (its policy does not compile), and
    the transport's errors when its facts cannot be gathered."""
    host = inventory.hosts.get(name)
    if host is None:
        raise InventoryError(f"no host {name!r}", source=str(inventory.path),
                             fix=f"one of {', '.join(list(inventory.hosts)[:10])}")
    host = inventory.for_use(host)  # its templated values, as deploy sees them
    gathered = (host_facts(host, inventory.base_dir, connect_timeout)
                if facts else None)
    return host_policy(CompileCache(), dict(host.vars), host.name, gathered, tuple(host.groups))
