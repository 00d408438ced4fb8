"""One lab host's pieces: network namespace + veth, cgroup, keys, its own sshd.

Names and addresses come from the lab (edrfleet/lab/netns.py); this module makes and removes
them.  sshd is started with ``nsenter --net=/run/netns/NAME``: only the network namespace
(``ip netns exec`` would also remount /sys, hiding tracefs, bpffs and the cgroup mounts that
an agent started over SSH needs), plus a UTS namespace of its own so ``hostname`` is the lab
host's name.  It is put in the host's cgroup before it execs, so every session and
everything started from one inherits the cgroup.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edrfleet.errors import HostError, InputError

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; must exist before it starts


class LabError(HostError, OSError):
    """The lab could not be made or removed; the message says which host/step and why."""


class LabInputError(InputError, LabError):
    """A lab asked for that cannot be made as asked (host count, a directory holding something
    else): bad input, and still a LabError for the callers that catch those."""


def preflight() -> None:
    """Refuse early, with the fix, when this machine cannot hold a lab."""
    if os.geteuid() != 0:
        raise LabError("lab: needs root (network namespaces, veths, cgroups, sshd on port 22); "
                       "fix: run it as root")
    tools = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux",
             "ssh-keygen": "openssh-client"}
    for tool, package in tools.items():
        if not shutil.which(tool):
            raise LabError(f"lab: {tool} not found (fix: apt-get install {package}, or "
                           "scripts/setup.sh)")
    if not os.access(SSHD, os.X_OK):
        raise LabError(f"lab: {SSHD} not found (fix: apt-get install openssh-server, or "
                       "scripts/setup.sh)")


@dataclass
class LabHost:
    name: str
    netns: str
    veth_host: str    # in the root namespace
    veth_ns: str      # in the host's namespace
    addr_host: str    # root-side address of the /30
    addr: str         # the host's address: sshd listens here (ansible_host)
    cgroup: str       # cgroup v2 path relative to the hierarchy root, "/edrfleet-lab-ID/lab01"
    dir: Path         # .edrfleet/lab/hosts/<name>
    pid: int = 0      # sshd

    @property
    def sshd_dir(self) -> Path:
        return self.dir / "sshd"

    @property
    def host_key(self) -> Path:
        return self.sshd_dir / "ssh_host_ed25519_key"

    @property
    def config(self) -> Path:
        return self.sshd_dir / "sshd_config"

    @property
    def pidfile(self) -> Path:
        return self.sshd_dir / "sshd.pid"

    @property
    def log(self) -> Path:
        return self.sshd_dir / "sshd.log"

    def to_json(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> LabHost:
        return cls(**{**d, "dir": Path(d["dir"])})


def ip(args: list[str], batch: str | None = None) -> None:
    """Run ip(8); a failure raises LabError with its stderr."""
    argv = ["ip", *args] + (["-batch", "-"] if batch is not None else [])
    r = subprocess.run(argv, input=batch, capture_output=True, text=True)
    if r.returncode:
        raise LabError(f"lab: {' '.join(argv)} failed: {r.stderr.strip()}")


def root_network_batch(hosts: list[LabHost]) -> str:
    """ip -batch lines making every host's namespace and veth, root side addressed and up."""
    return "".join(
        f"netns add {h.netns}\n"
        f"link add {h.veth_host} type veth peer name {h.veth_ns} netns {h.netns}\n"
        f"addr add {h.addr_host}/30 dev {h.veth_host}\n"
        f"link set {h.veth_host} up\n" for h in hosts)


def configure_netns(h: LabHost) -> None:
    ip(["-n", h.netns], f"addr add {h.addr}/30 dev {h.veth_ns}\nlink set {h.veth_ns} up\n"
                        "link set lo up\n")


def keygen(path: Path, comment: str) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".pub").unlink(missing_ok=True)
    r = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", str(path)], capture_output=True, text=True)
    if r.returncode:
        raise LabError(f"lab: ssh-keygen -f {path} failed: {r.stderr.strip()}")


