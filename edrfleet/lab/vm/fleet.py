"""The VM lab fleet: qemu guests of one or several Debian releases, and an inventory for them.

``up`` builds (or finds cached) each release's image, all in parallel, boots every guest at once
(edrfleet/lab/vm/qemu.py: overlays on the read-only images, SSH forwarded on 127.0.0.1 only, each
guest's host key pinned in ``known_hosts``) and writes ``inventory.yml`` beside them: group
``vms`` with one host per guest (named after it, which is also the guest's hostname: vm0, vm1, …
for a lab of one release, d11-vm0, d12-vm0, … for several), everything edrfleet and Ansible need
to reach it as root with the lab key and no blind trust; and one group per release (``debian_11``
…) naming its guests.  ``down`` stops the VMs by the pids ``up`` recorded and removes what it made
except the console logs.  ``edrfleet lab up --vm`` / ``lab down`` call these two.

    python -m edrfleet.lab.vm.fleet up [-n N] [--os debian-11,…] [--workdir D]   prints the
                                                                  inventory path
    python -m edrfleet.lab.vm.fleet down [--workdir D]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from edrfleet.lab.netns import LAB_CANARY_RULE
from edrfleet.lab.vm import qemu as vm
from edrfleet.lab.vm import releases
from edrfleet.lab.vm.releases import Release

GROUP = "vms"
BOOT_SECONDS_PER_EXTRA_GUEST = 150
INVENTORY = "inventory.yml"
VM_START_TIMEOUT = 600  # seconds deploy waits for a guest's agent to enforce
DEFAULT_WORKDIR = vm.DEFAULT_WORKDIR
_MADE = ("vms.json", INVENTORY, "known_hosts", "id_ed25519")  # what down removes, with overlays


def inventory_data(handles: list[vm.VmHandle], workdir: Path) -> dict:
    """The inventory for these VMs; paths relative to workdir (the inventory's directory) where
    edrfleet resolves them so, absolute where only ssh reads them.  A lab of several releases
    has one client key per release: then each host names its own."""
    keys = {h.key for h in handles}
    hosts: dict[str, dict[str, object]] = {}
    for h in handles:
        hosts[h.name] = {"ansible_host": "127.0.0.1", "ansible_port": h.port}
        if len(keys) > 1:
            hosts[h.name]["ansible_ssh_private_key_file"] = str(h.key)
    key = handles[0].key if handles else workdir / "id_ed25519"
    known = handles[0].known_hosts if handles else workdir / "known_hosts"
    group_vars: dict[str, object] = {"ansible_user": "root"}
    if len(keys) <= 1:
        group_vars["ansible_ssh_private_key_file"] = str(key)
    group_vars.update({
        "edrfleet_known_hosts_file": str(known.relative_to(workdir)),
        "edrfleet_service_manager": "systemd",
        # BCC compiles the program inside a software-emulated guest: 8-25 s on a quiet
        # machine, 94-169 s with three guests booting at load ~17, past deploy's 90 s default.
        "edrfleet_start_timeout": VM_START_TIMEOUT,
        "edrfleet_extra_rules": [LAB_CANARY_RULE],
    })
    children: dict[str, dict] = {GROUP: {"hosts": hosts, "vars": group_vars}}
    for h in handles:
        group = releases.RELEASES[h.os].group if h.os in releases.RELEASES else h.os
        children.setdefault(group, {"hosts": {}})["hosts"][h.name] = None
    return {"all": {"children": children}}


def write_inventory(handles: list[vm.VmHandle], workdir: Path) -> Path:
    path = workdir / INVENTORY
    text = yaml.safe_dump(inventory_data(handles, workdir), sort_keys=False)
    path.write_text(f"# VM lab inventory, written by edrfleet/lab/vm/fleet.py\n{text}")
    return path


def build_images(rels: list[Release], *,
                 log: Callable[[str], None] = print) -> dict[str, vm.ImageInfo]:
    """Each release's image, built in parallel where not cached (each release has its own lock
    and cache directory; debootstrap mostly waits on the mirror)."""
    with ThreadPoolExecutor(max_workers=len(rels) or 1) as pool:
        futures = {r.name: pool.submit(vm.build_image, release=r, log=log) for r in rels}
        return {name: f.result() for name, f in futures.items()}


def guest_names(rels: list[Release], n: int) -> list[tuple[Release, str]]:
    """vm0..vm{n-1} for one release (as the lab always named them), d11-vm0 … for several."""
    if len(rels) == 1:
        return [(rels[0], f"vm{i}") for i in range(n)]
    return [(r, f"{r.prefix}vm{i}") for r in rels for i in range(n)]


def up(n: int | None = None, workdir: Path = DEFAULT_WORKDIR, *, timeout: float = 300,
       smp: int = 2, oses: str = releases.DEFAULT,
       log: Callable[[str], None] = print) -> Path:
    """Boot n VMs per release of ``oses`` (comma-separated; default one release: debian-12; n
    defaults to 1), building images first where the recipe has none, and return the inventory.

    VMs an earlier ``up`` left in workdir are stopped first.  Raises vm.VmError with the console
    tail of a VM that did not boot; none of the VMs started here is left running then."""
    rels = releases.parse(oses)
    n = 1 if n is None else n
    if n < 1:
        raise ValueError(f"--hosts {n}: a VM lab needs at least one host")
    workdir = workdir.resolve()
    down(workdir)
    images = build_images(rels, log=log)
    plan = [(images[r.name], name) for r, name in guest_names(rels, n)]
    # two vCPUs: a second thread really runs beside an exec (tests/vm/test_lsm_race.py).  The
    # boot wait grows with the number of guests: TCG guests share the same host cores (three
    # booting at once took up to 284 s at load ~15, one alone 99 s).
    wait = timeout + BOOT_SECONDS_PER_EXTRA_GUEST * (len(plan) - 1)
    handles = vm.boot_plan(plan, workdir, timeout=wait, smp=smp, log=log)
    return write_inventory(handles, workdir)


def down(workdir: Path = DEFAULT_WORKDIR) -> None:
    """Stop the VMs recorded in workdir by pid; remove their overlays, key, inventory."""
    workdir = workdir.resolve()
    vm.stop(vm.load_handles(workdir))
    if not workdir.is_dir():
        return
    for name in _MADE:
        (workdir / name).unlink(missing_ok=True)
    for key in workdir.glob("id_ed25519.*"):  # one per release in a lab of several
        key.unlink()
    for disk in workdir.glob("*.qcow2"):
        disk.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edrfleet.lab.vm.fleet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="boot VMs, write the inventory, print its path")
    p_up.add_argument("-n", "--hosts", type=int, default=1, help="guests per release")
    p_up.add_argument("--os", default=releases.DEFAULT,
                      help=f"releases, comma-separated (of {', '.join(releases.RELEASES)})")
    p_up.add_argument("--timeout", type=float, default=300, help="boot wait per lab (s)")
    p_down = sub.add_parser("down", help="stop the VMs of WORKDIR")
    for p in (p_up, p_down):
        p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "up":
            # progress to stderr: stdout is the inventory path alone, for scripts
            print(up(a.hosts, a.workdir, timeout=a.timeout, oses=a.os,
                     log=lambda m: print(m, file=sys.stderr)))
        else:
            down(a.workdir)
    except (vm.VmError, ValueError, OSError) as e:
        print(f"vm_lab: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
