"""Run a compiled bundle on one exec, exactly as the kernel does (docs/policy-bundle.md),
limits included: the candidate cap, the argv scan budget, the name key length.

>>> from edrfleet.policy import compile_policy, load_policy_text
>>> b = compile_policy(load_policy_text('''
... version: 1
... rules:
...   - {id: rm-root, description: d, severity: critical, action: block,
...      match: {executable: [rm], args: [{any: ["-rf"]}, {glob: "/"}]}}
... '''))
>>> simulate(b, ["rm", "-rf", "/"], identity=(0, 0)).rule
'rm-root'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edrfleet.policy.context import UserFn, context_holds, make_context
from edrfleet.policy.decision import Decision, decide
from edrfleet.policy.identity import (
    CachedStat,
    ExecTarget,
    Identity,
    StatFn,
    applet_names,
    encode_argv,
    is_multicall,
    resolve_target,
    stream_symbols,
)
from edrfleet.policy.limits import (
    EDR_ARGS_MAX,
    EDR_CAND_MAX,
    EDR_GROUPS_PER_KEY,
    EDR_NSYM,
    EDR_SCAN_WINDOW,
    EDR_SYM_CWD,
    EDR_TAIL_CALLS,
    NAME_BYTES_MAX,
    name_fits,
)
from edrfleet.policy.simulate_identity import (
    LOADER_ARGS,
    Note,
    Protected,
    block_groups,
    is_loader,
    likeness,
    loader_program,
    merge_lists,
    protected_files,
)
from edrfleet.policy.spell.cwd import class_by_inode

PREFILTER = -1  # the prefilter automaton's place among the candidates


def run_dfa(dfa: dict[str, Any], symbols: Sequence[int], cwd_class: int = 0) -> int:
    """Feed symbols to one bundle DFA; return the OR of the accept masks met.  A DFA that
    reads cwd-class symbols (a classes table longer than EDR_NSYM) gets the symbol of
    ``cwd_class`` after every NUL, as bpf/scan.c feeds it (0: none)."""
    ncls, classes, trans = dfa["nclasses"], dfa["classes"], dfa["trans"]
    accept = {s: m for s, m in dfa["accept"]}
    state, mask = dfa["start"], 0
    extra = EDR_SYM_CWD + cwd_class - 1 if cwd_class and len(classes) > EDR_NSYM else None
    for sym in symbols:
        state = trans[state * ncls + classes[sym]]
        mask |= accept.get(state, 0)
        if sym == 0 and extra is not None:
            state = trans[state * ncls + classes[extra]]
            mask |= accept.get(state, 0)
    return mask


def cwd_class(bundle: dict[str, Any], cwd: str | bytes | None, st: CachedStat) -> int:
    """The cwd's class (0: none), as the kernel finds it (bpf/context.c cwd_class_ctx): the
    nearest of the cwd, its parent and grandparent whose inode is an anchor directory's."""
    classes = [(a, level) for a, level in bundle.get("cwd_classes", ())]
    return class_by_inode(classes, cwd, st.identity)[0]


@dataclass
class Candidates:
    """The groups the kernel evaluates for one exec (``groups``, in its order) and what its
    limits left out: ``dropped`` groups past EDR_CAND_MAX (the exec fails closed when one has
    a block rule), ``unjudged`` a loader whose PROGRAM it did not find (fails closed);
    ``argv`` what the automata read (from PROGRAM on for the loader); ``notes`` how."""

    groups: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    unjudged: bool = False
    argv: list[bytes] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def add(self, groups: list[int]) -> None:
        for g in groups:
            if g in self.groups or g in self.dropped:
                continue
            (self.groups if len(self.groups) < EDR_CAND_MAX else self.dropped).append(g)


def _listed(bundle: dict[str, Any], groups: list[int], cands: Candidates) -> list[int]:
    """What the agent's list for one key holds: when links make more groups one file than a
    list takes, block groups first and the rest left out (agent/maps.py _merge)."""
    if len(groups) <= EDR_GROUPS_PER_KEY:
        return groups
    ordered = sorted(groups, key=lambda g: not bundle["groups"][g]["has_block"])
    cands.dropped.extend(ordered[EDR_GROUPS_PER_KEY:])
    return ordered[:EDR_GROUPS_PER_KEY]


