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
    encode_argv,
    key_matches,
    resolve_target,
)
from edrfleet.policy.limits import DEFAULT_SEARCH_PATH
from edrfleet.policy.model import ArgMatcher, Policy, Rule
from edrfleet.policy.spell.options import option_holds
from edrfleet.policy.spell.paths import path_holds
from edrfleet.policy.spell.spec import OptionSpec, PathSpec


def _arg_holds(m: ArgMatcher, args: Sequence[bytes]) -> bool:
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
        return any(path_holds(spec, a) for a in args)
    rx = re.compile(str(m.value).encode())
    return any(rx.search(a) for a in args)


def rule_matches(rule: Rule, argv: Sequence[bytes], target: ExecTarget,
                 ctx: ExecContext, fileless: bool = False) -> bool:
    """Every key of the rule's ``match`` holds for this exec."""
    if rule.fileless and not fileless:
        return False
    if rule.executables and not any(
            key_matches(target, exe, DEFAULT_SEARCH_PATH, ctx.st) for exe in rule.executables):
        return False
    if not context_holds(ctx, rule.action, rule.uids, rule.users, rule.parents, rule.cwds):
        return False
    if not all(_arg_holds(m, argv[1:]) for m in rule.args):
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
) -> Decision:
    """Same contract as `edrfleet.policy.simulate.simulate`, computed from the policy."""
    args = encode_argv(argv)
    st = CachedStat(stat)
    target = resolve_target(args, filename=filename, identity=identity, st=st, path=path)
    ctx = make_context(st, uid=uid, parent=parent, parent_identity=parent_identity, cwd=cwd,
                       unscanned_block=policy.unscanned == "block",
                       search_path=DEFAULT_SEARCH_PATH, users=users)
    return decide((i, r.id, r.action) for i, r in enumerate(policy.rules)
                  if rule_matches(r, args, target, ctx, fileless))
