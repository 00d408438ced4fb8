"""edrfleet/agent/identity: mountinfo and overlay options, named paths and their watch points,
content matching, and the keeper's inotify path (a real inotify, a stand-in for the BPF maps:
the kernel side is tests/kernel/test_identity_current.py)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from edrfleet.agent import ecs
from edrfleet.agent.identity import mounts
from edrfleet.agent.identity.content import Protected, head_hash
from edrfleet.agent.identity.keeper import IdentityKeeper, named_paths, watch_points
from edrfleet.agent.maps import kernel_dev
from edrfleet.kernel_abi import load_header
from edrfleet.paths import BPF

MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 0:41 / /var/lib/c\040x/merged rw - overlay overlay rw,lowerdir=/l1:/l\:2,upperdir=/u
31 27 254:0 /srv /mnt/bind rw - ext4 /dev/vda rw
"""


def test_mountinfo_gives_kernel_devices_points_and_types() -> None:
    ms = mounts.parse_mountinfo(MOUNTINFO)
    assert [(m.dev, m.point, m.fstype) for m in ms] == [
        (21, "/proc", "proc"), (254 << 20, "/", "ext4"),
        (41, "/var/lib/c x/merged", "overlay"), (254 << 20, "/mnt/bind", "ext4")]
    # one mount point per filesystem, none for pseudo filesystems; a bind mount is the same one
    assert mounts.filesystems(ms) == {254 << 20: "/", 41: "/var/lib/c x/merged"}


def test_overlay_layers_from_super_options() -> None:
    opts = "rw,lowerdir=/l1:/l\\:2,upperdir=/u,workdir=/w"
    assert mounts.overlay_layers(opts) == ["/l1", "/l:2", "/u"]
    assert mounts.overlay_layers("rw,lowerdir+=/a,lowerdir+=/b,datadir+=/d") == ["/a", "/b", "/d"]


def test_named_paths_are_absolute_paths_and_names_on_the_search_path() -> None:
    bundle = {"executables": {"names": {"rm": [1]}, "paths": {"/opt/x": [2], "/bin/rm": [3]}},
              "search_path": ["/usr/bin", "/bin"]}
    assert named_paths(bundle) == {"/usr/bin/rm": [1], "/bin/rm": [1, 3], "/opt/x": [2]}


def test_watch_points_wait_for_missing_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    link = tmp_path / "a" / "tool"
    (tmp_path / "real").mkdir()
    link.symlink_to(tmp_path / "real" / "tool")
    points = watch_points([str(link), str(tmp_path / "later" / "deeper" / "x")])
    assert points[str(tmp_path / "a")] == {"tool"}
    assert points[str(tmp_path / "real")] == {"tool"}  # the symlink's target directory
    assert points[str(tmp_path)] == {"later"}  # the nearest existing ancestor


def test_content_match_needs_the_same_bytes(tmp_path: Path) -> None:
    prot = tmp_path / "prot"
    prot.write_bytes(b"A" * 100)
    st = prot.stat()
    ident = (kernel_dev(st.st_dev), st.st_ino)
    protected = Protected({ident: (str(prot), 100)})
    for data, expect in ((b"A" * 100, [ident]), (b"A" * 99 + b"B", []), (b"A" * 101, [])):
        f = tmp_path / "candidate"
        f.write_bytes(data)
        fd = os.open(f, os.O_RDONLY)
        try:
            assert protected.copy_of(fd, len(data)) == expect
        finally:
            os.close(fd)
    assert protected.hashed == 3  # a different size is never hashed: 2 candidates + the original


class FakeEngine:
    def __init__(self) -> None:
        self.keys: dict = {}
        self.written_at: dict = {}

    def put_inodes(self, slot, items) -> None:
        for ident, groups in items:
            self.keys[(slot, ident)] = list(groups)
            self.written_at[ident] = time.monotonic()

    def put_sizes(self, slot, items) -> None:
        for size, groups in items:
            self.keys[(slot, "size", size)] = list(groups)

    def drop_inode(self, slot, ident) -> None:
        self.keys.pop((slot, ident), None)


