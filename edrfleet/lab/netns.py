"""The lab fleet: N hosts on this machine, each a network namespace with its own sshd and cgroup.

    edrfleet lab up --hosts 3   ->  .edrfleet/lab/inventory.yml (group ``lab``: lab01…)
    edrfleet lab down           ->  every netns, veth, cgroup, process and file removed

Collisions: the lab id is a hash of the lab directory (``state.json`` keeps it); a registry in
/run/edrfleet-labs/ maps ids to directories, so another directory hashing to the same id gets
the next one.  Each lab takes one /22 of 10.192.0.0/10 (a /30 per host), chosen from its id
and skipped while it overlaps any address or route in the root namespace or another lab's
block; the choice and the network set-up happen under one machine-wide lock.  Names carry the
id: netns ``edrfleet-ID-lab01``, veth ``elIDNNNh`` (root side) / ``elIDNNNn``, cgroup
``/edrfleet-lab-ID/lab01``.

``state.json`` is written before anything is made, so ``down`` works after a crash.  Host keys
go into the lab's known_hosts from the files ssh-keygen wrote (nothing is learnt from the wire).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from edrfleet import paths
from edrfleet.agent.run import cgroup2_root
from edrfleet.lab import host as lh
from edrfleet.lab import names as ln
from edrfleet.lab.host import LabError, LabHost, LabInputError

# Blocks a recursive rm of /tmp/edrfleet-canary*: the harmless target of every demo attack.
LAB_CANARY_RULE = {
    "id": "lab-canary",
    "description": "recursive delete of an edrfleet canary",
    "severity": "critical",
    "action": "block",
    "match": {
        "executable": ["rm"],
        "args": [{"regex": "^(-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)$"},
                 {"glob": "/tmp/edrfleet-canary*"}],
    },
}

REPO = paths.REPO
DEFAULT_DIR = paths.STATE / "lab"
MAX_HOSTS = 2 ** (32 - ln.BLOCK_PREFIX) // 4
STATE = ln.STATE
REGISTRY = ln.REGISTRY
leftovers = ln.leftovers
_WORKERS = 16


@dataclass
class Lab:
    dir: Path
    id: str
    subnet: str
    hosts: list[LabHost]

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def authorized_keys(self) -> Path:
        return self.dir / "authorized_keys"

    @property
    def cgroup(self) -> str:
        return f"/edrfleet-lab-{self.id}"

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"lab has no host {name!r}")

    def save(self) -> None:
        data = {"dir": str(self.dir), "id": self.id, "subnet": self.subnet,
                "hosts": [h.to_json() for h in self.hosts]}
        tmp = self.dir / (STATE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.rename(self.dir / STATE)

    @classmethod
    def load(cls, workdir: Path) -> Lab:
        d = json.loads((workdir / STATE).read_text())
        return cls(Path(d["dir"]), d["id"], d["subnet"],
                   [LabHost.from_json(h) for h in d["hosts"]])


def _plan(workdir: Path, lab_id: str, subnet: ipaddress.IPv4Network, n: int) -> Lab:
    width = max(2, len(str(n)))
    hosts = []
    for i in range(n):
        name = f"lab{i + 1:0{width}d}"
        base = subnet.network_address + 4 * i
        hosts.append(LabHost(
            name=name, netns=f"edrfleet-{lab_id}-{name}", veth_host=f"el{lab_id}{i:03d}h",
            veth_ns=f"el{lab_id}{i:03d}n", addr_host=str(base + 1), addr=str(base + 2),
            cgroup=f"/edrfleet-lab-{lab_id}/{name}", dir=workdir / "hosts" / name))
    return Lab(workdir, lab_id, str(subnet), hosts)


def _parallel(fn: Callable[[LabHost], object], hosts: list[LabHost]) -> None:
    with ThreadPoolExecutor(min(_WORKERS, max(1, len(hosts)))) as pool:
        for f in [pool.submit(fn, h) for h in hosts]:
            f.result()


def is_up(workdir: Path) -> bool:
    try:
        lab = Lab.load(workdir)
    except (OSError, ValueError, KeyError):
        return False
    return lab.inventory.is_file() and all(lh.sshd_pids(h) for h in lab.hosts)


def up(n: int = 3, workdir: Path = DEFAULT_DIR, *, log: Callable[[str], None] = print,
       owner_pid: int | None = None) -> Path:
    """Make an n-host lab in workdir and return its inventory path.

    An existing lab of n hosts that is fully up is kept; any other is removed first.
    owner_pid (tests): the lab belongs to that process; once it is gone (a killed test run),
    the next ``up`` on this machine removes the lab.  Without it a lab stays until ``down``."""
    if not 1 <= n <= MAX_HOSTS:
        raise LabInputError(f"lab: --hosts {n}: between 1 and {MAX_HOSTS} (fix: a smaller number)")
    lh.preflight()
    workdir = Path(workdir).resolve()
    if (workdir / STATE).is_file():
        if is_up(workdir) and len(Lab.load(workdir).hosts) == n:
            log(f"lab: already up with {n} hosts ({workdir}); `edrfleet lab down` to remove")
            return workdir / "inventory.yml"
        log(f"lab: removing the previous lab in {workdir}")
        down(workdir, log=log)
    elif workdir.exists() and any(workdir.iterdir()):
        raise LabInputError(f"lab: {workdir} exists, is not empty and holds no lab {STATE} "
                       "(fix: another --dir, or empty it)")
    cgroot = cgroup2_root()
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = {"owner": owner_pid, "owner_start": ln.start_time(owner_pid),
             "checkout": str(REPO)} if owner_pid else {}
    try:
        with ln.machine_lock():
            _reap_orphans(log)
            taken = ln.registered()
            lab_id = ln.pick_id(workdir, taken)
            lab = _plan(workdir, lab_id, ln.pick_subnet(lab_id, taken), n)
            (REGISTRY / f"{lab_id}.json").write_text(json.dumps(
                {"dir": str(workdir), "subnet": lab.subnet, **owner}))
            lab.save()  # before anything is made: down finds it all after a crash
            lh.ip([], lh.root_network_batch(lab.hosts))
        _parallel(lh.configure_netns, lab.hosts)
        _build_hosts(lab, cgroot)
        _write_inventory(lab)
    except BaseException:
        if _find(workdir) is not None:
            down(workdir, log=lambda _m: None)
        else:
            shutil.rmtree(workdir, ignore_errors=True)  # only the empty dir made above
        raise
    return lab.inventory


def _reap_orphans(log: Callable[[str], None]) -> None:
    """Remove the labs this checkout's test runs made whose owner process is gone (caller
    holds the machine lock).  Other checkouts' orphans are theirs: named, not touched."""
    for lab_id, entry in ln.registered().items():
        if not ln.orphaned(entry):
            continue
        if entry.get("checkout") != str(REPO):
            log(f"lab: lab {lab_id} in {entry['dir']} outlived its owner (from "
                f"{entry.get('checkout')}); `edrfleet lab down --dir {entry['dir']}` removes it")
            continue
        log(f"lab: removing lab {lab_id} in {entry['dir']}: its owner {entry['owner']} is gone")
        try:
            down(Path(entry["dir"]), log=lambda _m: None)
        except LabError as exc:
            log(f"lab: could not remove orphan lab {lab_id}: {exc}")


