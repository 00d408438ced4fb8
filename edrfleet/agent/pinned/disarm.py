"""``agent disarm --spool DIR``: the one way to end enforcement of the agent on that spool.

Killing the agent (any signal) or stopping its service leaves the pinned program in force
(edrfleet/agent/pins.py).  Disarm stops whoever would start the agent again (the supervisor of
``--run-dir``, the systemd unit), then the agent, then unpins every program of the spool's
bpffs directory: the kernel detaches each link as its last pin goes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess

from edrfleet.agent.pinned import pins


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spool", default="/var/lib/edrfleet",
                   help="the agent's spool: names its pinned state (default %(default)s)")
    p.add_argument("--run-dir", default="/run/edrfleet",
                   help="the supervisor's pidfile directory (default %(default)s)")
    p.add_argument("--unit", default="edrfleet-agent.service",
                   help="the systemd unit stopped first if active (default %(default)s)")


def _stop_managers(run_dir: str, unit: str) -> None:
    from edrfleet.agent.supervise import STOP_WAIT, _alive, _kill, supervisor_pid

    pid = supervisor_pid(run_dir)
    if pid:
        import signal
        import time

        _kill(pid, signal.SIGTERM)
        end = time.monotonic() + STOP_WAIT
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
    if shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
        active = subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False)
        if active.returncode == 0:
            subprocess.run(["systemctl", "stop", unit], check=False)


def main(args: argparse.Namespace) -> int:
    try:
        _stop_managers(args.run_dir, args.unit)
        removed = pins.disarm(args.spool)
    except OSError as exc:
        print(f"disarm: {exc}", flush=True)
        return 1
    for pdir in removed:
        print(f"unpinned {pdir}", flush=True)
    print("disarmed" if removed else "nothing pinned", flush=True)
    return 0