class Packed:
    inodes: dict = {}


def test_a_file_renamed_over_a_named_path_gets_its_key_within_the_bound(tmp_path: Path) -> None:
    """inotify alone (content identity off): the bound is the identity thread's wake-up."""
    header = load_header(BPF)
    named = tmp_path / "bin" / "tool"
    named.parent.mkdir()
    shutil.copy("/bin/true", named)
    later = tmp_path / "not-yet" / "tool2"
    bundle = {"executables": {"paths": {str(named): [0], str(later): [1]}},
              "groups": [{"has_block": 1}, {"has_block": 1}]}
    engine = FakeEngine()
    keeper = IdentityKeeper(lambda _m: None, header, content=False)
    keeper.follow(engine, 1, bundle, Packed())
    keeper.start()
    try:
        def key_of(path: Path):
            st = path.stat()
            return (kernel_dev(st.st_dev), st.st_ino)

        old = key_of(named)
        assert engine.keys[(1, old)] == [0]
        hold = os.open(named, os.O_RDONLY)  # its inode number is not reused while open
        for target, group in ((named, 0), (later, 1)):
            target.parent.mkdir(exist_ok=True)
            new = target.parent / ".new"
            shutil.copy("/bin/true", new)
            t0 = time.monotonic()
            os.rename(new, target)
            deadline = t0 + 2.0
            while (1, key_of(target)) not in engine.keys and time.monotonic() < deadline:
                time.sleep(0.001)
            assert engine.keys.get((1, key_of(target))) == [group]
            assert engine.written_at[key_of(target)] - t0 < 1.0  # measured: median 0.1 ms
        # the replaced file's key went with it (its inode number is the next file's)
        assert (1, old) not in engine.keys
        os.close(hold)
        assert keeper.stats()["content"] is False
    finally:
        keeper.close()


def test_the_kernel_path_wins_unless_partial() -> None:
    class Ev:
        flags = 0
        exe_path_len = 0

    ev = Ev()
    assert ecs.kernel_exe_path(ev) == ""
    assert ecs.resolve_executable(0x7FFFFFFF, (1, 2), {(1, 2): "/usr/bin/rm"}, "/x",
                                  kernel_path="/jail/usr/bin/rm") == "/jail/usr/bin/rm"
    assert ecs.resolve_executable(0x7FFFFFFF, (1, 2), {(1, 2): "/usr/bin/rm"}, "/x",
                                  kernel_path="") == "/usr/bin/rm"


def test_the_head_hash_is_of_the_first_256_bytes_zero_padded(tmp_path: Path) -> None:
    """The kernel hashes linux_binprm.buf: the first 256 bytes, zeros past the file's end."""
    def hashed(data: bytes) -> int:
        f = tmp_path / "f"
        f.write_bytes(data)
        fd = os.open(f, os.O_RDONLY)
        try:
            return head_hash(fd)
        finally:
            os.close(fd)

    head = bytes(range(256))
    assert hashed(b"abc") == hashed(b"abc\0\0") != hashed(b"abd")
    assert hashed(head + b"x" * 1000) == hashed(head + b"y") != hashed(head[:-1] + b"\1")


def test_the_keeper_writes_protected_sizes_with_their_head(tmp_path: Path) -> None:
    named = tmp_path / "tool"
    shutil.copy("/bin/true", named)
    bundle = {"executables": {"paths": {str(named): [0]}}, "groups": [{"has_block": 1}]}
    engine = FakeEngine()
    keeper = IdentityKeeper(lambda _m: None, load_header(BPF), content=False)
    keeper.follow(engine, 1, bundle, Packed())
    try:
        fd = os.open(named, os.O_RDONLY)
        try:
            key = (named.stat().st_size, head_hash(fd))
        finally:
            os.close(fd)
        assert engine.keys[(1, "size", key)] == [0]
    finally:
        keeper.close()
