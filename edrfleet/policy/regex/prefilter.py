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


def pack_order(rules: Sequence[tuple[int, LitSet]]) -> list[int]:
    """Rule indexes ordered so that rules with the same literals are neighbours."""
    return [r for _, r in sorted((sorted(lits), r) for r, lits in rules)]


def pack_prefiltered(rules: Sequence[tuple[int, LitSet]],
                     pack: Callable[[list[int]], list]) -> list:
    """Groups of the prefiltered rules, at most EDR_PF_BITS: ``pack(rule indexes)`` builds
    the groups of one chunk (and splits a group whose automaton is too large)."""
    order = pack_order(rules)
    per = max(1, -(-len(order) // TARGET_GROUPS))
    while True:
        groups = [g for i in range(0, len(order), per) for g in pack(order[i:i + per])]
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
