"""qemu VM lab: a cached image per Debian release, VMs booted from them read-only, SSH with pinned
host keys.

Each release's image (edrfleet/lab/vm/releases.py) is built once by ``scripts/vm-image.sh``
(debootstrap, ``mkfs.ext4 -d``, qcow2) and cached under
``<repo>/.edrfleet/vm/<release>/<sha256(recipe)[:16]>/``; the recipe is the script's text plus the
release's suite and package list, so changing one builds a new image and nothing else does.
``make clean`` removes the cache.  VMs boot with ``-accel tcg`` (stock guest kernels do not boot
under KVM here), ``-kernel``/``-initrd`` taken out of the image (no bootloader), one qcow2 overlay
per VM (the base image is never written), and user networking restricted to one forwarded SSH
port on 127.0.0.1.

The command line (build, up, down, smoke) is ``python -m edrfleet.lab.vm`` (its ``__main__``);
the smoke (edrfleet/lab/vm/smoke.py, scripts/vm-smoke.sh) proves BPF LSM in the guest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edrfleet import paths
from edrfleet.errors import HostError
from edrfleet.lab.vm import releases
from edrfleet.lab.vm.releases import Release

REPO = paths.REPO
SCRIPT = REPO / "scripts" / "vm-image.sh"
# EDRFLEET_VM_CACHE lets several checkouts on one machine share one image build.
DEFAULT_CACHE = Path(os.environ.get("EDRFLEET_VM_CACHE") or paths.STATE / "vm")
DEFAULT_WORKDIR = paths.STATE / "vm-lab"
# Kept for callers of the Debian 12 lab: its package list and kernel command line.
PACKAGES = releases.COMMON
KERNEL_CMDLINE = releases.CMDLINE
QEMU = "qemu-system-x86_64"
_children: dict[int, subprocess.Popen[bytes]] = {}


class VmError(HostError, OSError):
    """A build or boot failed; the message carries the log tail that explains it.  An OSError,
    so the CLI prints it as one error (the VMs are part of the machine, not of the input)."""


@dataclass(frozen=True)
class ImageInfo:
    dir: Path
    recipe: str            # sha256 of the recipe (script text + suite + package list)
    kernel_release: str
    build_seconds: float   # how long the build took when it ran
    cached: bool           # True when this call reused an existing build
    release: Release = releases.RELEASES[releases.DEFAULT]

    @property
    def rootfs(self) -> Path:  # ext4, no partition table; never written (VMs use overlays)
        return self.dir / "rootfs.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def key(self) -> Path:  # the lab's client key, authorized for root in the guest
        return self.dir / "id_ed25519"

    @property
    def host_pubkey(self) -> Path:  # the guest's sshd host key, generated at build time
        return self.dir / "ssh_host_ed25519_key.pub"


@dataclass
class VmHandle:
    name: str
    port: int
    pid: int
    console: Path
    workdir: Path
    key: Path
    known_hosts: Path
    boot_seconds: float = 0.0
    os: str = releases.DEFAULT   # the release it booted (debian-12 …)

    def to_json(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> VmHandle:
        paths = ("console", "workdir", "key", "known_hosts")
        return cls(**{k: Path(str(v)) if k in paths else v for k, v in d.items()})  # type: ignore[arg-type]


def recipe_hash(script_text: bytes, packages: tuple[str, ...] = PACKAGES,
                suite: str = "bookworm") -> str:
    return hashlib.sha256(script_text + b"\0" + suite.encode() + b"\0"
                          + "\n".join(packages).encode()).hexdigest()


def _remove(path: Path) -> None:
    """rm -rf, refusing when anything is still mounted below (a failed debootstrap's /proc)."""
    with open("/proc/self/mounts") as f:
        if any(line.split()[1].startswith(f"{path}/") for line in f):
            raise VmError(f"{path} has mounts below it; unmount them, then remove it")
    shutil.rmtree(path, ignore_errors=True)


def build_image(cache_dir: Path = DEFAULT_CACHE, *, release: Release | None = None,
                log: Callable[[str], None] = print) -> ImageInfo:
    """Return the cached image of the release's recipe (default Debian 12), building it first if
    there is none.

    Each release has its own directory and lock in cache_dir, so releases build in parallel;
    other entries of that release (older recipes, interrupted builds) are removed after a build."""
    rel = release or releases.RELEASES[releases.DEFAULT]
    script = SCRIPT.read_bytes()  # hash and run the same text, even if the file changes meanwhile
    recipe = recipe_hash(script, rel.packages, rel.suite)
    cache_dir = (cache_dir / rel.name).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / recipe[:16]
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; waiters then find it cached
        manifest = final / "manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            if m.get("recipe") == recipe:
                return ImageInfo(final, recipe, m["kernel_release"], m["build_seconds"], True,
                                 rel)
        tmp = cache_dir / f"{recipe[:16]}.tmp"
        _remove(tmp)
        _remove(final)
        log(f"vm: building {rel.name} image {recipe[:16]} (recipe changed or no cache) into "
            f"{final}")
        t0 = time.monotonic()
        proc = subprocess.Popen(["bash", "-c", script.decode(), str(SCRIPT), str(tmp),
                                 ",".join(rel.packages), rel.suite],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line.rstrip())
            log(f"{rel.name}: {line.rstrip()}")
        if proc.wait() != 0:
            raise VmError("image build failed:\n" + "\n".join(lines[-40:]))
        took = round(time.monotonic() - t0, 1)
        kver = (tmp / "kernel-release").read_text().strip()
        (tmp / "manifest.json").write_text(json.dumps(
            {"recipe": recipe, "kernel_release": kver, "build_seconds": took,
             "release": rel.name, "suite": rel.suite,
             "packages": list(rel.packages), "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime())}, indent=2))
        tmp.rename(final)
        for old in cache_dir.iterdir():
            if old.is_dir() and old != final:
                _remove(old)
        log(f"vm: {rel.name} image built in {took:.1f} s: {final}")
        return ImageInfo(final, recipe, kver, took, False, rel)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_bytes().decode(errors="replace").replace("\r", "")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


def ssh_argv(h: VmHandle, *, connect_timeout: int = 20) -> list[str]:
    """ssh argv for the VM: our key, the lab known_hosts, strict host key checking."""
    return ["ssh", "-F", "/dev/null", "-i", str(h.key), "-p", str(h.port),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={h.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=15", "-o", "LogLevel=ERROR", "root@127.0.0.1"]


def ssh(h: VmHandle, cmd: str, *, input: bytes | str | None = None, timeout: float = 600,
        check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a shell command in the VM as root; text output (binary input is sent as is)."""
    data = input.encode() if isinstance(input, str) else input
    r = subprocess.run([*ssh_argv(h), cmd], input=data, capture_output=True,
                       timeout=timeout, check=check,
                       stdin=None if data is not None else subprocess.DEVNULL)
    return subprocess.CompletedProcess(r.args, r.returncode,
                                       r.stdout.decode(errors="backslashreplace"),
                                       r.stderr.decode(errors="backslashreplace"))


def copy_to(h: VmHandle, content: str, path: str, mode: str = "0644") -> None:
    """Write text to a file in the VM (over ssh stdin; no scp needed)."""
    r = ssh(h, f"umask 077; cat > {path} && chmod {mode} {path}", input=content, timeout=120)
    if r.returncode:
        raise VmError(f"{h.name}: copy to {path} failed: {r.stderr.strip()}")


def write_known_hosts(handles: list[VmHandle], images: dict[str, ImageInfo]) -> None:
    """One line per VM with the host key of the image it booted (images by VM name)."""
    def line(h: VmHandle) -> str:
        key = " ".join(images[h.name].host_pubkey.read_text().split()[:2])
        return f"[127.0.0.1]:{h.port} {key}\n"
    for kh in {h.known_hosts for h in handles}:
        kh.write_text("".join(line(h) for h in handles if h.known_hosts == kh))


def _qemu_argv(image: ImageInfo, disk: Path, console: Path, port: int, name: str,
               memory: int, isolated: bool, smp: int = 1) -> list[str]:
    return [QEMU, "-name", f"edrfleet-{name}", "-accel", "tcg", "-m", str(memory),
            "-smp", str(smp),
            "-nographic", "-monitor", "none", "-serial", f"file:{console}", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            # each guest its own hostname (one image for all): host.name in events tells them apart
            "-append", f"{image.release.cmdline} systemd.hostname={name}",
            "-netdev", f"user,id=n0,restrict={'on' if isolated else 'off'},"
                       f"hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=n0",
            "-drive", f"file={disk},if=virtio,format=qcow2"]


def boot(image: ImageInfo, n: int, workdir: Path = DEFAULT_WORKDIR, *, timeout: float = 300,
         memory: int = 1024, prefix: str = "vm", isolated: bool = True, smp: int = 1,
         log: Callable[[str], None] = print) -> list[VmHandle]:
    """Boot n VMs (prefix0, prefix1, …) on overlays of one image; see :func:`boot_plan`."""
    return boot_plan([(image, f"{prefix}{i}") for i in range(n)], workdir, timeout=timeout,
                     memory=memory, isolated=isolated, smp=smp, log=log)


def _private_key(image: ImageInfo, workdir: Path, several: bool) -> Path:
    """A private copy of the image's client key: ssh insists on 0600 and the cache is shared.
    One lab of several releases holds one key per release (each image made its own)."""
    key = workdir / (f"id_ed25519.{image.release.name}" if several else "id_ed25519")
    shutil.copyfile(image.key, key)
    key.chmod(0o600)
    return key


def boot_plan(plan: list[tuple[ImageInfo, str]], workdir: Path = DEFAULT_WORKDIR, *,
              timeout: float = 300, memory: int = 1024, isolated: bool = True, smp: int = 1,
              log: Callable[[str], None] = print) -> list[VmHandle]:
    """Boot one VM per (image, name), all at once, each on an overlay of its image; return once
    each answers SSH with the pinned key.

    isolated: qemu's restrict=on, the guest reaches nothing (not the host, not the mirror) but
    its forwarded SSH port; the image already holds every package the lab needs.
    smp: vCPUs per VM (TCG runs them on host threads; a race test needs two).
    On failure every VM started here is stopped and VmError carries the console tail."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    known_hosts = workdir / "known_hosts"
    several = len({img.release.name for img, _ in plan}) > 1
    keys = {img.release.name: _private_key(img, workdir, several) for img, _ in plan}
    images = {name: img for img, name in plan}
    handles: list[VmHandle] = []
    started = time.monotonic()
    try:
        for image, name in plan:
            disk, console = workdir / f"{name}.qcow2", workdir / f"{name}.console.log"
            disk.unlink(missing_ok=True)
            console.unlink(missing_ok=True)
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                            "-b", str(image.rootfs), str(disk)], check=True)
            for _attempt in range(3):  # the port can be taken between probe and qemu's bind
                port = _free_port()
                while port in {h.port for h in handles}:
                    port = _free_port()
                qlog_path = workdir / f"{name}.qemu.log"
                with open(qlog_path, "wb") as qlog:
                    argv = _qemu_argv(image, disk, console, port, name, memory, isolated, smp)
                    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qlog,
                                            stderr=qlog, start_new_session=True)
                _children[proc.pid] = proc
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1)
                if proc.poll() is None or "host forwarding" not in qlog_path.read_text():
                    break
                _children.pop(proc.pid)
            handles.append(VmHandle(name, port, proc.pid, console, workdir,
                                    keys[image.release.name], known_hosts,
                                    os=image.release.name))
            log(f"vm: {name} ({image.release.name}, kernel {image.kernel_release}) pid "
                f"{proc.pid} ssh 127.0.0.1:{port} console {console}")
        write_known_hosts(handles, images)
        save_handles(handles, workdir)
        _wait_ssh(handles, started + timeout, started, log)
        save_handles(handles, workdir)  # again, with boot times
    except BaseException:
        stop(handles)
        raise
    return handles


def _wait_ssh(handles: list[VmHandle], deadline: float, started: float,
              log: Callable[[str], None]) -> None:
    pending = list(handles)
    while pending:
        for h in list(pending):
            proc = _children.get(h.pid)
            if proc is not None and proc.poll() is not None:
                raise VmError(f"{h.name}: qemu exited with {proc.returncode}\n"
                              f"--- qemu log\n{_tail(h.workdir / f'{h.name}.qemu.log', 10)}\n"
                              f"--- console tail {h.console}\n{_tail(h.console)}")
            try:
                r = subprocess.run([*ssh_argv(h, connect_timeout=10), "true"],
                                   capture_output=True, text=True, timeout=60,
                                   stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                continue
            if r.returncode == 0:
                h.boot_seconds = round(time.monotonic() - started, 1)
                log(f"vm: {h.name} sshd up after {h.boot_seconds:.1f} s")
                pending.remove(h)
            elif "Host key verification failed" in r.stderr or "IDENTIFICATION" in r.stderr:
                raise VmError(f"{h.name}: host key mismatch on port {h.port}: {r.stderr.strip()}")
        if pending and time.monotonic() > deadline:
            names = ", ".join(h.name for h in pending)
            tails = "\n".join(f"--- console tail {h.console}\n{_tail(h.console)}" for h in pending)
            raise VmError(f"no SSH from {names} within {deadline - started:.0f} s\n{tails}")
        if pending:
            time.sleep(2)


def _is_our_qemu(h: VmHandle) -> bool:
    try:
        argv = Path(f"/proc/{h.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (bool(argv) and argv[0].endswith(QEMU.encode())
            and f"edrfleet-{h.name}".encode() in argv
            and any(str(h.workdir).encode() in a for a in argv))


def stop(handles: list[VmHandle], *, grace: float = 10) -> None:
    """Stop VMs by their recorded pid (checked to still be our qemu, never by name)."""
    for h in handles:
        proc = _children.pop(h.pid, None)
        if proc is not None and proc.poll() is not None:
            continue
        if not _is_our_qemu(h):
            continue  # gone, or the pid was reused by something that is not ours
        os.kill(h.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            if (proc.poll() is not None) if proc else not _is_our_qemu(h):
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(h.pid, signal.SIGKILL)
            if proc is not None:
                proc.wait(timeout=10)


def save_handles(handles: list[VmHandle], workdir: Path) -> Path:
    path = workdir / "vms.json"
    path.write_text(json.dumps([h.to_json() for h in handles], indent=2))
    return path


def load_handles(workdir: Path = DEFAULT_WORKDIR) -> list[VmHandle]:
    path = workdir / "vms.json"
    return [VmHandle.from_json(d) for d in json.loads(path.read_text())] if path.is_file() else []
