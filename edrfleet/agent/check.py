"""``agent check BUNDLE``: would this agent, on this host, load the bundle?  (No BPF is loaded.)

Used as the Ansible role's ``validate:`` on the host before a bundle replaces the one in force:
it reads the bundle (format, version, sha256), parses the contract header next to the agent and
lays the policy out for the maps, which also resolves every executable path and scope cgroup the
policy names on this host.  Exit 0 with one summary line, or 1 with one line saying what fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edrfleet.agent.bundle_file import read_bundle
from edrfleet.agent.maps import pack_bundle
from edrfleet.agent.run import cgroup_id, default_bpf_dir
from edrfleet.kernel_abi import load_header


def check_loads_here(path: Path, bpf_dir: Path | None = None) -> str:
    """Return a summary line; raise ValueError/OSError naming the file when it would not load."""
    bundle = read_bundle(path)
    header = load_header(bpf_dir or default_bpf_dir())
    try:
        pack_bundle(bundle, header, cgroup_id=cgroup_id)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: this agent cannot lay the policy out: {exc}") from exc
    return (f"{path}: ok: {bundle['mode']}, {len(bundle['rules'])} rules, "
            f"sha256 {bundle['sha256']}")


def run_check(path: Path, bpf_dir: Path | None) -> int:
    try:
        print(check_loads_here(path, bpf_dir))
    except (ValueError, OSError) as exc:
        print(f"edrfleet-agent: check: {exc}", file=sys.stderr)
        return 1
    return 0