def _build_hosts(lab: Lab, cgroot: Path) -> None:
    for h in lab.hosts:
        (cgroot / h.cgroup.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for sub in ("sshd", "home", "install", "config", "spool", "run"):
            (h.dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    lh.keygen(lab.key, f"edrfleet-lab-{lab.id}")
    lab.authorized_keys.write_text(lab.key.with_name("id_ed25519.pub").read_text())
    lab.authorized_keys.chmod(0o600)

    def start(h: LabHost) -> None:
        lh.keygen(h.host_key, f"{h.name}@edrfleet-lab-{lab.id}")
        h.config.write_text(lh.sshd_config(h, lab.authorized_keys))
        h.pid = lh.start_sshd(h, cgroot)

    try:
        _parallel(start, lab.hosts)
    finally:
        lab.save()  # the pids of whatever started
    _parallel(lambda h: lh.wait_sshd(h, h.pid), lab.hosts)
    write_known_hosts(lab)


def write_known_hosts(lab: Lab) -> None:
    """The lab's known_hosts, from the public key files ssh-keygen wrote."""
    lines = []
    for h in lab.hosts:
        keytype, blob = h.host_key.with_name(h.host_key.name + ".pub").read_text().split()[:2]
        lines.append(f"{h.addr} {keytype} {blob}\n")
    lab.known_hosts.write_text("".join(lines))
    lab.known_hosts.chmod(0o600)


def host_vars(lab: Lab, h: LabHost) -> dict[str, object]:
    return {
        "ansible_host": h.addr,
        "edrfleet_install_dir": str(h.dir / "install"),
        "edrfleet_config_dir": str(h.dir / "config"),
        "edrfleet_spool_dir": str(h.dir / "spool"),
        "edrfleet_run_dir": str(h.dir / "run"),
        "edrfleet_scope_cgroups": [h.cgroup],
    }


def group_vars(lab: Lab) -> dict[str, object]:
    return {
        "ansible_user": "root",
        "ansible_port": 22,
        "ansible_ssh_private_key_file": str(lab.key),
        # For ansible-playbook (OpenSSH); edrfleet reads edrfleet_known_hosts_file instead.
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={lab.known_hosts} "
                                   "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        "ansible_python_interpreter": "/usr/bin/python3",
        "edrfleet_known_hosts_file": lab.known_hosts.name,
        "edrfleet_service_manager": "supervisor",
        "edrfleet_extra_rules": [LAB_CANARY_RULE],
    }


def _write_inventory(lab: Lab) -> None:
    inv = {"all": {"children": {"lab": {
        "hosts": {h.name: host_vars(lab, h) for h in lab.hosts},
        "vars": group_vars(lab)}}}}
    header = (f"# Generated by `edrfleet lab up` (lab {lab.id}, {lab.subnet}); "
              "`edrfleet lab down` removes it.\n")
    lab.inventory.write_text(header + yaml.safe_dump(inv, sort_keys=False, width=100))


def stop_host(workdir: Path, name: str) -> None:
    """Stop one host's sshd (tests: an unreachable host)."""
    h = Lab.load(Path(workdir).resolve()).host(name)
    left = lh.stop_pids(lh.sshd_pids(h))
    if left:
        raise LabError(f"lab: {name}: sshd {sorted(left)} survived SIGKILL")


def start_host(workdir: Path, name: str) -> None:
    """(Re)start one host's sshd with its current host key and wait until it answers."""
    lab = Lab.load(Path(workdir).resolve())
    h = lab.host(name)
    stop_host(workdir, name)
    h.pid = lh.start_sshd(h, cgroup2_root())
    lab.save()
    lh.wait_sshd(h, h.pid)


def regenerate_host_key(workdir: Path, name: str) -> None:
    """Give a host a new key (the lab's known_hosts keeps the old one) and restart its sshd."""
    lab = Lab.load(Path(workdir).resolve())
    h = lab.host(name)
    lh.keygen(h.host_key, f"{h.name}@edrfleet-lab-{lab.id}")
    start_host(workdir, name)


def _find(workdir: Path) -> Lab | None:
    """The lab in workdir: its state.json, else its registry entry (a crash before state.json
    was complete): then only the id is known, and names are found by their id prefix."""
    try:
        return Lab.load(workdir)
    except FileNotFoundError:
        pass
    for lab_id, entry in ln.registered().items():
        if entry.get("dir") == str(workdir):
            return Lab(workdir, lab_id, entry.get("subnet", ""), [])
    return None


def down(workdir: Path = DEFAULT_DIR, *, log: Callable[[str], None] = print) -> None:
    """Remove the lab in workdir: processes (by pid), netns, veths, cgroups, files."""
    workdir = Path(workdir).resolve()
    lab = _find(workdir)
    if lab is None:
        if workdir.exists():
            raise LabInputError(f"lab: {workdir} holds no {STATE} and no lab is registered for it; "
                           "nothing was removed (fix: remove it by hand if it is yours)")
        log(f"lab: no lab in {workdir}")
        return
    t0 = time.monotonic()
    cgdir = cgroup2_root() / lab.cgroup.lstrip("/")
    pids: set[int] = set()
    for h in lab.hosts:
        pids |= lh.sshd_pids(h)
    left = lh.stop_pids(pids | lh.cgroup_pids(cgdir))
    for _ in range(5):  # a process forked while we were signalling: take it too
        more = lh.cgroup_pids(cgdir)
        if not more:
            break
        left |= lh.stop_pids(more)
    if left:
        raise LabError(f"lab: processes {sorted(left)} survived SIGKILL; down again later")
    lh.remove_cgroup_tree(cgdir)
    ln.remove_network(lab.id)
    if workdir.exists():
        _remove_files(workdir)
    (REGISTRY / f"{lab.id}.json").unlink(missing_ok=True)
    log(f"lab: {len(lab.hosts) or 'all'} hosts removed in {time.monotonic() - t0:.2f} s")


def _remove_files(workdir: Path) -> None:
    with open("/proc/self/mounts") as f:
        if any(line.split()[1].startswith(f"{workdir}/") for line in f):
            raise LabError(f"lab: {workdir} has mounts below it; unmount them, then down again")
    shutil.rmtree(workdir)
