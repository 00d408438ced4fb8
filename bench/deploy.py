#!/usr/bin/env python3
"""edrfleet deploy vs ansible-playbook on the same lab hosts: first deploy and no-change rerun.

    .venv/bin/python bench/deploy.py [--hosts 20] [--no-playbook]

Brings up a lab of N hosts (bench/.. .edrfleet/bench-lab), then, one run each, every tool
starting from empty hosts (``edrfleet uninstall --purge`` between them):
  1. ``edrfleet deploy`` (first install: agent started, waited for until enforcing), then rerun;
     then a first deploy again with the bundle cache warm;
  2. ``ansible-playbook`` applying the role ``roles/edrfleet_agent`` (what an Ansible shop runs:
     it builds the release, renders and compiles each host's policy on the controller, copies,
     starts under the supervisor, waits until enforcing), forks = hosts, pipelining on; rerun;
  3. ``ansible-playbook bench/deploy_playbook.yml``: only the copy / template / start / wait
     steps, the bundles compiled untimed beforehand (Ansible's floor for this job); rerun.
Prints the wall times and ratios, and removes the lab.  Prints figures; asserts nothing.
Every tool starts the same agent, whose BCC compile and verifier load (one CPU queue here:
the lab's hosts share this machine's cores) is in every first-deploy figure.  edrfleet's first
deploy starts with an empty bundle cache, so it includes compiling the policy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edrfleet.fleet.deploy.hostpolicy import CompileCache, host_policy  # noqa: E402
from edrfleet.fleet.deploy.release import build_release, write_release  # noqa: E402
from edrfleet.fleet.inventory.load import load_inventory  # noqa: E402

VENV = REPO / ".venv" / "bin"
WORK = REPO / ".edrfleet" / "bench-deploy"
LAB = WORK / "lab"
ROLE_PLAYBOOK = """\
- name: Install the edrfleet agent with the role
  hosts: lab
  gather_facts: false  # the role gathers the two facts it needs
  roles:
    - role: edrfleet_agent
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(argv[:3])} …")
    return seconds


def edrfleet(*args: str) -> list[str]:
    return [str(VENV / "python"), "-m", "edrfleet.cli.main", *args]


def ansible_inputs(inventory: Path) -> dict[str, str]:
    """The release files and each host's compiled bundle, for the playbook to copy."""
    release = build_release()
    rel_dir = write_release(release, WORK / "release")
    bundles = WORK / "bundles"
    bundles.mkdir(parents=True, exist_ok=True)
    compiler = CompileCache()
    for h in load_inventory(inventory).hosts.values():
        hp = host_policy(compiler, dict(h.vars), h.name, {}, tuple(h.groups))
        (bundles / f"{h.name}.json").write_text(hp.bundle_json)
    return {"release_src": str(rel_dir), "release_id": release.id, "bundles": str(bundles),
            "templates_dir": str(REPO / "templates")}


def agent_starts(inventory: Path) -> list[float]:
    """Each host's agent start to enforcing (status.json), in seconds."""
    return [json.loads(Path(h.vars["edrfleet_spool_dir"], "status.json").read_text())
            ["start_seconds"] for h in load_inventory(inventory).hosts.values()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--no-playbook", dest="playbook", action="store_false",
                    help="skip the minimal playbook (3.)")
    args = ap.parse_args()
    n = args.hosts
    shutil.rmtree(WORK, ignore_errors=True)
    inventory = LAB / "inventory.yml"
    figures: dict[str, float] = {}
    timed(edrfleet("lab", "up", "--hosts", str(n), "--dir", str(LAB)))
    try:
        inv = str(inventory)
        # an empty bundle cache: the first deploy compiles the policy (the role compiles each
        # host's on the controller within its run; the minimal playbook's are compiled untimed)
        cold = dict(os.environ, XDG_CACHE_HOME=str(WORK / "cache"))
        figures["edrfleet first"] = timed(edrfleet("deploy", inv, "--forks", str(n)), cold)
        figures["edrfleet rerun"] = timed(edrfleet("deploy", inv, "--forks", str(n)), cold)
        starts = agent_starts(inventory)
        timed(edrfleet("uninstall", inv, "--purge"))
        # the same policy compiled before (the usual case: a fleet's policy changes rarely)
        figures["edrfleet first, warm bundle cache"] = timed(
            edrfleet("deploy", inv, "--forks", str(n)), cold)
        timed(edrfleet("uninstall", inv, "--purge"))
        env = dict(os.environ, ANSIBLE_PIPELINING="True", ANSIBLE_HOST_KEY_CHECKING="True",
                   ANSIBLE_LOCAL_TEMP=str(WORK / "ansible-tmp"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_HOME=str(WORK / "ansible-home"),
                   ANSIBLE_ROLES_PATH=str(REPO / "roles"), PATH=f"{VENV}:{os.environ['PATH']}")
        site = WORK / "site.yml"
        site.write_text(ROLE_PLAYBOOK)
        role = [str(VENV / "ansible-playbook"), "-i", inv, "--forks", str(n), str(site)]
        figures["ansible role first"] = timed(role, env)
        ansible_starts = agent_starts(inventory)
        figures["ansible role rerun"] = timed(role, env)
        timed(edrfleet("uninstall", inv, "--purge"))
        if args.playbook:
            extra = json.dumps(ansible_inputs(inventory))
            play = [str(VENV / "ansible-playbook"), "-i", inv, "--forks", str(n), "-e", extra,
                    str(REPO / "bench" / "deploy_playbook.yml")]
            figures["ansible minimal playbook first"] = timed(play, env)
            figures["ansible minimal playbook rerun"] = timed(play, env)
            timed(edrfleet("uninstall", inv, "--purge"))
    finally:
        timed(edrfleet("lab", "down", "--dir", str(LAB)))
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"{n} lab hosts, forks {n}; wall seconds (one run each, command start to exit):")
    for k, v in figures.items():
        print(f"  {k:34s} {v:7.2f} s   ({v / n:.3f} s per host)")
    print(f"  agent start to enforcing (status.json start_seconds): min {min(starts):.2f}, "
          f"max {max(starts):.2f} s")
    warm = figures["edrfleet first, warm bundle cache"]
    for what in ("ansible role", "ansible minimal playbook"):
        if f"{what} first" in figures:
            first, rerun = figures[f"{what} first"], figures[f"{what} rerun"]
            print(f"ratio {what}/edrfleet: first deploy {first / figures['edrfleet first']:.1f}x"
                  f" ({first / warm:.1f}x with the bundle cache warm), rerun "
                  f"{rerun / figures['edrfleet rerun']:.1f}x")
    # Lab hosts share this machine's cores, so N agents compiling BPF at once is one CPU
    # queue here; on a fleet each host compiles on its own CPU.  Both tools wait for it.
    own = (figures["ansible role first"] - max(ansible_starts),
           figures["edrfleet first"] - max(starts))
    print(f"first deploy less the slowest agent start (ansible role {max(ansible_starts):.2f} s,"
          f" edrfleet {max(starts):.2f} s): {own[0]:.2f} s vs {own[1]:.2f} s = "
          f"{own[0] / own[1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
