"""The process-context matchers of a rule: user, parent executable, working directory.

Shared by `simulate` (bundle) and `reference` (policy), and mirrored by the kernel
(``ctx_holds`` in bpf/context.c):

- ``user``: the exec's real uid is one of the rule's uids or of the uids its user names have on
  the host (resolved when the agent fills the maps; a name unknown there never matches);
- ``parent.executable``: the parent's executable (``real_parent->mm->exe_file``) answers to one
  of the keys, like ``executable`` does (real basename, or the inode of a path / of a name
  through the search path); a parent without an executable matches nothing;
- ``ancestor.executable``: like ``parent.executable``, for any of the first
  ``EDR_ANCESTOR_DEPTH`` ancestors (parent, grandparent, ...; ``real_parent`` walked in the
  kernel), so a wrapper in between (``timeout``, ``sh -c``, ``nohup``) hides nothing;
- ``inet_stdio``: fd 0, 1 or 2 of the new process (``self``) or of its parent (``parent``)
  is an AF_INET/AF_INET6 socket (read from the file tables at exec);
- ``cwd``: one of the directories from the working directory up to '/' is a prefix directory
  (by inode, resolved when the maps are filled); ``cwd_is``: the working directory itself is
  one of the directories.  A cwd deeper than ``EDR_CWD_DEPTH``
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
from edrfleet.policy.limits import EDR_ANCESTOR_DEPTH, EDR_CWD_DEPTH
from edrfleet.policy.model import EXACT_CWD

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
    ancestors: tuple[ExecTarget, ...] = ()  # parent first, at most EDR_ANCESTOR_DEPTH
    inet_stdio: frozenset[str] = frozenset()  # "self" / "parent": fd 0-2 hold a network socket


def context_holds(ctx: ExecContext, action: str, uids: Iterable[int], users: Iterable[str],
                  parents: Sequence[str], cwds: Sequence[str], ancestors: Sequence[str] = (),
                  inet_stdio: Sequence[str] = ()) -> bool:
    """Do the rule's user, parent, ancestor, inet_stdio and cwd matchers (those it has) hold
    for this exec?"""
    uids, users = tuple(uids), tuple(users)
    allowed = list(uids) + [u for u in (ctx.user_uid(n) for n in users) if u is not None]
    if (uids or users) and ctx.uid not in allowed:
        return False
    if parents and (ctx.parent is None or not any(
            key_matches(ctx.parent, key, ctx.search_path, ctx.st) for key in parents)):
        return False
    if ancestors and not any(key_matches(a, key, ctx.search_path, ctx.st)
                             for a in ctx.ancestors for key in ancestors):
        return False
    if inet_stdio and not ctx.inet_stdio.intersection(inet_stdio):
        return False
    if not cwds:
        return True
    if not ctx.cwd_known:
        return False
    if ctx.cwd is None:
        return ctx.unscanned_block and action != "allow"
    dirs = set(ctx.cwd)
    here = ctx.cwd[:1]  # the cwd itself, for match.cwd_is
    return any(ctx.st.identity(p[1:].encode()) in here if p.startswith(EXACT_CWD)
               else ctx.st.identity(p.encode()) in dirs for p in cwds)


def make_context(st: CachedStat, *, uid: int, parent: str | bytes | None,
                 parent_identity: Identity | None, cwd: str | bytes | None,
                 unscanned_block: bool, search_path: Sequence[str],
                 users: UserFn | None, ancestors: Sequence[str | bytes] = (),
                 inet_stdio: Iterable[str] = ()) -> ExecContext:
    """The context of one exec from what a caller of `simulate` / `reference_decide` knows
    (``ancestors``: the executables above the parent, nearest first)."""
    ptarget = parent_target(parent, parent_identity, st)
    chain = [ptarget] if ptarget is not None else []
    chain += [a for a in (parent_target(x, None, st) for x in ancestors) if a is not None]
    return ExecContext(
        uid=uid, parent=ptarget,
        cwd=None if cwd is None else cwd_ancestors(cwd, st, EDR_CWD_DEPTH),
        cwd_known=cwd is not None, unscanned_block=unscanned_block,
        search_path=search_path, st=st, user_uid=users or user_uid,
        ancestors=tuple(chain[:EDR_ANCESTOR_DEPTH]), inet_stdio=frozenset(inet_stdio))
