"""The filesystems exec opens are watched on, and the overlay mounts a process sees.

An exec through overlayfs (a container's root) runs an overlay inode: the kernel program keys
it by the overlay's device and inode (``mm->exe_file``), while fanotify reports the open of the
real file underneath (on 6.18 the backing file's open carries the exec permission event; the
overlay's own superblock lives in the container's mount namespace, which no agent-side path
names).  With its layers on one filesystem an overlay reports the real inode number, so the
overlay key of a protected real file is (overlay device, real inode), for each overlay of the
exec's mount namespace that has a layer on the real file's filesystem.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from edrfleet.agent.maps import kernel_dev

# filesystems nothing is executed from (or that fanotify refuses): not marked
PSEUDO = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "bpf", "debugfs", "tracefs", "securityfs", "devpts",
    "mqueue", "pstore", "configfs", "fusectl", "binfmt_misc", "autofs", "efivarfs", "nsfs",
    "rpc_pipefs", "hugetlbfs", "selinuxfs",
})
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass
class Mount:
    dev: int  # kernel encoding (MAJOR << 20 | MINOR), as the BPF program reads s_dev
    point: str
    fstype: str
    options: str  # super options


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        major, _, minor = fields[2].partition(":")
        try:
            dev = int(major) << 20 | int(minor)
        except ValueError:
            continue
        mounts.append(Mount(dev, _unescape(fields[4]), tail[0], tail[2] if len(tail) > 2 else ""))
    return mounts


def read_mounts(pid: int | str = "self") -> list[Mount]:
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return parse_mountinfo(f.read())
    except OSError:
        return []


def filesystems(mounts: list[Mount]) -> dict[int, str]:
    """One mount point per filesystem exec opens can happen on: device -> mount point."""
    out: dict[int, str] = {}
    for m in mounts:
        if m.fstype not in PSEUDO and m.dev not in out:
            out[m.dev] = m.point
    return out


def overlay_layers(options: str) -> list[str]:
    """Layer directories of an overlay mount's super options (lowerdir a:b, upperdir, ...)."""
    layers = []
    for opt in re.split(r"(?<!\\),", options):
        key, _, value = opt.partition("=")
        if key in ("lowerdir", "lowerdir+", "datadir+"):
            layers.extend(_unescape(p).replace("\\:", ":")
                          for p in re.split(r"(?<!\\):", value) if p)
        elif key == "upperdir" and value:
            layers.append(_unescape(value))
    return layers


def overlays_over(pid: int, real_dev: int) -> list[int]:
    """Devices of the overlays ``pid`` sees that have a layer on filesystem ``real_dev``."""
    found = []
    for m in read_mounts(pid):
        if m.fstype != "overlay":
            continue
        for layer in overlay_layers(m.options):
            try:  # the layer paths are the mount namespace's own: read them through its root
                st = os.stat(f"/proc/{pid}/root{layer}")
            except OSError:
                continue
            if kernel_dev(st.st_dev) == real_dev:
                found.append(m.dev)
                break
    return found
