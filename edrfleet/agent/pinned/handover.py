"""The hand-over from the image that loaded a program (with BCC and LLVM) to the resident
agent (without): the same process re-executes itself, pid and all, and adopts what it pinned.

What crosses the exec: the start time (``start_seconds`` counts from the first image), the
bundle put in force (a file in the spool: the policy file may have changed meanwhile; a SIGHUP
held across the exec reloads it next), the last reload's outcome, and the signal mask: SIGHUP,
SIGTERM and SIGINT are blocked before the exec and unblocked once the new image has its
handlers, so one arriving meanwhile is delivered then instead of killing the agent (SIGHUP's
default action).  The program stays attached through it all; records wait in the ring buffer.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys

START_ENV = "EDRFLEET_HANDOVER"
BUNDLE_ENV = "EDRFLEET_HANDOVER_BUNDLE"
RELOAD_ENV = "EDRFLEET_HANDOVER_RELOAD"
KEEP_BCC_ENV = "EDRFLEET_KEEP_BCC"  # keep BCC resident (the old behaviour, for benches)
HANDLED_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
BUNDLE_FILE = ".handover-bundle.json"


def wanted(perfbuf: bool) -> bool:
    """BCC is loaded and the resident image can do without it (perf buffers need BCC)."""
    return "bcc" in sys.modules and not perfbuf and not os.environ.get(KEEP_BCC_ENV)


def exec_resident(spool: str, t0: float, bundle: dict | None, last_reload: dict | None,
                  flags: dict[str, bool]):
    """Replace this image by a fresh one of the same command line; does not return.  Signals
    this image took but did not act on yet (``flags``: reload, stop) are raised again while
    held, so the new image gets them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    for flag, sig in (("reload", signal.SIGHUP), ("stop", signal.SIGTERM)):
        if flags.get(flag):
            os.kill(os.getpid(), sig)
    env = {**os.environ, START_ENV: repr(t0)}
    if bundle is not None:
        path = os.path.join(spool, BUNDLE_FILE)
        with open(path, "w") as f:
            json.dump(bundle, f)
        env[BUNDLE_ENV] = path
    if last_reload:
        env[RELOAD_ENV] = json.dumps(last_reload)
    with open("/proc/self/cmdline", "rb") as f:
        argv = f.read().split(b"\0")[:-1]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def take() -> tuple[float | None, dict | None, dict | None]:
    """In the new image: (start time, bundle, last reload) the old one passed, or Nones."""
    start = os.environ.pop(START_ENV, "")
    path = os.environ.pop(BUNDLE_ENV, "")
    reload_ = os.environ.pop(RELOAD_ENV, "")
    bundle = None
    if path:
        try:
            with open(path) as f:
                bundle = json.load(f)
        finally:
            os.unlink(path)
    return (float(start) if start else None, bundle, json.loads(reload_) if reload_ else None)


def ready() -> None:
    """The handlers are in place: deliver what was held across the exec."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
HEAP_THRESHOLD = 64 * 1024


def keep_heap_small() -> None:
    """Fixed malloc thresholds: blocks of 64 KiB or more get their own mapping, unmapped when
    freed, and the heap's free top goes back at 64 KiB.  glibc's default raises the mmap
    threshold after the first large free (up to 32 MiB), so the map snapshots of the tamper
    check and the bundle's JSON later land on the heap and pin it at ~18 MiB of fragments;
    with fixed thresholds the resident agent's own memory stays ~13 MiB lower."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc: its allocator is left as it is
        return
    mallopt(M_MMAP_THRESHOLD, HEAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, HEAP_THRESHOLD)


def release_memory() -> None:
    """Give the start's garbage (bundle tables, packing) back to the system."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc; elsewhere the heap just stays as it is
    except AttributeError:
        pass
