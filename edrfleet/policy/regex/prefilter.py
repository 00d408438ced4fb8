"""The literal prefilter of rules that name no executable (docs/policy-bundle.md).

Without it every such rule's automaton runs on every exec, and the kernel's candidate cap
holds about fifty regexes.  With it (as Hyperscan, RE2::Set and Snort do): each rule gets the
literals one of which every match must contain (``literals.required``, the best of its
conditions, since all must hold), the rules are packed into *prefiltered groups* (rules with
the same literals side by side, so one literal wakes one group), and one more automaton - an
Aho-Corasick automaton built as a search DFA in the bundle's table format, condition bit i =
prefiltered group i - is run once over argv.  Only groups whose bit it sets become candidates.

Rules with no usable literal stay *always-run* wildcard groups, bounded by the candidate cap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edrfleet.errors import InputError
from edrfleet.policy.limits import EDR_PF_BITS, EDR_RULES_PER_GROUP, MAX_CLASSES
from edrfleet.policy.regex.dfa import Dfa, DfaTooLarge, build_dfa
from edrfleet.policy.regex.literals import LitSet, better, literal_ast, required
from edrfleet.policy.regex.parse import Node

MAX_PF_STATES = 16384  # states of the prefilter automaton (linear in the literals' length)
TARGET_GROUPS = 48  # first packing aims below EDR_PF_BITS groups, leaving room for splits


class PrefilterTooLarge(InputError, ValueError):
    """The literals of the prefiltered rules do not fit one automaton."""


def rule_literals(asts: Sequence[Node]) -> LitSet | None:
    """Literals one of which occurs in every exec the rule matches (its conditions all
    hold, so any one condition's set will do: the best), or None."""
    best: LitSet | None = None
    for ast in asts:
        best = better(best, required(ast))
    return best


def clusters(rules: Sequence[tuple[int, LitSet]]) -> list[list[int]]:
    """Rule indexes in runs of the same literals (in literal order): one literal then wakes
    one group, however many rules share it (``/dev/tcp/`` in a reverse-shell blacklist)."""
    runs: dict[LitSet, list[int]] = {}
    for r, lits in sorted(rules, key=lambda t: (sorted(t[1]), t[0])):
        runs.setdefault(lits, []).append(r)
    return list(runs.values())


def pack_prefiltered(rules: Sequence[tuple[int, LitSet]],
                     pack: Callable[[list[int]], list]) -> list:
    """Groups of the prefiltered rules, at most EDR_PF_BITS if it can: ``pack(rule indexes)``
    builds the groups of one chunk (and splits a group whose automaton is too large).  Rules
    sharing their literals are one chunk; the others are chunked ``per`` at a time, ``per``
    doubling until the groups fit the bits."""
    runs = clusters(rules)
    shared = [run for run in runs if len(run) > 1]
    single = [run[0] for run in runs if len(run) == 1]
    per = max(1, -(-len(single) // max(1, TARGET_GROUPS - len(shared))))
    while True:
        chunks = shared + [single[i:i + per] for i in range(0, len(single), per)]
        groups = [g for chunk in chunks for g in pack(chunk)]
        if len(groups) <= EDR_PF_BITS or per >= EDR_RULES_PER_GROUP:
            return groups
        per = min(per * 2, EDR_RULES_PER_GROUP)


def prefilter_dfa(group_literals: Sequence[LitSet]) -> Dfa:
    """The automaton that sets bit i when a literal of group i occurs in the stream.

    Raises:
        PrefilterTooLarge: more than MAX_PF_STATES states or MAX_CLASSES classes.
    """
    conds = [(literal_ast(lits), bit) for bit, lits in enumerate(group_literals)]
    try:
        dfa = build_dfa([], conds, max_states=MAX_PF_STATES)
    except DfaTooLarge:
        raise PrefilterTooLarge(f"more than {MAX_PF_STATES} states") from None
    if dfa.nclasses > MAX_CLASSES:
        raise PrefilterTooLarge(f"{dfa.nclasses} byte classes, the kernel takes {MAX_CLASSES}")
    return dfa