def sshd_config(h: LabHost, authorized_keys: Path) -> str:
    # StrictModes no: the lab dir may sit below /tmp (world-writable); we write these files
    # 0600 ourselves.  UsePAM no: no PAM session/account stack for a lab root login.
    # SetEnv HOME: each lab host has its own root home, so this machine's dotfiles stay out
    # (bash sources ~/.bashrc for every ssh command; one that runs `pyenv init` costs 300 ms).
    return "\n".join([f"SetEnv HOME={h.dir / 'home'}",
        f"ListenAddress {h.addr}", "Port 22", f"HostKey {h.host_key}", f"PidFile {h.pidfile}",
        f"AuthorizedKeysFile {authorized_keys}", "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "UseDNS no",
        "X11Forwarding no", "AllowTcpForwarding yes", "PrintMotd no", "PrintLastLog no",
        "MaxStartups 200:30:400", "MaxSessions 50", "LogLevel INFO",
        "Subsystem sftp internal-sftp", ""])


def start_sshd(h: LabHost, cgroup_root: Path) -> int:
    """Start sshd for h inside its netns and cgroup and return its pid at once (see wait_sshd).

    sshd is not our child: the launcher shell backgrounds it and exits, so it belongs to init
    (no zombie here when it stops, nothing tied to this process's lifetime)."""
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    h.pidfile.unlink(missing_ok=True)
    procs = cgroup_root / h.cgroup.lstrip("/") / "cgroup.procs"
    # One pid throughout: the shell moves itself into the cgroup, execs unshare (its own UTS
    # namespace: `hostname` says lab01), which execs a shell setting the name, which execs
    # nsenter into the netns, which execs sshd.  The scripts travel as arguments ($7, $8),
    # so no quoting nests.
    set_name = 'hostname "$6" && exec nsenter --net="$2" -- "$3" -D -f "$4" -E "$5"'
    enter = 'echo $$ > "$1" && exec unshare --uts -- sh -c "$7" lab-sshd "$@"'
    launch = 'sh -c "$8" lab-sshd "$@" </dev/null >/dev/null 2>>"$5" & echo $!'
    r = subprocess.run(["sh", "-c", launch, "lab-sshd", str(procs), f"/run/netns/{h.netns}",
                        SSHD, str(h.config), str(h.log), h.name, set_name, enter],
                       capture_output=True, text=True, start_new_session=True, timeout=30)
    if r.returncode or not r.stdout.strip().isdigit():
        raise LabError(f"lab: {h.name}: could not launch sshd: {r.stderr.strip()}")
    return int(r.stdout)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def wait_sshd(h: LabHost, pid: int, timeout: float = 10, port: int = 22) -> None:
    """Return once sshd answers with its banner; LabError with its log tail otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid):
            raise LabError(f"lab: {h.name}: sshd exited at start:\n{tail(h.log)}")
        try:
            with socket.create_connection((h.addr, port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LabError(f"lab: {h.name}: sshd on {h.addr}:{port} not answering after "
                           f"{timeout:g} s:\n{tail(h.log)}")
        time.sleep(0.02)


def is_our_sshd(pid: int, h: LabHost) -> bool:
    """True when pid is an sshd started with h's config (guards against a reused pid).

    sshd rewrites its command line ("sshd: /usr/sbin/sshd -D -f CONFIG … [listener]"), so the
    config path is looked for as a word of the whole text."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return exe == SSHD and f" {h.config} ".encode() in text + b" "


def sshd_pids(h: LabHost) -> set[int]:
    pids = {h.pid} if h.pid else set()
    try:
        pids.add(int(h.pidfile.read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    return {p for p in pids if is_our_sshd(p, h)}


def stop_pids(pids: set[int], timeout: float = 3) -> set[int]:
    """SIGTERM, then SIGKILL after timeout; return the pids still alive at the end."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if _alive(p)}
            if pids:
                time.sleep(0.02)
        if not pids:
            break
    return pids


def _alive(pid: int) -> bool:
    try:  # reap it if it is our child (an sshd this process started), else it stays a zombie
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cgroup_pids(cgdir: Path) -> set[int]:
    """Every pid in cgdir and the cgroups below it."""
    pids: set[int] = set()
    if not cgdir.is_dir():
        return pids
    for procs in cgdir.rglob("cgroup.procs"):
        try:
            pids.update(int(p) for p in procs.read_text().split())
        except OSError:
            pass
    return pids


def remove_cgroup_tree(cgdir: Path) -> None:
    """rmdir cgdir and everything below it, deepest first (cgroup dirs hold no files)."""
    if not cgdir.is_dir():
        return
    for d in sorted((p for p in cgdir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        d.rmdir()
    cgdir.rmdir()
