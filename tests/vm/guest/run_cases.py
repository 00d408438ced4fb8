"""Runs in a VM guest (its system python3, 3.9 or later, standard library only): the execs of
tests/vm/test_matrix_agreement.py, and what they need.

    python3 run_cases.py setup ROOT DIR...  harmless stand-ins, and ROOT/cwd/DIR for each DIR
    python3 run_cases.py run ROOT           cases as JSON on stdin; their outcomes as JSON out

A case is [program, args, shell, directory, uid, wrapped, on_socket]: ``program`` (a copy of
/bin/true under ROOT/bin) run with ``args`` by ``shell`` (a copy of dash), in ROOT/cwd/DIR, as
``uid``; ``wrapped`` puts another shell above that one, ``on_socket`` gives them a loopback TCP
socket as standard input.  The outcome is the program's exit status as the shell saw it:
"137" (killed: backend sigkill), "126" (EPERM: backend lsm), "0" (it ran).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid

PROGRAMS = ("edrp-a", "edrp-b")
SHELLS = ("edrsh-x", "edrsh-y")
WRAPPER = "edrsh-y"
NOBODY = 65534


def harmless_copy(src: str, dst: str, pad: int) -> None:
    """A copy byte-identical to no other file (bytes past the ELF's segments, never loaded):
    a plain copy of /bin/true would be /bin/true to the agent's content identity."""
    shutil.copy2(src, dst)
    with open(dst, "ab") as f:
        f.write(uuid.uuid4().bytes + b"\0" * pad)


def setup(root: str, *dirs: str) -> None:
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    for i, name in enumerate(PROGRAMS):
        harmless_copy("/bin/true", os.path.join(root, "bin", name), i + 1)
    for i, name in enumerate(SHELLS):
        harmless_copy("/bin/dash", os.path.join(root, "bin", name), i + 1)
    for rel in dirs:
        os.makedirs(os.path.join(root, "cwd", rel), exist_ok=True)
    for base, dirs, files in os.walk(root):  # nobody runs them too
        for name in [*dirs, *files]:
            os.chmod(os.path.join(base, name), 0o755)
    os.chmod(root, 0o755)


def as_nobody() -> None:
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def run_one(root: str, case: list, sock: socket.socket) -> str:
    prog, args, shell, rel, uid, wrapped, on_socket = case
    bindir = os.path.join(root, "bin")
    wrapper = [os.path.join(bindir, WRAPPER), "-c", '"$0" "$@"; true'] if wrapped else []
    res = subprocess.run(
        [*wrapper, os.path.join(bindir, shell), "-c", '"$0" "$@"; echo rc=$?',
         os.path.join(bindir, prog), *args],
        preexec_fn=as_nobody if uid else None, cwd=os.path.join(root, "cwd", rel),
        stdin=sock if on_socket else subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120)
    m = re.search(r"rc=(\d+)", res.stdout)
    return m.group(1) if m else f"no status: {res.stdout!r} {res.stderr!r}"


def run(root: str) -> None:
    cases = json.load(sys.stdin)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    client = socket.create_connection(srv.getsockname(), timeout=30)
    peer, _ = srv.accept()
    try:
        json.dump([run_one(root, case, client) for case in cases], sys.stdout)
    finally:
        for s in (client, peer, srv):
            s.close()


if __name__ == "__main__":
    {"setup": setup, "run": run}[sys.argv[1]](*sys.argv[2:])
