"""The bundle as text: canonical JSON, its sha256, and a checked loader.

Layout: docs/policy-bundle.md (format ``edrfleet-bundle``, version 1).  The sha256 is over
``json.dumps(bundle_without_sha256, sort_keys=True, separators=(",", ":"))``, and
`dump_bundle` writes the same canonical form (with the sha256), so equal policies give equal
bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from edrfleet.errors import InputError
from edrfleet.policy.limits import (
    EDR_CWD_CLASSES,
    EDR_NSYM,
    EDR_PF_BITS,
    EDR_SYM_CWD,
    EDR_TRANS_MAX,
    MAX_CANDIDATES,
    MAX_TRANS_TOTAL,
)

FORMAT = "edrfleet-bundle"
VERSION = 1
# a bundle with a prefilter (executables.prefilter): an agent that reads only version 1 would
# never run the prefiltered groups, so it must refuse the bundle
PREFILTER_VERSION = 2
# a bundle with cwd classes (cwd_classes): an older agent would lay its longer class tables
# into a smaller kernel struct, so it must refuse the bundle (a prefilter may come with it)
CWD_VERSION = 3
VERSIONS = (VERSION, PREFILTER_VERSION, CWD_VERSION)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def bundle_sha256(bundle: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``bundle`` without its ``"sha256"`` key."""
    body = {k: v for k, v in bundle.items() if k != "sha256"}
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def dump_bundle(bundle: dict[str, Any]) -> str:
    """Canonical JSON text of the bundle (sorted keys, no spaces, final newline)."""
    return _canonical(bundle) + "\n"


class BundleFormatError(InputError, ValueError):
    """A bundle JSON this edrfleet cannot use: damaged, edited, another format or version."""


def _fail(message: str) -> BundleFormatError:
    return BundleFormatError(f"bad policy bundle: {message}")


def check_structure(bundle: Any) -> None:
    """Check the structure a simulator or packer relies on.

    Raises:
        ValueError: naming the first inconsistency found.
    """
    if not isinstance(bundle, dict):
        raise _fail("not a JSON object")
    if bundle.get("format") != FORMAT:
        raise _fail(f"format is {bundle.get('format')!r}, expected {FORMAT!r}")
    if bundle.get("version") not in VERSIONS:
        raise _fail(f"version {bundle.get('version')!r} is not supported (this edrfleet "
                    f"reads versions {', '.join(map(str, VERSIONS))}); recompile the policy")
    for key in ("rules", "groups", "dfas", "executables", "search_path"):
        if key not in bundle:
            raise _fail(f"missing key {key!r}")
    nrules, ngroups, ndfas = len(bundle["rules"]), len(bundle["groups"]), len(bundle["dfas"])
    ncwd = len(bundle.get("cwd_classes", ()))
    if ncwd > EDR_CWD_CLASSES:
        raise _fail(f"{ncwd} cwd_classes; the kernel takes {EDR_CWD_CLASSES}")
    for i, dfa in enumerate(bundle["dfas"]):
        ncls = dfa["nclasses"]
        sizes = (EDR_NSYM, EDR_SYM_CWD + ncwd) if ncwd else (EDR_NSYM,)
        if len(dfa["classes"]) not in sizes or any(not 0 <= c < ncls for c in dfa["classes"]):
            raise _fail(f"dfas[{i}].classes must be {' or '.join(map(str, sizes))} class ids "
                        f"below {ncls}")
        trans = dfa["trans"]
        if not trans or len(trans) % ncls:
            raise _fail(f"dfas[{i}].trans length {len(trans)} is not nstates * {ncls}")
        nstates = len(trans) // ncls
        if not 0 <= dfa["start"] < nstates or any(not 0 <= t < nstates for t in trans):
            raise _fail(f"dfas[{i}] has a state index out of range")
        if any(not 0 <= s < nstates for s, _ in dfa["accept"]):
            raise _fail(f"dfas[{i}].accept names a state out of range")
    for i, group in enumerate(bundle["groups"]):
        if group["dfa"] is not None and not 0 <= group["dfa"] < ndfas:
            raise _fail(f"groups[{i}].dfa out of range")
        if any(not 0 <= r < nrules for r, _ in group["rules"]):
            raise _fail(f"groups[{i}] names a rule out of range")
    exes = bundle["executables"]
    lists = [*exes["names"].values(), *exes["paths"].values(), exes["wildcard"]]
    pf = exes.get("prefilter")
    if pf is not None:
        lists.append(pf["groups"])
        if not 0 <= pf["dfa"] < ndfas or len(pf["groups"]) > EDR_PF_BITS:
            raise _fail("executables.prefilter: automaton out of range or too many groups")
        if bundle.get("version") not in (PREFILTER_VERSION, CWD_VERSION):
            raise _fail(f"a prefilter needs version {PREFILTER_VERSION} or {CWD_VERSION}")
    if "cwd_classes" in bundle and bundle.get("version") != CWD_VERSION:
        raise _fail(f"cwd_classes need version {CWD_VERSION}")
    if any(not 0 <= g < ngroups for groups in lists for g in groups):
        raise _fail("executables name a group out of range")


