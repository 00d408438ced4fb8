"""Keep the active slot's "inodes" map current while the policy is in force.

At start (and on SIGHUP) every path the policy names - its absolute paths, and each basename
through the bundle's ``search_path`` - is turned into a (device, inode) key.  Afterwards:

- **inotify** on the directories of those paths (and of their symlink targets; the nearest
  existing ancestor of a directory that does not exist yet): a file renamed over a named path
  (dpkg, rpm), created there after start, or a symlink that changes target re-resolves every
  named path, adds the new keys and drops the keys of files no named path leads to any more
  (their inode numbers go to the next new files).
- **the kernel judges by size** (bpf/identity.c): an exec of a file not known by its inode
  whose size is a protected file's is judged as that file as well - a copy made anywhere, at
  any time, the agent running, stopped or dead.  The keeper writes those sizes ("fsizes").
- **fanotify FAN_OPEN_EXEC notifications** on every filesystem, read after the exec (no exec
  ever waits for the agent): a named path whose key is new is re-resolved (a replaced binary
  is judged by its names and size until then), an exec through an overlay mount of a protected
  real file gets the key of the overlay's inode (``mounts``), and a file of a protected size is
  hashed: byte-identical, it is counted as a copy (``copies``); not, as a file judged by size
  only (``size_only``: the heuristic's false positives on this host).  A copy gets no inode key
  of its own: the kernel's size test is as current as the file (a copy changed to another size
  is another program at once; a key would stay until the keeper saw the change).  Results are
  cached by (device, inode, change time, size), so an executable is classified once until it
  changes, and ignored in the kernel (no further events) until it is written to; the ignore
  marks go when the mount table changes and every ``REOPEN_SECONDS``, so a protected file's
  overlay view in a private mount namespace gets its key at most that much after its exec.

Without fanotify (no CAP_SYS_ADMIN, a user namespace) copies are judged by size only
(``stats()`` says why) and a replaced binary is matched once inotify's event is handled.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

from edrfleet.agent.identity import mounts
from edrfleet.agent.identity.content import Protected, head_hash, head_hash_path
from edrfleet.agent.identity.notify import ExecOpens, Inotify
from edrfleet.agent.maps import GroupList, Identity, _merge, kernel_dev

CACHE_MAX = 65536  # classified files remembered; beyond this the cache starts over
# a classified file is ignored in the kernel from then on (protected ones too: a shell the
# policy names is executed constantly, and each event costs this process ~50 us); the ignore
# marks are dropped when the mount table changes and on this period, so an overlay over a
# protected file in a private mount namespace still gets its key, this much later at most
REOPEN_SECONDS = 30.0


def named_paths(bundle: dict) -> dict[str, list[int]]:
    """Every path the policy names -> its groups, as pack_bundle resolves them."""
    exe = bundle["executables"]
    out: dict[str, list[int]] = {}
    for name, groups in exe.get("names", {}).items():
        for directory in bundle.get("search_path", []):
            out.setdefault(os.path.join(directory, name), []).extend(groups)
    for path, groups in exe.get("paths", {}).items():
        out.setdefault(path, []).extend(groups)
    return out


def watch_points(paths) -> dict[str, set[str]]:
    """Directory -> names in it whose change can change what a named path resolves to."""
    points: dict[str, set[str]] = {}
    for path in paths:
        for p in {path, os.path.realpath(path)}:
            directory, name = os.path.split(p)
            while directory != "/" and not os.path.isdir(directory):
                directory, name = os.path.split(directory)  # wait for it to be created
            points.setdefault(directory, set()).add(name)
    return points


class IdentityKeeper:
    def __init__(self, log: Callable[[str], None], header, content: bool = True) -> None:
        self.log = log
        self.per_key = header["EDR_GROUPS_PER_KEY"]
        self.block_bit = header.enum_by_suffix("edr_block_bit", "EDR_BLOCK_")["rule"]
        self.lock = threading.Lock()
        self.engine = None
        self.slot = -1
        self.current: tuple | None = None  # (engine, slot, bundle, packed) followed
        self.previous: tuple | None = None
        self.named: dict[str, list[int]] = {}
        self.blocks: set[int] = set()
        self.keys: dict[Identity, GroupList] = {}  # what the slot's "inodes" holds
        self.path_keys: set[Identity] = set()  # keys that named paths resolve to
        self.sizes: dict[tuple[int, int], GroupList] = {}  # what the slot's "fsizes" holds
        self.protected = Protected({})
        self.cache: dict[Identity, tuple[int, int, list[int] | None]] = {}
        self.overlays_done: set[tuple[int, Identity]] = set()
        self.inotify = Inotify()
        self.points: dict[str, set[str]] = {}
        self.fan: ExecOpens | None = None
        self.marked: set[int] = set()
        self.content_why = "off" if not content else ""
        self.counts = {"rescans": 0, "keys_added": 0, "copies": 0, "size_only": 0,
                       "overlay_keys": 0, "exec_opens": 0, "ignored": 0, "reopens": 0,
                       "overflows": 0, "errors": 0}
        self.last_rescan_ms = 0.0
        self.classify_seconds = 0.0  # exec opens: classified, in total
        self._stop = threading.Event()
        self._marked = threading.Event()
        self._thread: threading.Thread | None = None
        if content:
            self._open_fanotify()

    # -- generations -------------------------------------------------------------------------
    def follow(self, engine, slot: int, bundle: dict, packed) -> None:
        """A new generation is in force in ``slot`` of ``engine``: keep its keys from now on."""
        with self.lock:
            # what revert needs, not the bundle and packing themselves: their automaton
            # tables are tens of MiB the resident agent must not keep (README, <= 40 MB)
            self.previous, self.current = self.current, (engine, slot, _slim(bundle),
                                                         _Inodes(dict(packed.inodes)))
            self.engine, self.slot = engine, slot
            self.named = named_paths(bundle)
            self.blocks = {i for i, g in enumerate(bundle["groups"]) if g.get("has_block")}
            self.keys = dict(packed.inodes)
            self.path_keys = set(packed.inodes)
            self.sizes = {}
            self.cache.clear()
            self.overlays_done.clear()
            if self.fan is not None:  # a file ignored so far may be a copy under this policy
                self.fan.forget_ignored()
            self._rescan()

    def revert(self) -> None:
        """The generation followed last did not go in force: follow the one before again."""
        if self.previous is not None:
            self.follow(*self.previous)

    def _rescan(self) -> None:
        """Resolve every named path again; write the keys that are new or changed.  A
        directory watched for the first time may have got its file before the watch: resolve
        once more then (at most a few times: each pass can only add deeper directories)."""
        t0 = time.monotonic()
        for _ in range(8):
            if not self._resolve():
                break
        self.counts["rescans"] += 1
        self.last_rescan_ms = (time.monotonic() - t0) * 1000

    def _resolve(self) -> bool:
        """One pass of _rescan; True when it watched a directory it did not watch before."""
        found: dict[Identity, GroupList] = {}
        files: dict[Identity, tuple[str, int]] = {}
        for path, groups in self.named.items():
            try:
                st = os.stat(path)
            except OSError:
                continue
            ident = (kernel_dev(st.st_dev), st.st_ino)
            _merge(found, ident, groups, self.per_key, self.blocks, self.block_bit)
            files.setdefault(ident, (path, st.st_size))
        # A file that left every named path loses its key: its inode number is the next new
        # file's (measured: a file renamed over a named path reuses the inode freed by the
        # previous rename), which must not inherit the protected file's rules.
        for ident in self.path_keys - set(found):
            if self.engine is not None:
                self.engine.drop_inode(self.slot, ident)
                self.keys.pop(ident, None)
        self.path_keys = set(found)
        changed = {}
        for ident, groups in found.items():
            merged = self.keys.get(ident)
            if merged is None or list(merged) != list(groups) or merged.over != groups.over:
                changed[ident] = groups
        self._put(changed)
        self._put_sizes(found, files)
        self.protected = Protected(files)
        self.points = watch_points(self.named)
        watched = set(self.inotify.watches.values())
        for directory in self.points:
            self.inotify.watch(directory)
        return bool(set(self.inotify.watches.values()) - watched)

    def _put_sizes(self, found: dict[Identity, GroupList],
                   files: dict[Identity, tuple[str, int]]) -> None:
        """Protected (size, head hash) -> groups: how the kernel judges a file it does not
        know by its inode (bpf/identity.c).  Keys of earlier versions stay (a copy of the
        previous release of a protected file is that program too) until the next policy."""
        sizes: dict[tuple[int, int], GroupList] = {}
        for ident, (path, size) in files.items():
            head = head_hash_path(path)
            if size and head is not None:
                _merge(sizes, (size, head), list(found[ident]), self.per_key, self.blocks,
                       self.block_bit)
        changed = {size: groups for size, groups in sizes.items()
                   if list(self.sizes.get(size, [])) != list(groups)}
        if not changed or self.engine is None:
            return
        try:
            self.engine.put_sizes(self.slot, changed.items())
        except Exception as exc:
            self.counts["errors"] += 1
            self.log(f"identities: {len(changed)} size keys not written: {exc}")
            return
        self.sizes.update(changed)

    def _put(self, items: dict[Identity, GroupList]) -> None:
        if not items or self.engine is None:
            return
        try:
            self.engine.put_inodes(self.slot, items.items())
        except Exception as exc:  # a full map: the old keys stay, the new file is not matched
            self.counts["errors"] += 1
            self.log(f"identities: {len(items)} keys not written: {exc}")
            return
        self.keys.update(items)
        self.counts["keys_added"] += len(items)

    # -- fanotify ----------------------------------------------------------------------------
    def _open_fanotify(self) -> None:
        try:
            self.fan = ExecOpens()
        except OSError as exc:
            self.content_why = f"fanotify unavailable: {exc}"
            self.log(f"identities: content identity off ({self.content_why})")

    def _mark_filesystems(self) -> None:
        assert self.fan is not None
        for dev, point in mounts.filesystems(mounts.read_mounts()).items():
            if dev in self.marked:
                continue
            try:
                self.fan.mark_filesystem(point)
                self.marked.add(dev)
            except OSError:
                self.marked.add(dev)  # refused (an internal or FUSE filesystem): not again

    def classify(self, fd: int, pid: int) -> bool:
        """Bring the keys up to date for the file an exec opened (it runs already: the kernel
        judged it by inode, names and size); True when the file is protected (path or content)."""
        self.counts["exec_opens"] += 1
        st = os.fstat(fd)
        ident = (kernel_dev(st.st_dev), st.st_ino)
        with self.lock:
            known = self.cache.get(ident)
            if known and known[:2] == (st.st_ctime_ns, st.st_size):
                groups = known[2]
            else:
                groups = self._classify_new(fd, ident, st.st_size)
                if len(self.cache) >= CACHE_MAX:
                    self.cache.clear()
                    if self.fan is not None:
                        self.fan.forget_ignored()
                self.cache[ident] = (st.st_ctime_ns, st.st_size, groups)
            if groups:
                self._overlay_keys(pid, ident, groups)
            return bool(groups)

    def _classify_new(self, fd: int, ident: Identity, size: int) -> list[int] | None:
        if ident not in self.keys:
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                path = ""
            if path in self.named:  # replaced or new at a named path, inotify not read yet
                self._rescan()
        if ident in self.keys:
            return list(self.keys[ident])
        # judged by size and head in the kernel already: hashing the whole file only tells a
        # copy from another program that shares both (the heuristic's false positive)
        if size in self.protected.by_size and (size, head_hash(fd)) in self.sizes:
            if self.protected.copy_of(fd, size):
                self.counts["copies"] += 1
            else:
                self.counts["size_only"] += 1
        return None

    def _overlay_keys(self, pid: int, ident: Identity, groups: list[int]) -> None:
        try:
            mntns = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        except OSError:
            return
        if (mntns, ident) in self.overlays_done:
            return
        self.overlays_done.add((mntns, ident))
        items = {}
        for dev in mounts.overlays_over(pid, ident[0]):
            key = (dev, ident[1])
            if key not in self.keys:
                items[key] = GroupList(groups)
        self._put(items)
        self.counts["overlay_keys"] += len(items)

    # -- the thread --------------------------------------------------------------------------
    def start(self) -> None:
        """Classify exec opens from now on."""
        self._thread = threading.Thread(target=self._loop, name="identities", daemon=True)
        self._thread.start()
        # the state turns "enforcing" after this: the filesystems are marked by then (a
        # hand-over starts a new keeper right before its status says so)
        self._marked.wait(timeout=5)

    def _loop(self) -> None:
        with open("/proc/self/mountinfo") as mountinfo:  # POLLPRI: the mount table changed
            poller = select.poll()
            poller.register(self.inotify.fd, select.POLLIN)
            poller.register(mountinfo, select.POLLPRI)
            if self.fan is not None:
                poller.register(self.fan.fd, select.POLLIN)
                self._mark_filesystems()
            self._marked.set()
            reopen = time.monotonic() + REOPEN_SECONDS
            while not self._stop.is_set():
                if self.fan is not None and time.monotonic() >= reopen:
                    self._reopen()
                    reopen = time.monotonic() + REOPEN_SECONDS
                for fd, _ev in poller.poll(500):
                    if self.fan is not None and fd == self.fan.fd:
                        self._answer()
                    elif fd == self.inotify.fd:
                        self._on_dir_events()
                    elif fd == mountinfo.fileno() and self.fan is not None:
                        mountinfo.seek(0)
                        mountinfo.read()
                        self._mark_filesystems()
                        self._reopen()  # a new overlay may show a protected file

    def _answer(self) -> None:
        assert self.fan is not None
        for fd, pid in self.fan.events():
            if fd < 0:  # the queue overflowed while we were away: those files stay judged by size
                self.counts["overflows"] += 1
                continue
            t0 = time.perf_counter()
            try:
                # no more events for this file until it is written to or _reopen()
                self.classify(fd, pid)
                if self.fan.ignore(fd):
                    self.counts["ignored"] += 1
            except Exception as exc:
                self.counts["errors"] += 1
                self.log(f"identities: classify failed: {exc}")
            finally:
                os.close(fd)
                self.classify_seconds += time.perf_counter() - t0

    def _reopen(self) -> None:
        """Exec opens of files classified before are reported again (overlay keys)."""
        assert self.fan is not None
        with self.lock:
            self.fan.forget_ignored()
            self.counts["reopens"] += 1

    def _on_dir_events(self) -> None:
        events = self.inotify.drain()
        if any(not name or name in self.points.get(d, ()) for d, name in events):
            with self.lock:
                self._rescan()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.fan is not None:
            self.fan.close()
        self.inotify.close()

    def stats(self) -> dict:
        return {**self.counts, "content": self.fan is not None,
                "content_off_why": self.content_why, "watched_dirs": len(self.points),
                "filesystems_marked": len(self.marked),
                "last_rescan_ms": round(self.last_rescan_ms, 2),
                "classify_us_mean": round(self.classify_seconds * 1e6
                                        / max(self.counts["exec_opens"], 1), 1),
                "hashed_files": self.protected.hashed}


class _Inodes:
    """The part of a maps.Packed the keeper follows: the named files' keys."""

    def __init__(self, inodes: dict) -> None:
        self.inodes = inodes


def _slim(bundle: dict) -> dict:
    """The part of a bundle the keeper reads (named_paths, the block groups)."""
    return {"executables": bundle["executables"], "search_path": bundle.get("search_path", []),
            "groups": [{"has_block": g.get("has_block")} for g in bundle["groups"]]}
