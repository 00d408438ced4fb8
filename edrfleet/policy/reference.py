"""The independent oracle: decide an exec straight from the `Policy` with Python's ``re`` and
``fnmatch`` (bytes), no automata.  Tests check ``simulate(compile_policy(p)) ==
reference_decide(p)``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence

from edrfleet.policy.context import ExecContext, UserFn, context_holds, make_context
from edrfleet.policy.decision import Decision, decide
from edrfleet.policy.identity import (
    CachedStat,
    ExecTarget,
    Identity,
    StatFn,
    applet_names,
    encode_argv,
    is_multicall,
    key_matches,
    resolve_target,
)
from edrfleet.policy.limits import DEFAULT_SEARCH_PATH, EDR_ARGS_MAX
from edrfleet.policy.model import ArgMatcher, Policy, Rule
from edrfleet.policy.spell.cwd import class_by_inode, cwd_classes, joined_holds
from edrfleet.policy.spell.options import option_holds
from edrfleet.policy.spell.paths import path_holds
from edrfleet.policy.spell.spec import OptionSpec, PathSpec


def _arg_holds(m: ArgMatcher, args: Sequence[bytes], cwd: bytes | None = None) -> bool:
    """``cwd``: the canonical working directory when it has a cwd class (relative path
    arguments are joined to it), else None."""
    if m.kind == "any":
        literals = {lit.encode() for lit in m.value}
        return any(a in literals for a in args)
    if m.kind == "glob":
        pattern = str(m.value).encode()
        return any(fnmatch.fnmatchcase(a, pattern) for a in args)
    if m.kind == "option":
        return option_holds(OptionSpec.from_text(str(m.value)), args)
    if m.kind == "path":
        spec = PathSpec.from_text(str(m.value))
        return any(path_holds(spec, a) or joined_holds(spec, a, cwd) for a in args)
    rx = re.compile(str(m.value).encode())
    return any(rx.search(a) for a in args)


def applets(policy: Policy, argv: Sequence[bytes], target: ExecTarget,
            st: CachedStat) -> list[bytes]:
    """The applet names of a multi-call binary (none for any other executable)."""
    multicall = {"names": [m for m in policy.multicall if not m.startswith("/")],
                 "paths": [m for m in policy.multicall if m.startswith("/")]}
    if not policy.multicall or not is_multicall(target, multicall, DEFAULT_SEARCH_PATH, st):
        return []
    return applet_names(argv, multicall, EDR_ARGS_MAX, target.names[-1])


def rule_matches(rule: Rule, argv: Sequence[bytes], target: ExecTarget,
                 ctx: ExecContext, fileless: bool = False, applet: Sequence[bytes] = (),
                 cwd: bytes | None = None) -> bool:
    """Every key of the rule's ``match`` holds for this exec (``applet``: the names a
    multi-call binary answers to as well; name keys only; ``cwd``: see `_arg_holds`)."""
    if rule.fileless and not fileless:
        return False
    if rule.executables and not any(
            key_matches(target, exe, DEFAULT_SEARCH_PATH, ctx.st) or exe.encode() in applet
            for exe in rule.executables):
        return False
    if not context_holds(ctx, rule.action, rule.uids, rule.users, rule.parents, rule.cwds,
                         rule.ancestors, rule.inet_stdio):
        return False
    if not all(_arg_holds(m, argv[1:], cwd) for m in rule.args):
        return False
    line = b" ".join(argv)
    return all(re.search(rx.encode(), line) for rx in rule.cmdlines or
               ((rule.cmdline,) if rule.cmdline is not None else ()))


def reference_decide(
    policy: Policy,
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
    """Same contract as `edrfleet.policy.simulate.simulate`, computed from the policy."""
    args = encode_argv(argv)
    st = CachedStat(stat)
    target = resolve_target(args, filename=filename, identity=identity, st=st, path=path)
    ctx = make_context(st, uid=uid, parent=parent, parent_identity=parent_identity, cwd=cwd,
                       unscanned_block=policy.unscanned == "block",
                       search_path=DEFAULT_SEARCH_PATH, users=users, ancestors=ancestors,
                       inet_stdio=inet_stdio)
    applet = applets(policy, args, target, st)
    specs = [PathSpec.from_text(str(m.value)) for r in policy.rules for m in r.args
             if m.kind == "path"]
    joined = class_by_inode(cwd_classes(specs), cwd, st.identity)[1] if specs else None
    return decide((i, r.id, r.action) for i, r in enumerate(policy.rules)
                  if rule_matches(r, args, target, ctx, fileless, applet, joined))
