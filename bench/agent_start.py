#!/usr/bin/env python3
"""CPU and wall time of one agent start, phase by phase (what bench/deploy pays per host).

Each sample is a fresh ``/usr/bin/python3`` (the interpreter hosts run the agent with) that
goes through the agent's own start path - ``Agent.load_bundle``, ``Agent._pack``, ``Btf.load``,
``kernel_offsets``, ``lsm_available``, ``Agent._new_engine`` (BCC compile, then each program
through the verifier), ``Agent._install`` (map filling) - and stops before attaching: nothing
it loads ever runs.  The policy is the default template, compiled here, scoped to a cgroup
this script creates (and removes).  Phases are timed with getrusage (user + system: clang runs
inside libbcc, the verifier inside the bpf() syscall), medians over --runs samples.

Then the real agent on one spool: as before, BCC kept resident; a fresh start (compile, load,
attach, pin, then the hand-over to the resident image without BCC); after a ``kill -9``, a
start that adopts the pinned program; for each, ``start_seconds`` from
status.json (start to enforcing) and the resident agent's RSS (VmRSS, high-water VmHWM) once
enforcing, past the hand-over and a few seconds of steady state.  The spool is disarmed at the end.

Usage: sudo .venv/bin/python bench/agent_start.py [--runs 3] [--bundle FILE] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AGENT_PYTHON = "/usr/bin/python3"  # hosts run the agent with the system python + bcc


# -- child: one agent start -------------------------------------------------------------------
class Clock:
    """Per-phase CPU (user + system) and wall time since the last mark."""

    def __init__(self) -> None:
        self.phases: list[dict] = []
        # interpreter start-up: CPU so far, wall unknown (0)
        self.cpu0, self.wall0 = _cpu(), time.monotonic()
        self.phases.append({"phase": "python start-up", "cpu": self.cpu0, "wall": 0.0})

    def mark(self, phase: str) -> None:
        cpu, wall = _cpu(), time.monotonic()
        self.phases.append({"phase": phase, "cpu": cpu - self.cpu0, "wall": wall - self.wall0})
        self.cpu0, self.wall0 = cpu, wall


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(bundle_path: Path, spool: Path) -> None:
    clock = Clock()
    sys.path.insert(0, str(REPO))
    from edrfleet.agent.btf import kernel_offsets
    from edrfleet.agent.bundle_file import read_bundle
    from edrfleet.agent.run import Agent, Options, lsm_available

    clock.mark("import agent")
    import bcc

    clock.mark("import bcc")
    _time_bcc(bcc, clock)
    agent = Agent(Options(policy=bundle_path, spool=spool, backend="sigkill"), read_bundle)
    clock.mark("agent init (header, spool)")
    bundle = agent.load_bundle(bundle_path)
    clock.mark("read bundle (json + sha256)")
    agent.wanted = agent._wanted_backend(bundle)
    packed = agent._pack(bundle)
    clock.mark("pack bundle")
    from edrfleet.agent.btf import Btf

    btf = Btf.load()
    offsets = kernel_offsets(btf)
    clock.mark("BTF offsets")
    agent.lsm_possible, _ = lsm_available(btf)
    clock.mark("LSM probe")
    engine = agent._new_engine(offsets, packed)  # marks compile and each verify itself
    agent._install(engine, bundle, packed, slot=0)
    clock.mark("fill maps + activate")
    sizes = _xlated(engine)
    engine.detach()
    clock.mark("detach")
    print(json.dumps({"phases": clock.phases, "xlated": sizes,
                      "scan_window": engine.scan_window}))


def _time_bcc(bcc, clock: Clock) -> None:
    """Mark the BCC compile (BPF.__init__) and each load_func (the verifier) as phases."""
    init, load = bcc.BPF.__init__, bcc.BPF.load_func

    def timed_init(self, *a, **kw):
        clock.mark("engine setup (text, cflags)")
        init(self, *a, **kw)
        clock.mark("BCC compile (clang + rewriter)")

    def timed_load(self, name, *a, **kw):
        fn = load(self, name, *a, **kw)
        clock.mark(f"verify {name.decode()}")
        return fn

    bcc.BPF.__init__, bcc.BPF.load_func = timed_init, timed_load


def _xlated(engine) -> dict[str, int]:
    """bytes_xlated of each loaded program, from its fd (fdinfo -> id -> bpftool)."""
    out = {}
    for name, fn in engine.bpf.funcs.items():
        try:
            info = dict(line.split(":\t", 1) for line in
                        Path(f"/proc/self/fdinfo/{fn.fd}").read_text().splitlines()
                        if ":\t" in line)
            show = subprocess.run(["bpftool", "-j", "prog", "show", "id", info["prog_id"].strip()],
                                  capture_output=True, text=True, check=True)
            out[name.decode()] = json.loads(show.stdout).get("bytes_xlated", 0)
            out[f"{name.decode()} verified_insns"] = _verified_insns(fn.fd)
        except (OSError, KeyError, subprocess.CalledProcessError, ValueError):
            continue
    return out


def _verified_insns(fd: int) -> int:
    """Instructions the verifier walked for this program (bpf_prog_info.verified_insns, kernel
    5.16+; 0 where unknown): what every start pays in verifier time."""
    import ctypes

    info = ctypes.create_string_buffer(256)
    attr = ctypes.create_string_buffer(16)
    ctypes.memmove(attr, (ctypes.c_uint32 * 2)(fd, len(info)), 8)
    ctypes.memmove(ctypes.byref(attr, 8), ctypes.pointer(ctypes.c_uint64(
        ctypes.addressof(info))), 8)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(321, 15, attr, 16) != 0:  # x86-64 bpf(BPF_OBJ_GET_INFO_BY_FD)
        return 0
    return int.from_bytes(info.raw[216:220], "little")  # offsetof(verified_insns)


# -- the resident agent: start time and RSS, fresh and adopting --------------------------------
def resident(bundle: Path, workdir: Path) -> list[dict]:
    from edrfleet.agent.pinned import pins

    spool = workdir / "resident-spool"
    out = []
    try:
        # before: the agent as it was, BCC and LLVM kept resident (EDRFLEET_KEEP_BCC)
        for kind, env in (("BCC kept (before)", {"EDRFLEET_KEEP_BCC": "1"}),
                          ("fresh start", {}), ("adopt after kill -9", {})):
            if not kind.startswith("adopt"):  # a fresh start: nothing pinned before it
                pins.disarm(spool)
            proc = subprocess.Popen(
                [AGENT_PYTHON, "-m", "edrfleet.agent", "run", "--policy", str(bundle),
                 "--spool", str(spool), "--backend", "sigkill"],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, **env})
            st = _wait_enforcing(spool, proc.pid)
            if "EDRFLEET_KEEP_BCC" not in env:  # "enforcing" comes first; then the hand-over
                _wait_enforcing(spool, proc.pid, resident=True)
            time.sleep(2.5)  # status periods and tamper checks: the steady state
            mem = _rss(proc.pid)
            out.append({"kind": kind, "start_seconds": st.get("start_seconds"), **mem})
            proc.kill()
            proc.wait()
    finally:
        pins.disarm(spool)
    return out


def _wait_enforcing(spool: Path, pid: int, resident: bool = False) -> dict:
    """status.json once agent ``pid`` enforces (``resident``: in its image without BCC)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            st = json.loads((spool / "status.json").read_text())
        except (OSError, ValueError):
            st = {}
        if st.get("pid") == pid and st.get("state") in ("enforcing", "monitoring") and (
                not resident or st.get("bcc_loaded") is False):
            return st
        if st.get("state") == "failed":
            sys.exit(f"bench: agent failed: {st.get('last_error')}")
        time.sleep(0.02)
    sys.exit("bench: the agent never reached enforcing")