def _merged(bundle: dict[str, Any], lists: list[tuple[int, ...]], cands: Candidates
            ) -> list[int]:
    """One key's list the agent merged from several files' (a copy of two protected files,
    the protected files of one size): what it left out is dropped."""
    kept, left = merge_lists(lists, block_groups(bundle))
    cands.dropped.extend(g for g in left if g not in cands.dropped)
    return kept


def _name_groups(bundle: dict[str, Any], name: bytes, cands: Candidates, why: str) -> None:
    """A basename's groups (a name longer than the kernel's key is never one)."""
    if not name:
        return
    if not name_fits(name):
        cands.notes.append(Note("name-too-long", f"{why} {_text(name)}: {len(name)} bytes, the "
                                f"kernel matches names of at most {NAME_BYTES_MAX}"))
        return
    cands.add(bundle["executables"]["names"].get(name.decode("utf-8", "surrogateescape"), []))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _identity_groups(bundle: dict[str, Any], target: ExecTarget, st: CachedStat,
                     fileless: bool, cands: Candidates) -> list[int]:
    """The inode's list when a policy name or path leads to the file; otherwise the list of the
    protected files of its size and head (bpf/identity.c "fsizes": every exec of a file the
    kernel does not know by inode, fileless or not); returns that list, which the kernel adds
    after the names."""
    protected = protected_files(bundle, st)
    own = protected.get(target.identity) if target.identity is not None and not fileless else None
    if own is not None:  # the agent's "inodes" list for the file (agent/maps.py _merge)
        cands.dropped.extend(g for g in own.left if g not in cands.dropped)
        cands.add(list(own.groups))
        return []
    like = likeness(target, protected, st, hash_content=not fileless)
    if like.copies:
        cands.notes.append(Note("content", "a byte-identical copy of " + ", ".join(
            _text(p.path) for p in like.copies) + " (judged as it by its size and head)",
            host=True))
    elif like.sizes:
        what = "a fileless exec" if fileless else "a file no policy name or path leads to"
        cands.notes.append(_size_note(like.sizes, what))
    return _merged(bundle, [p.groups for p in like.sizes], cands) if like.sizes else []


def _size_note(same: list[Protected], what: str) -> Note:
    return Note("size", f"{what} of the size of " + ", ".join(_text(p.path) for p in same)
                + ": judged by size, which depends on the host's files", host=True)


def candidate_groups(bundle: dict[str, Any], target: ExecTarget, st: CachedStat,
                     fileless: bool = False, argv: Sequence[bytes] = ()) -> Candidates:
    """Groups run for this exec, as bpf/candidates.c begin() collects them: the prefilter
    (`PREFILTER`, when the policy has one), the inode's list (a content copy's), the
    as-executed basename's, the real basename's (a name of more than NAME_BYTES_MAX bytes
    cannot be a key), the fileless list and the size list, the wildcard list; then the
    loader's PROGRAM (bpf/loader.c) and for a multi-call binary the applet's names
    (add_applet); at most EDR_CAND_MAX."""
    exes = bundle["executables"]
    cands = Candidates(argv=list(argv))
    if "prefilter" in exes:
        cands.add([PREFILTER])
    by_size = _identity_groups(bundle, target, st, fileless, cands)
    for i, name in enumerate(target.names):
        _name_groups(bundle, name, cands, "the executable's name" if i else "the name executed")
    if fileless:
        cands.add(exes.get("fileless", []))
    cands.add(by_size)
    cands.add(exes["wildcard"])
    if is_loader(target.names[-1]):
        _add_loader_program(bundle, cands)
    multicall = exes.get("multicall")
    if multicall and is_multicall(target, multicall, bundle["search_path"], st):
        for name in applet_names(argv, multicall, EDR_ARGS_MAX, target.names[-1]):
            before = len(cands.groups) + len(cands.dropped)
            _name_groups(bundle, name, cands, "the applet")
            if len(cands.groups) + len(cands.dropped) > before:
                cands.notes.append(Note("applet", f"multi-call applet {_text(name)}"))
    if cands.dropped:
        cands.notes.append(Note("dropped", f"{len(cands.dropped)} rule groups past the "
                                f"{EDR_CAND_MAX} the kernel evaluates for one exec"))
    return cands


