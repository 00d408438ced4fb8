"""The process-context matchers of a rule: user, parent executable, working directory.

Shared by `simulate` (bundle) and `reference` (policy), and mirrored by the kernel
(``ctx_holds`` in bpf/context.c):

- ``user``: the exec's real uid is one of the rule's uids or of the uids its user names have on
  the host (resolved when the agent fills the maps; a name unknown there never matches);
- ``parent.executable``: the parent's executable (``real_parent->mm->exe_file``) answers to one
  of the keys, like ``executable`` does (real basename, or the inode of a path / of a name
  through the search path); a parent without an executable matches nothing;
- ``cwd``: one of the directories from the working directory up to '/' is a prefix directory
  (by inode, resolved when the maps are filled).  A cwd deeper than ``EDR_CWD_DEPTH``
  directories is unknown: it counts as matching for block and log rules when the policy's
  ``limits.unscanned`` is ``block`` (fail closed), never for allow rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from edrfleet.policy.identity import (
    CachedStat,
    ExecTarget,
    Identity,
    cwd_ancestors,
    key_matches,
    parent_target,
    user_uid,
)
from edrfleet.policy.limits import EDR_CWD_DEPTH

UserFn = Callable[[str], "int | None"]


@dataclass(frozen=True)
class ExecContext:
    uid: int
    parent: ExecTarget | None  # None: unknown
    cwd: list[Identity] | None  # directories up to '/', None: too deep
    cwd_known: bool  # False: no cwd given at all (cwd rules never match)
    unscanned_block: bool
    search_path: Sequence[str]
    st: CachedStat
    user_uid: UserFn


def context_holds(ctx: ExecContext, action: str, uids: Iterable[int], users: Iterable[str],
                  parents: Sequence[str], cwds: Sequence[str]) -> bool:
    """Do the rule's user, parent and cwd matchers (those it has) hold for this exec?"""
    uids, users = tuple(uids), tuple(users)
    allowed = list(uids) + [u for u in (ctx.user_uid(n) for n in users) if u is not None]
    if (uids or users) and ctx.uid not in allowed:
        return False
    if parents and (ctx.parent is None or not any(
            key_matches(ctx.parent, key, ctx.search_path, ctx.st) for key in parents)):
        return False
    if not cwds:
        return True
    if not ctx.cwd_known:
        return False
    if ctx.cwd is None:
        return ctx.unscanned_block and action != "allow"
    dirs = set(ctx.cwd)
    return any(ctx.st.identity(p.encode()) in dirs for p in cwds)


def make_context(st: CachedStat, *, uid: int, parent: str | bytes | None,
                 parent_identity: Identity | None, cwd: str | bytes | None,
                 unscanned_block: bool, search_path: Sequence[str],
                 users: UserFn | None) -> ExecContext:
    """The context of one exec from what a caller of `simulate` / `reference_decide` knows."""
    return ExecContext(
        uid=uid, parent=parent_target(parent, parent_identity, st),
        cwd=None if cwd is None else cwd_ancestors(cwd, st, EDR_CWD_DEPTH),
        cwd_known=cwd is not None, unscanned_block=unscanned_block,
        search_path=search_path, st=st, user_uid=users or user_uid)
