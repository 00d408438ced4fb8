#!/usr/bin/env python3
"""In-kernel cost of the context matchers (parent executable, cwd walk, ancestors, standard
streams as sockets, multi-call applets) per exec.

One agent, one policy of `allow` rules (so nothing is killed or reported; the context is still
read, because an allow rule's argv conditions hold): a stand-in with a plain rule, one whose
rule names a parent executable, one whose rule names a cwd prefix (and one an exact cwd,
``cwd_is``), the last run from a
directory 3 and 30 levels deep (the walk goes to '/' every time); one whose rule names an
ancestor no process has (the walk goes EDR_ANCESTOR_DEPTH up or to init), one with
inet_stdio [self, parent] run on pipes and on a loopback TCP socket, and a stand-in listed as
a multi-call binary (argv[0] is its own name: argv[1] is looked up too).  Prints the
program's run time per exec from BPF_ENABLE_STATS, all cases in one run.  Never asserts
timing.

Usage: .venv/bin/python bench/context_cost.py [--n 2000]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402

CASES = (  # (label, stand-in, cwd depth, stdin: "" or "tcp")
    ("no context", "edrctx-none", 3, ""),
    ("parent executable", "edrctx-parent", 3, ""),
    ("cwd walk", "edrctx-cwd", 3, ""),
    ("cwd walk", "edrctx-cwd", 30, ""),  # with the work dir: past the 32-directory limit
    ("cwd_is walk", "edrctx-cwdis", 3, ""),  # the same walk, exact bits read and masked
    ("ancestor walk (no match)", "edrctx-anc", 3, ""),
    ("inet_stdio, pipes", "edrctx-stdio", 3, ""),
    ("inet_stdio, TCP stdin", "edrctx-stdio", 3, "tcp"),
    ("multi-call applet", "edrctx-box", 3, ""),
)


def policy(scope: str) -> dict:
    def rule(name: str, extra: dict) -> dict:
        return {"id": name, "description": f"cost of {name}", "severity": "low",
                "action": "allow", "match": {"executable": [name], **extra}}

    return {"version": 1, "scope": {"cgroups": [scope]}, "multicall": ["edrctx-box"],
            "rules": [
        rule("edrctx-none", {}),
        rule("edrctx-parent", {"parent": {"executable": ["bash"]}}),
        rule("edrctx-cwd", {"cwd": ["/dev/shm"]}),
        rule("edrctx-cwdis", {"cwd_is": ["/dev/shm"]}),
        rule("edrctx-anc", {"ancestor": {"executable": ["edrctx-no-such-ancestor"]}}),
        rule("edrctx-stdio", {"inet_stdio": ["self", "parent"]}),
        rule("edrctx-box", {}),
    ]}


@contextmanager
def stdin_from(kind: str):
    """fd 0 of this process (inherited by the loop and the stand-ins): as is, or a loopback
    TCP connection."""
    if not kind:
        yield
        return
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    client = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()
    saved = os.dup(0)
    os.dup2(client.fileno(), 0)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        for s in (client, peer, srv):
            s.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="execs per case (2000)")
    args = ap.parse_args()
    here = os.getcwd()
    names = sorted({name for _, name, _, _ in CASES})
    with c.standin_bench("edrfleet-bench-ctx-", names, policy, "ctx") as b:
        try:
            print(f"{'case':<30} {'execs':>6} {'bpf µs/exec':>12}")
            for label, name, depth, stdin in CASES:
                cwd = b.workdir.joinpath(*["d"] * depth)
                cwd.mkdir(parents=True, exist_ok=True)
                os.chdir(cwd)  # the loop and its children inherit it
                with stdin_from(stdin):
                    runs, per = c.bpf_us_per_exec(
                        b.agent.proc.pid, b.cg,
                        [str(b.loop), str(args.n), str(b.workdir / name)])
                os.chdir(here)
                if name in ("edrctx-cwd", "edrctx-cwdis"):
                    label = f"{label}, cwd {len(cwd.parts) - 1} deep"
                print(f"{label:<30} {runs:>6} {per:>12.2f}")
        finally:
            os.chdir(here)
    return 0


if __name__ == "__main__":
    sys.exit(main())
