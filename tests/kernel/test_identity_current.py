"""Identities that stay current (edrfleet/agent/identity/): a protected file is matched when it
is replaced, installed after start, seen through an overlay mount, or copied after load.

The protected files are copies of /bin/true with bytes of their own appended (still runnable,
unlike any other file of the host), named by path in a block rule that also needs a marker
argument; each case has a benign twin - another file, or a modified copy - that runs with the
same marker.  One agent serves the module (one compile), scoped to the module's cgroup.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from tests.kernel.conftest import Cgroup, RunningAgent, resident_agent

MARK = "edrfleet-identity-marker"
POLICY = """\
version: 1
mode: enforce
scope:
  cgroups: [{cgroup}]
rules:
  - id: protected-file
    description: the protected files, by path, when run with the marker
    severity: high
    action: block
    match:
      executable: ["{d}/prot", "{d}/later"]
      args:
        - any: [{mark}]
"""


def unique_binary(path: Path, blocks: int = 8) -> Path:
    """/bin/true plus bytes no other file has: runs like true, is byte-identical to nothing.
    ``blocks`` (16 bytes each) sets its size: a fileless copy is matched by size."""
    path.write_bytes(Path("/bin/true").read_bytes() + uuid.uuid4().bytes * blocks)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("identity")
    unique_binary(d / "prot")
    unique_binary(d / "other", blocks=9)
    return d


@pytest.fixture(scope="module")
def agent(home: Path, mod_cgroup: Cgroup, tmp_path_factory):
    with resident_agent(POLICY.format(cgroup=mod_cgroup.name, d=home, mark=MARK),
                        tmp_path_factory.mktemp("spool")) as running:
        yield running


def runs(cgroup: Cgroup, exe: Path | str) -> bool:
    """The file ran to its end (the lsm backend refuses the exec, sigkill kills it)."""
    try:
        return cgroup.run([str(exe), MARK]).returncode == 0
    except PermissionError:
        return False


def wait_status(agent: RunningAgent, pred, timeout: float = 5.0) -> dict:
    """The status once ``pred`` holds (it is written every second)."""
    deadline = time.monotonic() + timeout
    while True:
        st = agent.status()
        if (st.get("identities") and pred(st)) or time.monotonic() > deadline:
            return st if st.get("identities") and pred(st) else {}
        time.sleep(0.1)


def test_a_file_renamed_over_a_protected_path_is_blocked(agent, home, mod_cgroup):
    assert not runs(mod_cgroup, home / "prot")
    new = unique_binary(home / ".prot.dpkg-new")  # as dpkg installs an upgrade
    os.rename(new, home / "prot")
    assert not runs(mod_cgroup, home / "prot")
    assert runs(mod_cgroup, home / "other")  # the twin: not named
    (ev,) = agent.wait_events(lambda e: e["process.executable"] == str(home / "prot")
                              and e["event.action"] == "blocked", count=2)[-1:]
    assert ev["rule.id"] == "protected-file"


def test_a_file_installed_after_start_is_blocked(agent, home, mod_cgroup):
    later = home / "later"
    assert not later.exists()
    try:
        unique_binary(home / ".later.tmp").rename(later)
        assert not runs(mod_cgroup, later)
        shutil.copy(home / "other", home / "later-twin")
        assert runs(mod_cgroup, home / "later-twin")
    finally:
        later.unlink(missing_ok=True)


def test_a_copy_made_after_load_is_blocked_whatever_its_name(agent, home, mod_cgroup, tmp_path):
    copy = tmp_path / "renamed-copy"
    shutil.copy(home / "prot", copy)
    assert not runs(mod_cgroup, copy)
    modified = tmp_path / "modified-copy"  # the twin: one byte more is another program
    modified.write_bytes((home / "prot").read_bytes() + b"\0")
    modified.chmod(0o755)
    assert runs(mod_cgroup, modified)


def test_the_cache_follows_a_copy_changed_in_place(agent, home, mod_cgroup, tmp_path):
    copy = tmp_path / "changes"
    shutil.copy(home / "prot", copy)
    assert not runs(mod_cgroup, copy)
    with open(copy, "ab") as f:  # now another program: its change time moved
        f.write(b"\0")
    assert runs(mod_cgroup, copy)


def test_an_overlay_view_of_a_protected_file_is_blocked(agent, home, mod_cgroup, tmp_path):
    """A private mount namespace with an overlay whose lower layer holds the protected file
    (a container's view of the host's /usr/bin): the exec runs the overlay's inode, which the
    kernel does not know - it is judged by its size at once (bpf/identity.c).  The keeper's
    overlay key comes after the exec, from the process's mount namespace: a process killed at
    its exec is gone by then, so it is not waited for here."""
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    script = (
        f"mount -t overlay overlay -o lowerdir={home},upperdir={tmp_path}/upper,"
        f"workdir={tmp_path}/work {tmp_path}/merged || exit 99; "
        f"stat -c %d:%i {tmp_path}/merged/prot; "
        f"{tmp_path}/merged/prot {MARK}; echo prot=$?; "
        f"{tmp_path}/merged/other {MARK}; echo other=$?"
    )
    res = mod_cgroup.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         text=True)
    assert "other=0" in res.stdout, res
    assert "prot=0" not in res.stdout and "prot=" in res.stdout, res


def test_status_reports_the_identity_keeper(agent):
    st = wait_status(agent, lambda st: True)["identities"]
    assert st["content"] is True, st
    assert st["filesystems_marked"] >= 1 and st["watched_dirs"] >= 1
    assert st["rescans"] >= 1


MEMFD_RUN = (
    "import os, sys\n"
    "fd = os.memfd_create('x', 0)\n"
    "os.write(fd, open(sys.argv[1], 'rb').read())\n"
    "os.execve(fd, sys.argv[2:], {})\n"
)


def memfd_runs(cgroup: Cgroup, source: Path, *argv: str) -> bool:
    return cgroup.run(["python3", "-c", MEMFD_RUN, str(source), *argv]).returncode == 0


def test_a_memfd_copy_of_a_protected_file_is_blocked(agent, home, mod_cgroup):
    assert not memfd_runs(mod_cgroup, home / "prot", "anything", MARK)
    assert memfd_runs(mod_cgroup, home / "prot", "anything", "harmless")  # its rules' argv
    assert memfd_runs(mod_cgroup, home / "other", "anything", MARK)  # the twin


def test_a_runc_style_memfd_reexec_keeps_working(agent, mod_cgroup, tmp_path):
    """runc copies its own binary into a memfd and re-executes it: no protected size."""
    runc = unique_binary(tmp_path / "runc", blocks=10)
    assert memfd_runs(mod_cgroup, runc, "runc", "init", MARK)
