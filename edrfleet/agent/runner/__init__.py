"""The running agent's parts (edrfleet/agent/run.py's Agent is made of them): bringing a
program into force (program.py), events from the kernel into the spool and status.json
(events.py), and the reload on SIGHUP (reload.py)."""

from __future__ import annotations

import sys


def log(msg: str) -> None:
    print(f"edrfleet-agent: {msg}", file=sys.stderr, flush=True)
