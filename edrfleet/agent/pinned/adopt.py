"""Starting on a spool whose program is still pinned: adopt it, or say why a new one is needed.

The manifest (``pinned.json`` in the spool, edrfleet/agent/pins.py) names the pinned program
directory and how it was built.  The agent adopts it when the release's BPF text is the same
(same sha256), its maps hold the policy and the backend is the one wanted: no new program, no
moment without one; records made while no agent ran wait in the pinned ring buffer.  Otherwise
a new program is loaded, attached and pinned beside the old one, and only then the old one
goes (Agent.start).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edrfleet.agent.engine import Engine, bpf_text
from edrfleet.agent.pinned import pins
from edrfleet.agent.pinned.tables import PinnedMaps
from edrfleet.kernel_abi import Header


def text_sha256(bpf_dir: Path) -> str:
    return hashlib.sha256(bpf_text(bpf_dir).encode()).hexdigest()


def manifest_of(engine: Engine, text_sha: str, gen: int, policy_sha: str, version: str,
                gens: dict[int, str]) -> dict:
    """What pinned.json records; ``gens``: policy sha256 by generation, so records an agent
    left in the ring buffer decode under the next one."""
    return {
        "pdir": engine.pdir, "cflags": engine.cflags, "capacities": engine.capacities,
        "with_lsm": engine.with_lsm, "perfbuf": engine.perfbuf,
        "with_scope": engine.with_scope, "scan_window": engine.scan_window,
        "backend": engine.backend, "active_slot": engine.active_slot, "gen": gen,
        "policy_sha256": policy_sha, "text_sha256": text_sha, "version": version,
        "gens": {str(g): sha for g, sha in gens.items()},
        "links": sorted(engine.links), "layout": engine.layout(),
    }


def why_not(manifest: dict | None, text_sha: str, needs: dict[str, int], wanted: str,
            version: str) -> str:
    """"" when the pinned program can be adopted, else the reason it cannot."""
    if manifest is None:
        return "nothing pinned for this spool"
    pdir = manifest.get("pdir", "")
    if not pdir or not os.path.isdir(pdir):
        return f"the pinned program {pdir or '?'} is gone"
    missing = pins.links_alive(pdir, manifest.get("links", []))
    if missing or not manifest.get("links"):
        return f"links {missing} of {pdir} are no longer pinned"
    if manifest.get("text_sha256") != text_sha or manifest.get("version") != version:
        return f"a new release (BPF text {text_sha[:12]}, version {version})"
    caps = manifest.get("capacities", {})
    if not all(n <= caps.get(k, 0) for k, n in needs.items()):
        return "the policy needs a program built for it (capacities or matchers)"
    if wanted not in ("auto", manifest.get("backend")):
        return f"backend {wanted} wanted, the pinned program runs {manifest.get('backend')}"
    return ""


def adopt_engine(bpf_dir: Path, header: Header, manifest: dict) -> Engine:
    """An engine on the pinned maps of ``manifest``'s program (compiled for layouts only)."""
    pdir = manifest["pdir"]
    fds = pins.open_pinned(pdir, "map")
    try:
        if manifest.get("layout") and not manifest["perfbuf"]:
            engine = Engine.adopted(header, manifest, PinnedMaps(fds, manifest["layout"]))
        else:  # perf buffers are read through BCC: compile for the layouts
            engine = Engine(
                bpf_dir, header, {}, manifest["capacities"], perfbuf=manifest["perfbuf"],
                with_lsm=manifest["with_lsm"], with_scope=manifest["with_scope"],
                scan_window=manifest["scan_window"], adopt=fds, cflags=manifest["cflags"],
            )
    except Exception:
        pins.close_all(fds)
        raise
    engine.pdir = pdir
    engine.links = pins.open_pinned(pdir, "link")  # held: an unpinned link can be pinned again
    engine.backend = manifest["backend"]
    engine.adopt_slots(manifest["active_slot"])
    return engine


def remove_others(inst: str, keep: str) -> list[str]:
    """Unpin every program of the instance but ``keep`` (after ``keep`` is in force)."""
    removed = []
    if os.path.isdir(inst):
        for entry in sorted(os.listdir(inst)):
            pdir = f"{inst}/{entry}"
            if pdir != keep:
                pins.remove_program(pdir)
                removed.append(pdir)
    return removed