def _rss(pid: int) -> dict:
    from edrfleet.agent.pinned.ringbuf import ring_rss_kib  # the bench runs from the checkout

    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB -> MiB
    rings = ring_rss_kib(pid) / 1024
    return {"rss_mib": round(fields["VmRSS"], 1), "hwm_mib": round(fields["VmHWM"], 1),
            "rings_mib": round(rings, 1), "own_mib": round(fields["VmRSS"] - rings, 1)}


# -- parent: bundle, samples, table -----------------------------------------------------------
def make_bundle(workdir: Path, scope: str) -> Path:
    sys.path.insert(0, str(REPO / "bench"))
    import _common as c

    from edrfleet.policy import compile_policy, dump_bundle, load_policy_text

    bundle = compile_policy(load_policy_text(c.render_default_policy([scope]), "default"))
    path = workdir / "bundle.json"
    path.write_text(dump_bundle(bundle))
    return path


def sample(bundle: Path, workdir: Path) -> dict:
    spool = Path(tempfile.mkdtemp(prefix="spool-", dir=workdir))
    proc = subprocess.run([AGENT_PYTHON, __file__, "--child", str(bundle), "--spool", str(spool)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        sys.exit(f"bench: agent start failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def summarize(samples: list[dict]) -> dict:
    names = list(dict.fromkeys(p["phase"] for p in samples[0]["phases"]))
    table = {}
    for name in names:
        cpu = [sum(p["cpu"] for p in s["phases"] if p["phase"] == name) for s in samples]
        wall = [sum(p["wall"] for p in s["phases"] if p["phase"] == name) for s in samples]
        table[name] = {"cpu": statistics.median(cpu), "wall": statistics.median(wall)}
    totals = [sum(p["cpu"] for p in s["phases"]) for s in samples]
    walls = [sum(p["wall"] for p in s["phases"]) for s in samples]
    return {"phases": table, "total_cpu": statistics.median(totals),
            "total_wall": statistics.median(walls), "runs": len(samples),
            "xlated": samples[0]["xlated"], "scan_window": samples[0]["scan_window"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="agent starts to take the median of")
    ap.add_argument("--bundle", type=Path, help="compiled bundle (default: the default policy)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--spool", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.spool)
        return
    if os.geteuid() != 0:
        sys.exit("bench: needs root (loads BPF programs)")
    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO))
    import _common as c

    workdir = Path(tempfile.mkdtemp(prefix="edrfleet-bench-start-"))
    cg = c.Cgroup.create("edrfleet-bench-start")
    try:
        bundle = args.bundle or make_bundle(workdir, cg.name)
        result = summarize([sample(bundle, workdir) for _ in range(args.runs)])
        result["resident"] = resident(bundle, workdir)
    finally:
        cg.remove()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"agent start, median of {result['runs']} (scan window {result['scan_window']} B)")
    print(f"{'phase':36} {'cpu s':>7} {'wall s':>7}")
    for name, v in result["phases"].items():
        print(f"{name:36} {v['cpu']:7.3f} {v['wall']:7.3f}")
    print(f"{'total':36} {result['total_cpu']:7.3f} {result['total_wall']:7.3f}")
    print("bytes_xlated: " + ", ".join(f"{k} {v}" for k, v in result["xlated"].items()))
    print(f"{'resident agent':24} {'start s':>8} {'RSS MiB':>8} {'HWM MiB':>8} "
          f"{'rings MiB':>9} {'own MiB':>8}")
    for r in result["resident"]:
        print(f"{r['kind']:24} {r['start_seconds']:8.3f} {r['rss_mib']:8.1f} {r['hwm_mib']:8.1f} "
              f"{r['rings_mib']:9.1f} {r['own_mib']:8.1f}")


if __name__ == "__main__":
    main()