def load_bundle(text: str) -> dict[str, Any]:
    """Parse bundle JSON, check format, version, sha256 and structure.

    Raises:
        ValueError: not JSON, another format or version, a sha256 mismatch (the file was
            edited or truncated), or an inconsistent table.
    """
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(bundle, dict):
        raise _fail("not a JSON object")
    if bundle.get("format") != FORMAT:
        raise _fail(f"format is {bundle.get('format')!r}, expected {FORMAT!r}")
    want = bundle.get("sha256")
    got = bundle_sha256(bundle)
    if want != got:
        raise _fail(f"sha256 mismatch: the file says {want}, its content hashes to {got} "
                    "(edited or truncated? recompile it)")
    try:
        check_structure(bundle)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("bad policy bundle"):
            raise
        raise _fail(f"malformed table ({exc!r})") from None
    return bundle


def is_bundle_text(text: str) -> bool:
    """Whether a policy file's text is a compiled bundle (a JSON object with a ``format`` key)
    rather than a policy YAML.  A YAML policy may be written as a flow mapping (``{version:
    1, ...}``): starting with ``{`` is not enough, it must also parse as JSON."""
    if not text.lstrip().startswith("{"):
        return False
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False  # a YAML flow mapping, not JSON
    return isinstance(data, dict) and "format" in data


def bundle_summary(bundle: dict[str, Any]) -> list[str]:
    """What a bundle holds and how much of the kernel's tables it takes, one fact a line
    (what `edrfleet policy check` prints)."""
    rules = bundle["rules"]
    by_action = Counter(r["action"] for r in rules)
    exes = bundle["executables"]
    pf_groups = exes.get("prefilter", {}).get("groups", [])
    pf_rules = sum(len(bundle["groups"][g]["rules"]) for g in pf_groups)
    wild_rules = sum(len(bundle["groups"][g]["rules"]) for g in exes["wildcard"]) + pf_rules
    bits = [bin(_or(n for _, n in g["rules"])).count("1") for g in bundle["groups"]]
    dfas = bundle["dfas"]
    states = sum(len(d["trans"]) // d["nclasses"] for d in dfas)
    trans = sum(len(d["trans"]) for d in dfas)
    masks = {m for d in dfas for _, m in d["accept"]}
    actions = ", ".join(f"{a} {by_action[a]}" for a in ("block", "log", "allow") if by_action[a])
    scope = ", ".join(bundle["scope"]["cgroups"]) or "whole host"
    return [
        f"rules: {len(rules)}" + (f" ({actions})" if actions else ""),
        f"mode: {bundle['mode']}, backend: {bundle['backend']}, unscanned: "
        f"{bundle['unscanned']}, scope: {scope}",
        f"executables: {len(exes['names'])} names, {len(exes['paths'])} paths, "
        f"{wild_rules} rules for any executable" + (
            f" ({pf_rules} prefiltered in {len(pf_groups)} groups: they run when argv holds "
            "one of their literals)" if pf_groups else ""),
        f"groups: {len(bundle['groups'])}, condition bits: {sum(bits)} "
        f"(at most {max(bits, default=0)} in one group)",
        f"automata: {len(dfas)} DFAs, {states} states, at most "
        f"{max((d['nclasses'] for d in dfas), default=0)} classes, {trans} transition entries "
        f"(kernel table: {EDR_TRANS_MAX} by default, {MAX_TRANS_TOTAL} at most), "
        f"{len(masks)} distinct condition masks",
        f"candidates: checked at most {MAX_CANDIDATES} groups for any exec - its inode, its "
        "name as executed and its real name, fileless, rules for any executable; a crafted copy "
        "(two names and another file's size and head) past that fails closed in the kernel",
        f"sha256: {bundle['sha256']}",
    ]


def _or(values: Iterable[int]) -> int:
    out = 0
    for v in values:
        out |= v
    return out
