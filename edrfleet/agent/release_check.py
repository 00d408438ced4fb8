"""The agent's release check, at every start and restart: it runs only the release deploy wrote.

A release on a host is ``<install_dir>/releases/<id>/`` holding ``agent.pyz``, ``bpf/*`` and
``release.sha256`` (sha256 of every other file, written by deploy and the role).  Before the
agent loads anything it checks that

* the zipapp it runs from, and the bpf/ directory it is told to use, are that release's;
* every file named in the manifest has the sha256 written there (a modified agent.pyz or
  edrfleet.c is refused);
* the release directory, the manifest and every directory above them up to ``/`` are owned by
  root and writable by nobody else (a root-owned sticky directory such as /tmp excepted): a
  user who could rewrite the manifest could rewrite the release with it.

Run from a source checkout (``python -m edrfleet.agent``) there is no release: nothing to check.
Hashing the ~100 KiB zipapp and the BPF sources costs about a millisecond.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

MANIFEST = "release.sha256"


class ReleaseMismatch(ValueError):
    """The release on disk is not the one deploy wrote, or others could have changed it."""


def running_zipapp(module_file: str = __file__) -> Path | None:
    """The zipapp this module was imported from (None when run from a directory tree)."""
    p = Path(module_file)
    for parent in p.parents:
        if parent.is_file():
            return parent
        if parent.is_dir():
            return None
    return None


def read_manifest(path: Path) -> dict[str, str]:
    """``sha256  name`` lines (sha256sum's format) -> {name: sha256}."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or name.startswith("/") \
                or ".." in name.split("/"):
            raise ReleaseMismatch(f"{path}: malformed line {line[:80]!r}")
        out[name] = digest
    if "agent.pyz" not in out:
        raise ReleaseMismatch(f"{path} does not name agent.pyz")
    return out


def _sha256(path: Path) -> str:
    # O_NOFOLLOW: a file of the release replaced by a link is a changed release
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_owner(path: Path, *, parent: bool) -> None:
    """``path`` is root's (or the running user's, when not root) and nobody else may write it."""
    st = os.lstat(path)
    owners = {0, os.geteuid()}
    if st.st_uid not in owners:
        raise ReleaseMismatch(f"{path} is owned by uid {st.st_uid}, not root (fix: redeploy; "
                              f"chown root:root {path})")
    if stat.S_ISLNK(st.st_mode):
        if parent:
            return  # a root-owned link above the release (/var/run); its target is checked too
        raise ReleaseMismatch(f"{path} is a symbolic link (fix: redeploy)")
    sticky = parent and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_mode & 0o022 and not sticky:
        raise ReleaseMismatch(f"{path} is writable by group or others (mode "
                              f"{stat.S_IMODE(st.st_mode):o}) (fix: chmod go-w {path})")


def check_tree(release: Path) -> None:
    """The release directory (as written: maybe the `current` link; and resolved), its manifest
    and every directory above them up to /."""
    resolved = release.resolve()
    check_owner(resolved, parent=False)
    check_owner(resolved / MANIFEST, parent=False)
    check_owner(release, parent=True)
    for top in dict.fromkeys((release, resolved)):
        for parent in top.parents:
            check_owner(parent, parent=True)


def verify_release(bpf_dir: Path, module_file: str = __file__) -> str:
    """Check the running release (ReleaseMismatch says what differs); returns what was checked
    ("" when not run from a release)."""
    zipapp = running_zipapp(module_file)
    if zipapp is None:
        return ""
    release = zipapp.parent
    manifest_path = release / MANIFEST
    if not manifest_path.is_file():
        raise ReleaseMismatch(f"{manifest_path} is missing: this release was not written by "
                              "deploy (fix: redeploy)")
    check_tree(release)
    manifest = read_manifest(manifest_path)
    if zipapp.name not in manifest:
        raise ReleaseMismatch(f"{manifest_path} does not name {zipapp.name}")
    if Path(bpf_dir).resolve() != (release / "bpf").resolve():
        raise ReleaseMismatch(f"--bpf-dir {bpf_dir} is not this release's bpf/ "
                              f"({release / 'bpf'})")
    for name, digest in sorted(manifest.items()):
        try:
            actual = _sha256(release / name)
        except OSError as exc:
            raise ReleaseMismatch(f"{release / name}: {exc.strerror} (fix: redeploy)") from None
        if actual != digest:
            raise ReleaseMismatch(f"{release / name} has sha256 {actual[:16]}…, the manifest "
                                  f"says {digest[:16]}…: the release was modified after deploy "
                                  "(fix: redeploy, and find out who changed it)")
    return f"release {release.name}: {len(manifest)} files match {MANIFEST}"