def _add_loader_program(bundle: dict[str, Any], cands: Candidates) -> None:
    """The dynamic loader run directly: PROGRAM's name groups, and argv from PROGRAM on."""
    run = loader_program(cands.argv)
    if run.index is None:
        cands.unjudged = run.unjudged
        if run.unjudged:
            cands.notes.append(Note("loader-unjudged", f"the loader's PROGRAM is not among its "
                                    f"first {LOADER_ARGS} arguments or {EDR_ARGS_MAX} bytes"))
        return
    _name_groups(bundle, run.name, cands, "the loader's program")
    cands.argv = cands.argv[run.index:]
    cands.notes.append(Note("loader", f"the dynamic loader runs {_text(run.name)}: judged as "
                            f"that name on its argv (by basename: the kernel has no inode for "
                            f"a path in argv)"))


def scan_budget(bundle: dict[str, Any], groups: Sequence[int], used: int = 1) -> int | None:
    """argv bytes the kernel scans for these candidates (bpf/candidates.c fit_budget, with the
    header's EDR_SCAN_WINDOW: an agent that stepped it down on an old kernel scans less) when
    ``used`` tail calls are spent already; None when there is no automaton to run."""
    dfas = sum(1 for g in groups if g == PREFILTER or bundle["groups"][g]["dfa"] is not None)
    if not dfas:
        return None
    fixed = len(groups) + used
    windows = (EDR_TAIL_CALLS - fixed) // dfas if fixed < EDR_TAIL_CALLS else 0
    return windows * EDR_SCAN_WINDOW


def simulate(
    bundle: dict[str, Any],
    argv: Sequence[str | bytes],
    *,
    filename: str | bytes | None = None,
    identity: Identity | None = None,
    uid: int = 0,
    stat: StatFn = os.stat,
    path: str | bytes | None = None,
    parent: str | bytes | None = None,
    parent_identity: Identity | None = None,
    cwd: str | bytes | None = None,
    users: UserFn | None = None,
    fileless: bool = False,
    ancestors: Sequence[str | bytes] = (),
    inet_stdio: Sequence[str] = (),
) -> Decision:
    """Decide one exec with the bundle's tables.

    Args:
        bundle: a compiled bundle (`compile_policy` or `load_bundle`).
        argv: the argument vector (str items are UTF-8 with surrogateescape).
        filename: the path executed (default ``argv[0]``); without '/', looked up on ``path``
            (default ``$PATH``) like execvp.
        identity: ``(st_dev, st_ino)`` of the executed file (default: ``stat`` of it).
        uid: the (real) uid of the exec.
        stat: used for every file lookup (inject a fake in tests).
        parent: path of the parent's executable (None: unknown, parent rules do not match);
            ``parent_identity`` its ``(st_dev, st_ino)`` (default: ``stat`` of it).
        cwd: the working directory (None: unknown, cwd rules do not match).
        users: user name -> uid on the host (default: the passwd database).
        fileless: the executable has no link on any filesystem (memfd, O_TMPFILE, deleted).
        ancestors: the executables above the parent, nearest first (``match.ancestor`` sees
            the parent and these, EDR_ANCESTOR_DEPTH in all).
        inet_stdio: whose fd 0-2 hold a network socket: "self" (the new process), "parent".

    Returns:
        the `Decision`; its ``notes`` say how the exec was judged beyond its names (loader,
        applet, content copy, size, the kernel's limits), and whether that depends on the host.

    Raises:
        ValueError: an argv item contains NUL, or argv is empty without ``filename``.
    """
    args = encode_argv(argv)
    st = CachedStat(stat)
    target = resolve_target(args, filename=filename, identity=identity, st=st, path=path)
    ctx = make_context(st, uid=uid, parent=parent, parent_identity=parent_identity, cwd=cwd,
                       unscanned_block=bundle.get("unscanned", "block") == "block",
                       search_path=bundle["search_path"], users=users, ancestors=ancestors,
                       inet_stdio=inet_stdio)
    cands = candidate_groups(bundle, target, st, fileless, args)
    if not cands.groups and not cands.unjudged:  # bpf/exec.c: no candidate, nothing judged
        return Decision("allow", None, (), notes=tuple(cands.notes))
    cls = cwd_class(bundle, cwd, st)
    args = cands.argv
    joined = b"\0".join(args)
    budget = scan_budget(bundle, cands.groups)
    short, symbols = _scanned(args, joined, budget)
    pf_unscanned = False
    if cands.groups[:1] == [PREFILTER]:
        read = len(joined) if budget is None else min(len(joined), budget)
        short, symbols, pf_unscanned = _run_prefilter(bundle, cands, args, joined, read,
                                                      (short, symbols))
    masks: dict[int, int] = {}
    rules = bundle["rules"]
    matched = []
    unscanned = pf_unscanned
    exes = bundle["executables"]
    wild = set(exes["wildcard"]) | set(exes.get("prefilter", {}).get("groups", ()))
    for g in cands.groups:
        if g == PREFILTER:
            continue
        group = bundle["groups"][g]
        d = group["dfa"]
        if d is None:
            mask = 0
        else:
            if d not in masks:
                masks[d] = run_dfa(bundle["dfas"][d], symbols, cls)
            mask = masks[d]
        # a long argv alone fails closed only where a block rule names the executable
        unscanned |= short and group["has_block"] and g not in wild
        for r, need in group["rules"]:
            rule = rules[r]
            if rule.get("fileless") and not fileless:
                continue
            if mask & need == need and context_holds(
                    ctx, rule["action"], rule["uids"], rule.get("users", ()),
                    rule.get("parents", ()), rule.get("cwds", ()),
                    rule.get("ancestors", ()), rule.get("inet_stdio", ())):
                matched.append((r, rule["id"], rule["action"]))
    fail_closed = None
    if ctx.unscanned_block:
        if cands.unjudged or any(bundle["groups"][g]["has_block"] for g in cands.dropped):
            fail_closed = "dropped"
        elif unscanned:
            fail_closed = "unscanned"
    notes = cands.notes
    if short:
        notes.append(Note("unscanned", f"argv is {len(joined)} bytes; the kernel scans "
                          f"{budget} for these {len(cands.groups)} groups"))
    return replace(decide(matched, fail_closed), notes=tuple(notes))


