"""The qemu VM lab's command line: build the image, boot or stop VMs, run the smoke.

    python -m edrfleet.lab.vm build | up [-n N] [--workdir D] | down [--workdir D] | smoke

It lives here, not in ``qemu``, because the smoke uses qemu's VMs: qemu dispatching to the smoke
would make the two modules import each other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edrfleet.lab.vm.qemu import (
    DEFAULT_WORKDIR,
    VmError,
    boot,
    build_image,
    load_handles,
    ssh_argv,
    stop,
)
from edrfleet.lab.vm.smoke import smoke


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edrfleet.lab.vm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or find cached) the image; print its directory")
    up = sub.add_parser("up", help="boot VMs and wait for SSH")
    up.add_argument("-n", type=int, default=1)
    down = sub.add_parser("down", help="stop the VMs recorded in WORKDIR/vms.json")
    for p in (up, down):
        p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    sub.add_parser("smoke", help="build, boot one VM, prove BPF LSM denies a canary")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            print(build_image().dir)
        elif a.cmd == "up":
            stop(load_handles(a.workdir))
            for h in boot(build_image(), a.n, a.workdir):
                print(" ".join(ssh_argv(h)))
        elif a.cmd == "down":
            stop(load_handles(a.workdir))
            (a.workdir / "vms.json").unlink(missing_ok=True)
        else:
            return smoke()
    except VmError as e:
        print(f"vm: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
