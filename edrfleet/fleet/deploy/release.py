"""The agent release: what `edrfleet deploy` and the Ansible role push to a host.

A release is these files (`FILES`), laid out on the host as ``<install_dir>/releases/<id>/``::

    agent.pyz          zipapp of edrfleet/__init__.py, edrfleet/kernel_abi.py and
                       edrfleet/agent/ (stdlib + bcc only)
    bpf/edrfleet.h     the kernel <-> user contract
    bpf/edrfleet.c ... the BPF program BCC compiles on the host, in parts
                       (edrfleet/kernel_abi.py BPF_SOURCES: the one list of them)
    release.sha256     sha256 of the others (sha256sum's format): the agent refuses to start
                       when its release no longer matches it (edrfleet/agent/release_check.py)

``<id>`` is the first 16 hex digits of the sha256 over the files' names and bytes, so the
same source always gives the same id and a rerun with nothing changed changes nothing.  The
zipapp is byte-for-byte reproducible (sorted entries, fixed timestamps, no compression).
``<install_dir>/current`` is a symlink to the active release; the unit runs
``python3 <install_dir>/current/agent.pyz run --bpf-dir <install_dir>/current/bpf ...``.

    python -m edrfleet.fleet.deploy.release -o DIR     write the release files under DIR/<id>/
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edrfleet import paths
from edrfleet.agent.release_check import MANIFEST
from edrfleet.kernel_abi import BPF_SOURCES

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_MAIN = b"import sys\nfrom edrfleet.agent.__main__ import main\nsys.exit(main())\n"
# What a release holds, by path in its directory; host facts hash these (facts.py).
FILES = ("agent.pyz", *(f"bpf/{name}" for name in BPF_SOURCES), MANIFEST)
# Modules of the package the agent imports besides edrfleet/agent/ (stdlib-only, like it).
AGENT_SHARED_MODULES = ("__init__.py", "kernel_abi.py")


@dataclass(frozen=True)
class Release:
    id: str                   # 16 hex digits
    files: dict[str, bytes]   # relative path -> content ("agent.pyz", "bpf/edrfleet.c", ...)

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()


def _zip_entry(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o644 << 16
    zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def agent_zipapp(package: Path = paths.PACKAGE) -> bytes:
    """The agent as one reproducible zipapp (``python3 agent.pyz run --policy …``), from the
    ``edrfleet`` package's own sources (a checkout's or an installed wheel's: the same bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _zip_entry(zf, "__main__.py", _MAIN)
        for name in AGENT_SHARED_MODULES:
            _zip_entry(zf, f"edrfleet/{name}", (package / name).read_bytes())
        agent = package / "agent"  # with its subpackages (agent/outputs/)
        for f in sorted(agent.rglob("*.py"), key=lambda f: f.relative_to(agent).as_posix()):
            _zip_entry(zf, f"edrfleet/agent/{f.relative_to(agent).as_posix()}", f.read_bytes())
    return b"#!/usr/bin/python3\n" + buf.getvalue()


def build_release(package: Path = paths.PACKAGE, bpf: Path = paths.BPF) -> Release:
    """The release of this edrfleet: its agent modules and BPF sources (edrfleet/paths.py)."""
    files = {"agent.pyz": agent_zipapp(package)}
    for name in BPF_SOURCES:
        files[f"bpf/{name}"] = (bpf / name).read_bytes()
    return release_of(files)


def release_of(files: dict[str, bytes]) -> Release:
    """The release of these files, with the manifest the agent checks itself against at every
    start (edrfleet/agent/release_check.py); a manifest among ``files`` is made anew."""
    files = {n: d for n, d in files.items() if n != MANIFEST}
    files[MANIFEST] = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n"
                              for n in sorted(files)).encode()
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return Release(id=h.hexdigest()[:16], files=files)


def write_release(release: Release, out_dir: Path) -> Path:
    """Write the release under ``out_dir/<id>/`` and return that directory."""
    top = out_dir / release.id
    for name, data in release.files.items():
        path = top / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return top


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edrfleet.fleet.deploy.release",
                                description="Write the agent release files.")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory to write into")
    args = p.parse_args(argv)
    print(write_release(build_release(), args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