def _scanned(args: list[bytes], joined: bytes, budget: int | None) -> tuple[bool, list[int]]:
    """Whether the budget cuts argv, and the symbols the automata read."""
    short = budget is not None and len(joined) > budget
    if not short:
        return short, stream_symbols(args)
    if not budget:  # nothing to read: the kernel feeds BOS and EOS (bpf/scan.c start_scan)
        return short, stream_symbols([b""])
    # an argv cut to the budget is read without its end: no EOS (bpf/scan.c)
    return short, stream_symbols([joined[:budget]])[:-1]


def _run_prefilter(bundle: dict[str, Any], cands: Candidates, args: list[bytes], joined: bytes,
                   read: int, scanned: tuple[bool, list[int]]
                   ) -> tuple[bool, list[int], bool]:
    """The prefilter, first candidate of the exec, has read ``read`` bytes: its automaton's
    bit i adds prefiltered group i (bit order, up to the cap), then the budget of the rest is
    computed again from the tail calls left (bpf/candidates.c expand_prefilter).  Returns
    the rest's (short, symbols) and whether the exec is unscanned: an added group with a block
    rule cannot read as far as the prefilter did."""
    pf = bundle["executables"]["prefilter"]
    mask = run_dfa(bundle["dfas"][pf["dfa"]], scanned[1])
    if read < len(joined):  # what it did not read woke nothing: not a fail-closed limit
        cands.notes.append(Note("prefilter-short", f"the prefilter read {read} of the argv's "
                                f"{len(joined)} bytes (the windows left beside "
                                f"{len(cands.groups) - 1} other groups): a literal past that "
                                f"runs no prefiltered rule"))
    before = len(cands.groups)
    cands.add([g for i, g in enumerate(pf["groups"]) if mask >> i & 1])
    hit_block = any(bundle["groups"][g]["has_block"] for g in cands.groups[before:])
    # the calls so far: the judge call that started it, and when it read argv, its windows
    # and the judge call it came back to (bpf/scan.c)
    used = 2 + -(-read // EDR_SCAN_WINDOW) if read else 1
    budget = scan_budget(bundle, cands.groups[1:], used)
    short, symbols = _scanned(args, joined, budget)
    rest = len(joined) if budget is None else min(len(joined), budget)
    # within the compiler's cap the prefilter reads a window at least; starved below it (more
    # candidates than the cap: links on the host) a prefiltered block rule fails closed
    starved = read < min(len(joined), EDR_SCAN_WINDOW) and pf_block(bundle)
    return short, symbols, hit_block and rest < read or starved


def pf_block(bundle: dict[str, Any]) -> bool:
    """Whether a prefiltered group has a block rule (the kernel's config pf_block != 0)."""
    return any(bundle["groups"][g]["has_block"]
               for g in bundle["executables"]["prefilter"]["groups"])
