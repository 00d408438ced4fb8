"""Lab names and addresses that never collide: a machine-wide registry, lock, id and subnet.

/run/edrfleet-labs/ (tmpfs: gone at reboot, like the namespaces) holds ``<id>.json`` =
``{"dir", "subnet"}`` per lab and ``.lock``.  The id is a hash of the lab directory, salted
until it is free; the subnet is one /22 of 10.192.0.0/10 that overlaps no address or route in
the root namespace and no registered lab.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edrfleet.agent.run import cgroup2_root
from edrfleet.lab import host as lh
from edrfleet.lab.host import LabError

REGISTRY = Path("/run/edrfleet-labs")
BASE_NET = ipaddress.ip_network("10.192.0.0/10")
BLOCK_PREFIX = 22
STATE = "state.json"


@contextmanager
def machine_lock() -> Iterator[None]:
    REGISTRY.mkdir(mode=0o755, exist_ok=True)
    with open(REGISTRY / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def registered() -> dict[str, dict]:
    out = {}
    for p in REGISTRY.glob("*.json"):
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return out


def start_time(pid: int) -> int:
    """A process's start time in clock ticks: with its pid, an identity reuse cannot fake."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def orphaned(entry: dict) -> bool:
    """True for a lab made for an owner process (tests) that no longer runs."""
    pid = entry.get("owner")
    if not pid:
        return False
    try:
        return start_time(int(pid)) != entry.get("owner_start")
    except (OSError, ValueError, IndexError):
        return True


def pick_id(workdir: Path, taken: dict[str, dict]) -> str:
    """The first free hash of workdir: an id registered for another directory is taken, even
    if that lab looks dead (its leftovers carry the id; `lab down --dir` frees it)."""
    for salt in range(1000):
        lab_id = hashlib.sha256(f"{workdir}#{salt}".encode()).hexdigest()[:6]
        other = taken.get(lab_id)
        if other is None or other.get("dir") == str(workdir):
            return lab_id
    raise LabError("lab: no free lab id (clean /run/edrfleet-labs)")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    nets = []
    for cmd in (["ip", "-j", "addr"], ["ip", "-j", "route", "show", "table", "all"]):
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        for item in json.loads(r.stdout or "[]"):
            entries = item.get("addr_info", [item])
            for e in entries:
                dst = f"{e['local']}/{e.get('prefixlen', 32)}" if "local" in e else e.get("dst")
                if not dst or dst == "default" or ":" in dst:
                    continue
                try:
                    nets.append(ipaddress.ip_network(dst, strict=False))
                except ValueError:
                    continue
    return nets


def pick_subnet(lab_id: str, taken: dict[str, dict]) -> ipaddress.IPv4Network:
    blocks = list(BASE_NET.subnets(new_prefix=BLOCK_PREFIX))
    used = _networks_in_use() + [ipaddress.ip_network(t["subnet"]) for t in taken.values()
                                 if "subnet" in t]
    start = int(lab_id, 16) % len(blocks)
    for i in range(len(blocks)):
        block = blocks[(start + i) % len(blocks)]
        if not any(block.overlaps(u) for u in used if u.prefixlen > 0):
            return block
    raise LabError(f"lab: every /{BLOCK_PREFIX} of {BASE_NET} overlaps a network in use")


def leftovers(lab_id: str) -> list[str]:
    """What of lab lab_id still exists on this machine (empty after a clean down)."""
    out = [f"netns {p.name}" for p in Path("/run/netns").glob(f"edrfleet-{lab_id}-*")]
    out += [f"link {n}" for n in _links(lab_id)]
    cg = cgroup2_root() / f"edrfleet-lab-{lab_id}"
    if cg.exists():
        out.append(f"cgroup {cg}")
    if (REGISTRY / f"{lab_id}.json").exists():
        out.append(f"registry {REGISTRY / f'{lab_id}.json'}")
    return out


def _links(lab_id: str) -> list[str]:
    r = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True)
    return sorted(i["ifname"] for i in json.loads(r.stdout or "[]")
                  if i["ifname"].startswith(f"el{lab_id}"))


def remove_network(lab_id: str) -> None:
    # Deleting the root end of a veth removes its peer at once; a namespace's own removal of
    # its devices is asynchronous, so veths go first.
    batch = "".join(f"link del {n}\n" for n in _links(lab_id) if n.endswith("h"))
    if batch:
        lh.ip(["-force"], batch)
    existing = sorted(p.name for p in Path("/run/netns").glob(f"edrfleet-{lab_id}-*"))
    if existing:
        lh.ip(["-force"], "".join(f"netns del {n}\n" for n in existing))
