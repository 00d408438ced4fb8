"""The Debian releases the VM lab can boot: suite, packages, kernel command line of each.

One entry per release; its recipe (``scripts/vm-image.sh`` text + suite + package list) keys its
image in the cache, so changing one release's packages rebuilds that image only.  ``--os`` on
``edrfleet lab up --vm`` takes these names, comma-separated.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMON: tuple[str, ...] = (
    "linux-image-amd64", "linux-headers-amd64", "systemd-sysv", "udev", "kmod", "iproute2",
    "openssh-server", "python3", "python3-bpfcc", "bpfcc-tools", "sudo", "ca-certificates",
    "python3-apt",  # Ansible's apt module needs it and the isolated guest cannot fetch it
)
# panic=-1 + -no-reboot: a guest that panics makes qemu exit, and the boot wait reports it at
# once instead of timing out.  No lsm=: each release boots its kernel's built-in LSM list, as a
# fleet host does (Debian 11's 5.10 builds BPF LSM but does not enable it: backend sigkill).
CMDLINE = "root=/dev/vda rw console=ttyS0 panic=-1"


@dataclass(frozen=True)
class Release:
    name: str                    # debian-12: what --os takes
    suite: str                   # bookworm: what debootstrap takes
    packages: tuple[str, ...] = COMMON
    cmdline: str = CMDLINE

    @property
    def group(self) -> str:      # debian_12: an inventory group name (no dash)
        return self.name.replace("-", "_")

    @property
    def prefix(self) -> str:     # d12-: guest names, unique across releases in one lab
        return "d" + self.name.rsplit("-", 1)[-1] + "-"


RELEASES: dict[str, Release] = {r.name: r for r in (
    Release("debian-11", "bullseye"),   # kernel 5.10, BCC 0.18, python 3.9
    Release("debian-12", "bookworm"),   # kernel 6.1, BCC 0.26, python 3.11
    Release("debian-13", "trixie"),     # kernel 6.12, python 3.13
)}
DEFAULT = "debian-12"


def parse(spec: str) -> list[Release]:
    """``debian-11,debian-13`` -> those releases, in order, each once; ValueError names the bad
    one and the known ones."""
    out: list[Release] = []
    for name in (s.strip() for s in spec.split(",")):
        if name not in RELEASES:
            raise ValueError(f"--os {name!r}: not a lab release (known: {', '.join(RELEASES)})")
        if RELEASES[name] not in out:
            out.append(RELEASES[name])
    if not out:
        raise ValueError("--os: no release given")
    return out
