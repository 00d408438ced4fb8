"""The VM lab fleet: N qemu guests from the cached image, and an inventory to deploy to them.

``up`` boots the VMs (edrfleet/lab/vm/qemu.py: overlays on the read-only image, SSH forwarded on
127.0.0.1 only, the guest host key pinned in ``known_hosts``) and writes ``inventory.yml``
beside them: group ``vms``, one host per guest (named after it: vm0, vm1, …, which is also the
guest's hostname), everything edrfleet and Ansible need to reach it as root with the lab key and
no blind trust.  ``down`` stops the VMs by the pids ``up`` recorded and removes what it made
except the console logs.  ``edrfleet lab up --vm`` / ``lab down`` call these two.

    python -m edrfleet.lab.vm.fleet up [-n N] [--workdir D]     prints the inventory path
    python -m edrfleet.lab.vm.fleet down [--workdir D]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from edrfleet.lab.netns import LAB_CANARY_RULE
from edrfleet.lab.vm import qemu as vm

GROUP = "vms"
INVENTORY = "inventory.yml"
DEFAULT_WORKDIR = vm.DEFAULT_WORKDIR
_MADE = ("vms.json", INVENTORY, "known_hosts", "id_ed25519")  # what down removes, with overlays


def inventory_data(handles: list[vm.VmHandle], workdir: Path) -> dict:
    """The inventory for these VMs; paths relative to workdir (the inventory's directory) where
    edrfleet resolves them so, absolute where only ssh reads them."""
    hosts = {h.name: {"ansible_host": "127.0.0.1", "ansible_port": h.port} for h in handles}
    key = handles[0].key if handles else workdir / "id_ed25519"
    known = handles[0].known_hosts if handles else workdir / "known_hosts"
    group_vars = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "edrfleet_known_hosts_file": str(known.relative_to(workdir)),
        "edrfleet_service_manager": "systemd",
        "edrfleet_extra_rules": [LAB_CANARY_RULE],
    }
    return {"all": {"children": {GROUP: {"hosts": hosts, "vars": group_vars}}}}


def write_inventory(handles: list[vm.VmHandle], workdir: Path) -> Path:
    path = workdir / INVENTORY
    text = yaml.safe_dump(inventory_data(handles, workdir), sort_keys=False)
    path.write_text(f"# VM lab inventory, written by edrfleet/lab/vm/fleet.py\n{text}")
    return path


def up(n: int, workdir: Path = DEFAULT_WORKDIR, *, timeout: float = 300, smp: int = 2,
       log: Callable[[str], None] = print) -> Path:
    """Boot n VMs (building the image first if the recipe has none) and return the inventory.

    VMs an earlier ``up`` left in workdir are stopped first.  Raises vm.VmError with the console
    tail of a VM that did not boot; none of the VMs started here is left running then."""
    if n < 1:
        raise ValueError(f"--hosts {n}: a VM lab needs at least one host")
    workdir = workdir.resolve()
    down(workdir)
    # two vCPUs: a second thread really runs beside an exec (tests/vm/test_lsm_race.py)
    handles = vm.boot(vm.build_image(log=log), n, workdir, timeout=timeout, smp=smp, log=log)
    return write_inventory(handles, workdir)


def down(workdir: Path = DEFAULT_WORKDIR) -> None:
    """Stop the VMs recorded in workdir by pid; remove their overlays, key, inventory."""
    workdir = workdir.resolve()
    vm.stop(vm.load_handles(workdir))
    if not workdir.is_dir():
        return
    for name in _MADE:
        (workdir / name).unlink(missing_ok=True)
    for disk in workdir.glob("*.qcow2"):
        disk.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edrfleet.lab.vm.fleet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="boot VMs, write the inventory, print its path")
    p_up.add_argument("-n", "--hosts", type=int, default=1)
    p_up.add_argument("--timeout", type=float, default=300, help="boot wait per lab (s)")
    p_down = sub.add_parser("down", help="stop the VMs of WORKDIR")
    for p in (p_up, p_down):
        p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "up":
            # progress to stderr: stdout is the inventory path alone, for scripts
            print(up(a.hosts, a.workdir, timeout=a.timeout,
                     log=lambda m: print(m, file=sys.stderr)))
        else:
            down(a.workdir)
    except (vm.VmError, ValueError, OSError) as e:
        print(f"vm_lab: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
