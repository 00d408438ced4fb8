"""Run a compiled bundle on one exec, exactly as the kernel does (docs/policy-bundle.md).

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
from typing import Any

from edrfleet.policy.context import UserFn, context_holds, make_context
from edrfleet.policy.decision import Decision, decide
from edrfleet.policy.identity import (
    CachedStat,
    Identity,
    StatFn,
    encode_argv,
    key_matches,
    resolve_target,
    stream_symbols,
)


def run_dfa(dfa: dict[str, Any], symbols: Sequence[int]) -> int:
    """Feed symbols to one bundle DFA; return the OR of the accept masks met."""
    ncls, classes, trans = dfa["nclasses"], dfa["classes"], dfa["trans"]
    accept = {s: m for s, m in dfa["accept"]}
    state, mask = dfa["start"], 0
    for sym in symbols:
        state = trans[state * ncls + classes[sym]]
        mask |= accept.get(state, 0)
    return mask


def candidate_groups(bundle: dict[str, Any], target: Any, st: CachedStat) -> list[int]:
    """Groups run for this exec: names, inode (via paths and search_path), wildcard."""
    exes = bundle["executables"]
    search = bundle["search_path"]
    found: set[int] = set(exes["wildcard"])
    for table in (exes["names"], exes["paths"]):
        for key, groups in table.items():
            if key_matches(target, key, search, st):
                found.update(groups)
    return sorted(found)


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

    Returns:
        the `Decision`.

    Raises:
        ValueError: an argv item contains NUL, or argv is empty without ``filename``.
    """
    args = encode_argv(argv)
    st = CachedStat(stat)
    target = resolve_target(args, filename=filename, identity=identity, st=st, path=path)
    ctx = make_context(st, uid=uid, parent=parent, parent_identity=parent_identity, cwd=cwd,
                       unscanned_block=bundle.get("unscanned", "block") == "block",
                       search_path=bundle["search_path"], users=users)
    symbols = stream_symbols(args)
    masks: dict[int, int] = {}
    rules = bundle["rules"]
    matched = []
    for g in candidate_groups(bundle, target, st):
        group = bundle["groups"][g]
        d = group["dfa"]
        if d is None:
            mask = 0
        else:
            if d not in masks:
                masks[d] = run_dfa(bundle["dfas"][d], symbols)
            mask = masks[d]
        for r, need in group["rules"]:
            rule = rules[r]
            if mask & need == need and context_holds(
                    ctx, rule["action"], rule["uids"], rule.get("users", ()),
                    rule.get("parents", ()), rule.get("cwds", ())):
                matched.append((r, rule["id"], rule["action"]))
    return decide(matched)
