"""``edrfleet uninstall``: one round trip per host, in the pool.

Uninstall stops the agent (supervisor or systemd), removes the unit, the release directories,
the config and the run dir.  The spool (events.jsonl, status.json, agent.log) is KEPT unless
``purge``: uninstalling the EDR must not destroy the evidence `edrfleet report` has not pulled
yet.  With ``purge`` nothing edrfleet made is left on the host.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edrfleet.fleet.deploy.facts import HostPaths
from edrfleet.fleet.deploy.hostscripts import parse_output, uninstall_script
from edrfleet.fleet.deploy.results import HostResult, Session, error_result
from edrfleet.fleet.transport.connection import connector
from edrfleet.fleet.transport.pool import DEFAULT_FORKS, run_pool


def fleet_uninstall(inventory_dir: Path, hosts: Sequence[Any], *, purge: bool = False,
                    forks: int = DEFAULT_FORKS,
                    connect: Callable[[Any, Path], Any] | None = None,
                    connect_timeout: float = 10,
                    on_done: Callable[[Any, HostResult], None] | None = None) -> list[HostResult]:
    connect = connect or connector(connect_timeout)

    def one(host: Any) -> HostResult:
        s = Session(host, started=time.monotonic())
        script = uninstall_script(HostPaths.from_vars(host.vars), host.name, purge)
        with connect(host, inventory_dir) as t:
            res = t.run_script(script, timeout=120, check=False)
        out = parse_output(res.stdout)
        if res.rc == 0 and out.get("result") == "ok":
            return s.finish("changed", "removed" + (" (spool too)" if purge else
                                                    " (spool kept)"))
        return s.finish("failed", out.get("error") or res.stderr.decode(errors="replace")[-300:])

    return run_pool(list(hosts), one, forks=forks,
                    on_error=lambda h, e: error_result(Session(h), e), on_done=on_done)
