"""Policy -> bundle (docs/policy-bundle.md, format 1).

Steps, all deterministic (same policy, same bytes, same sha256):

1. every rule gets its index in policy order; its conditions are keyed so that identical
   conditions share one bit inside a group (``any`` literals are compared as a set);
2. rules are grouped by their *set* of executables (names and paths; none = wildcard), in order
   of first appearance; a group holds at most 64 rules and 64 condition bits, more start a new
   group for the same key set; wildcard rules with literals every match must contain are
   *prefiltered* instead (``regex/prefilter.py``): packed by literal, run only when the
   prefilter automaton (one more DFA, over all their literals) sees one;
3. each group gets one search DFA over all its conditions; a group whose DFA passes the state
   or class cap is split in two (by rules) until it fits or one rule alone is too large;
4. identical DFAs are stored once; kernel capacities are checked (`limits`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from edrfleet.policy.bundle import (
    FORMAT,
    PREFILTER_VERSION,
    VERSION,
    bundle_sha256,
    dump_bundle,
    is_bundle_text,
    load_bundle,
)
from edrfleet.policy.errors import PolicyError, raise_collected
from edrfleet.policy.limits import (
    COND_BITS,
    DEFAULT_SEARCH_PATH,
    EDR_GROUPS_PER_KEY,
    EDR_KEY_BITS,
    EDR_PF_BITS,
    EDR_POLICY_MAX_GROUPS,
    EDR_POLICY_MAX_INODES,
    EDR_POLICY_MAX_NAMES,
    EDR_POLICY_MAX_RULES,
    EDR_POLICY_MAX_SCOPE,
    EDR_RULES_PER_GROUP,
    MAX_ACCEPT_MASKS,
    MAX_CANDIDATES,
    MAX_CLASSES,
    MAX_DFA_STATES,
    MAX_TRANS_TOTAL,
)
from edrfleet.policy.loader import load_policy_text, read_policy_file
from edrfleet.policy.model import ArgMatcher, Policy, Rule
from edrfleet.policy.regex.dfa import Dfa, DfaTooLarge, build_dfa
from edrfleet.policy.regex.nfa import NfaTooLarge, group_nfa
from edrfleet.policy.regex.parse import ARG, CMD, Node, any_ast, glob_ast, regex_ast
from edrfleet.policy.regex.prefilter import (
    PrefilterTooLarge,
    pack_prefiltered,
    prefilter_dfa,
    rule_literals,
)
from edrfleet.policy.spell.options import option_ast
from edrfleet.policy.spell.paths import path_ast
from edrfleet.policy.spell.spec import OptionSpec, PathSpec

__all__ = ["compile_policy", "bundle_sha256", "dump_bundle", "load_bundle", "condition_keys"]

# Group key of the rules that name no executable but require a fileless one: run only for
# fileless execs (executables.fileless), not for every exec like the wildcard groups.
FILELESS_KEY = ("",)  # "" is never an executable name (the schema refuses it)
# Conditions that read the argv stream from BOS (entered where cmdline regexes are): an
# option's meaning depends on the arguments before it ('--').
WHOLE_ARGV = ("cmdline", "option")
# Group key of the prefiltered wildcard rules: run when the prefilter sees their literals.
PREFILTER_KEY = ("*",)
CondKey = tuple[str, Any]  # ("any", (b"lit", ...)) | ("glob"|"regex"|"cmdline", b"...")

_SIMPLIFY = ("simplify it: anchor it ('^...'), avoid '.*' or '.{m,n}' between pieces, "
             "or split it into several 'args' entries (each must hold)")


def _arg_key(m: ArgMatcher) -> CondKey:
    if m.kind == "any":
        return ("any", tuple(sorted({lit.encode() for lit in m.value})))
    return (m.kind, str(m.value).encode())


def _show(key: CondKey) -> str:
    """A condition as the policy spells it, for messages."""
    kind, value = key
    if kind == "any":
        return "any [" + ", ".join(v.decode(errors="replace") for v in value) + "]"
    text = value.decode(errors="replace")
    if kind in ("option", "path"):
        return f"args {kind} {text}"
    return f"cmdline regex {text!r}" if kind == "cmdline" else f"args {kind} {text!r}"


def condition_keys(rule: Rule) -> list[CondKey]:
    """The rule's conditions, deduplicated, in the order written."""
    keys: list[CondKey] = []
    for m in rule.args:
        key = _arg_key(m)
        if key not in keys:
            keys.append(key)
    for rx in rule.cmdlines or ((rule.cmdline,) if rule.cmdline is not None else ()):
        key = ("cmdline", rx.encode())
        if key not in keys:
            keys.append(key)
    return keys


def _condition_ast(key: CondKey) -> Node:
    kind, value = key
    if kind == "any":
        return any_ast(value)
    if kind == "glob":
        return glob_ast(value)
    if kind == "option":
        return option_ast(OptionSpec.from_text(value.decode()))
    if kind == "path":
        return path_ast(PathSpec.from_text(value.decode()))
    if kind == "regex":
        return regex_ast(value, ARG)
    return regex_ast(value, CMD)


@dataclass
class _Group:
    keyset: tuple[str, ...]
    rules: list[int]
    bits: dict[CondKey, int] = field(default_factory=dict)
    dfa: Dfa | None = None
    literals: frozenset = frozenset()  # prefiltered: the union of its rules' literals


class _Compilation:
    """One policy being compiled: its conditions, their ASTs, the errors found so far."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.errors: list[PolicyError] = []
        self.conds = [condition_keys(rule) for rule in policy.rules]
        self.asts: dict[CondKey, Node] = {}

    def error(self, rule: Rule | None, message: str, fix: str, line: int = 0, col: int = 0):
        self.errors.append(PolicyError(
            message, source=self.policy.source, line=line or (rule.line if rule else 0),
            col=col or (rule.col if rule and not line else 0), fix=fix))

    def ast(self, key: CondKey) -> Node:
        got = self.asts.get(key)
        if got is None:
            got = self.asts[key] = _condition_ast(key)
        return got

    def pack(self, keyset: tuple[str, ...], rules: list[int]) -> list[_Group]:
        """Greedy packing in policy order under the slot and bit limits."""
        groups: list[_Group] = []
        cur: _Group | None = None
        for r in rules:
            new = [k for k in self.conds[r] if cur is None or k not in cur.bits]
            if cur is None or len(cur.rules) >= EDR_RULES_PER_GROUP or (
                    len(cur.bits) + len(new) > COND_BITS):
                cur = _Group(keyset, [])
                groups.append(cur)
                new = list(self.conds[r])
            cur.rules.append(r)
            for k in new:
                cur.bits[k] = len(cur.bits)
        return groups

    def build(self, group: _Group) -> list[_Group]:
        """Build the group's DFA; split the group while it is too large."""
        if not group.bits:
            return [group]
        arg = [(self.ast(k), b) for k, b in group.bits.items() if k[0] not in WHOLE_ARGV]
        cmd = [(self.ast(k), b) for k, b in group.bits.items() if k[0] in WHOLE_ARGV]
        try:
            dfa = build_dfa(arg, cmd, max_states=MAX_DFA_STATES)
            if dfa.nclasses > MAX_CLASSES:
                raise DfaTooLarge(MAX_DFA_STATES)
        except DfaTooLarge:
            if len(group.rules) == 1:
                self.too_large(group.rules[0])
                return []
            half = (len(group.rules) + 1) // 2
            return [g for part in (group.rules[:half], group.rules[half:])
                    for sub in self.pack(group.keyset, part) for g in self.build(sub)]
        group.dfa = dfa
        return [group]

    def too_large(self, r: int) -> None:
        rule = self.policy.rules[r]
        for key in self.conds[r]:
            arg = [(self.ast(key), 0)] if key[0] not in WHOLE_ARGV else []
            cmd = [(self.ast(key), 0)] if key[0] in WHOLE_ARGV else []
            try:
                build_dfa(arg, cmd, max_states=MAX_DFA_STATES)
            except DfaTooLarge:
                line, col = self.where(rule, key)
                self.error(rule, f"{_show(key)} of rule '{rule.id}' needs more than "
                                 f"{MAX_DFA_STATES} automaton states", _SIMPLIFY, line, col)
                return
        self.error(rule, f"the conditions of rule '{rule.id}' together need more than "
                         f"{MAX_DFA_STATES} automaton states", _SIMPLIFY)

    def where(self, rule: Rule, key: CondKey) -> tuple[int, int]:
        if key[0] == "cmdline":
            return rule.cmdline_line, rule.cmdline_col
        for m in rule.args:
            if m.kind == key[0] and _arg_key(m) == key:
                return m.line, m.col
        return rule.line, rule.col

    def check_nfa_sizes(self) -> None:
        seen: set[CondKey] = set()
        for r, keys in enumerate(self.conds):
            for key in keys:
                if key in seen:
                    continue
                seen.add(key)
                try:
                    ast = self.ast(key)
                    group_nfa([(ast, 0)] if key[0] not in WHOLE_ARGV else [],
                              [(ast, 0)] if key[0] in WHOLE_ARGV else [])
                except NfaTooLarge as exc:
                    rule = self.policy.rules[r]
                    line, col = self.where(rule, key)
                    self.error(rule, f"{_show(key)[:60]} of rule '{rule.id}' is too large "
                                     "for the automaton", exc.hint, line, col)


def compile_policy(policy: Policy) -> dict[str, Any]:
    """Compile a validated `Policy` into the bundle dict (with its ``sha256``).

    Raises:
        PolicyError / PolicyErrors: a rule whose automaton passes the caps, or a policy that
            does not fit the kernel's tables (naming the rule or executable and a fix).

    Example:
        >>> from edrfleet.policy import load_policy_text
        >>> b = compile_policy(load_policy_text("version: 1\\nrules: []\\n"))
        >>> b["format"], b["groups"]
        ('edrfleet-bundle', [])
    """
    c = _Compilation(policy)
    if len(policy.rules) > EDR_POLICY_MAX_RULES:
        c.error(None, f"{len(policy.rules)} rules; the kernel holds at most {EDR_POLICY_MAX_RULES}",
                "split the policy or merge rules", line=1, col=1)
    c.check_nfa_sizes()
    raise_collected(c.errors)
    keysets: dict[tuple[str, ...], list[int]] = {}
    for r, rule in enumerate(policy.rules):
        keyset = tuple(sorted(set(rule.executables)))
        keysets.setdefault(keyset or (FILELESS_KEY if rule.fileless else ()), []).append(r)
    groups: list[_Group] = []
    prefiltered: list[tuple[int, frozenset]] = []
    for r in keysets.get((), []):
        lits = rule_literals([c.ast(k) for k in c.conds[r]])
        if lits is not None:
            prefiltered.append((r, lits))
    if prefiltered:
        keysets[()] = [r for r in keysets[()] if r not in dict(prefiltered)]
    for keyset, rules in keysets.items():
        for packed in c.pack(keyset, rules):
            groups.extend(c.build(packed))
    groups.extend(_prefiltered_groups(c, prefiltered))
    raise_collected(c.errors)
    bundle = _assemble(policy, groups)
    _add_prefilter(c, bundle, groups)
    _check_capacity(c, policy, bundle, groups)
    raise_collected(c.errors)
    bundle["sha256"] = bundle_sha256(bundle)
    return bundle


def _prefiltered_groups(c: _Compilation, rules: list[tuple[int, frozenset]]) -> list[_Group]:
    lits = dict(rules)

    def pack(chunk: list[int]) -> list[_Group]:
        out = [g for p in c.pack(PREFILTER_KEY, chunk) for g in c.build(p)]
        for g in out:
            g.literals = frozenset().union(*(lits[r] for r in g.rules))
        return out

    return pack_prefiltered(rules, pack) if rules else []


def _add_prefilter(c: _Compilation, bundle: dict[str, Any], groups: list[_Group]) -> None:
    """The prefilter automaton over the literals of the prefiltered groups (bit i = group
    ``executables.prefilter.groups[i]``)."""
    pf = [g for g, group in enumerate(groups) if group.keyset == PREFILTER_KEY]
    if not pf:
        return
    if len(pf) > EDR_PF_BITS:
        c.error(None, f"rules without 'executable' need {len(pf)} prefiltered groups; the "
                f"kernel takes {EDR_PF_BITS}", "name the executables of some of these rules, "
                "or merge rules", line=1, col=1)
        return
    try:
        dfa = prefilter_dfa([groups[g].literals for g in pf])
    except PrefilterTooLarge as exc:
        c.error(None, f"the literals of the rules without 'executable' need an automaton of "
                f"{exc}", "name the executables of some of these rules, or shorten their "
                "regexes' literal parts", line=1, col=1)
        return
    bundle["dfas"].append(dfa.to_json())
    bundle["executables"]["prefilter"] = {"dfa": len(bundle["dfas"]) - 1, "groups": pf}
    bundle["version"] = PREFILTER_VERSION


def compile_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle of a policy file of either kind, told apart by content (`is_bundle_text`):
    a policy YAML is validated and compiled, a bundle JSON is checked and returned as is.

    Raises:
        PolicyError / PolicyErrors: an unreadable file or an invalid policy; ValueError: a
            damaged bundle.
    """
    text = read_policy_file(path)
    if is_bundle_text(text):
        return load_bundle(text)
    return compile_policy(load_policy_text(text, os.fspath(path)))


def _assemble(policy: Policy, groups: list[_Group]) -> dict[str, Any]:
    dfa_index: dict[Any, int] = {}
    dfas: list[dict[str, Any]] = []
    names: dict[str, list[int]] = {}
    paths: dict[str, list[int]] = {}
    wildcard: list[int] = []
    fileless: list[int] = []
    out_groups = []
    for g, group in enumerate(groups):
        index = None
        if group.dfa is not None:
            d = group.dfa
            key = (d.nclasses, tuple(d.classes), d.start, tuple(d.trans), tuple(d.accept))
            index = dfa_index.get(key)
            if index is None:
                index = dfa_index[key] = len(dfas)
                dfas.append(d.to_json())
        slots = []
        for r in group.rules:
            need = 0
            for k in condition_keys(policy.rules[r]):
                need |= 1 << group.bits[k]
            slots.append([r, need])
        out_groups.append({
            "dfa": index, "rules": slots,
            "has_block": any(policy.rules[r].action == "block" for r in group.rules)})
        if not group.keyset:
            wildcard.append(g)
        elif group.keyset == FILELESS_KEY:
            fileless.append(g)
            continue
        elif group.keyset == PREFILTER_KEY:
            continue  # listed by _add_prefilter
        for exe in group.keyset:
            (paths if exe.startswith("/") else names).setdefault(exe, []).append(g)
    rules = []
    for r in policy.rules:
        rules.append({"id": r.id, "description": r.description, "severity": r.severity,
                      "action": r.action, "uids": list(r.uids), "tags": list(r.tags),
                      **_context_fields(r)})
        if r.fileless:  # written only when set: bundles of policies without it are unchanged
            rules[-1]["fileless"] = True
    executables: dict[str, Any] = {"names": names, "paths": paths, "wildcard": wildcard}
    if fileless:  # only when used: bundles of policies without it are unchanged
        executables["fileless"] = fileless
    if policy.multicall:  # likewise
        executables["multicall"] = {
            "names": [m for m in policy.multicall if not m.startswith("/")],
            "paths": [m for m in policy.multicall if m.startswith("/")]}
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": os.path.basename(policy.source),
        "mode": policy.mode,
        "backend": policy.backend,
        "unscanned": policy.unscanned,
        "scope": {"cgroups": list(policy.scope_cgroups)},
        "search_path": list(DEFAULT_SEARCH_PATH),
        "rules": rules,
        "executables": executables,
        "groups": out_groups,
        "dfas": dfas,
    }


def _context_fields(rule: Rule) -> dict[str, list[str]]:
    """The rule's user names, parent and ancestor executables, cwd prefixes and inet_stdio
    (only those it has, so bundles of policies without them keep their bytes)."""
    fields = {"users": list(rule.users), "parents": list(rule.parents), "cwds": list(rule.cwds),
              "ancestors": list(rule.ancestors), "inet_stdio": list(rule.inet_stdio)}
    return {k: v for k, v in fields.items() if v}


def _check_capacity(c: _Compilation, policy: Policy, bundle: dict[str, Any],
                    groups: list[_Group]) -> None:
    exes = bundle["executables"]
    first_rule = {}
    for g, group in enumerate(groups):
        first_rule.setdefault(g, policy.rules[group.rules[0]])
    for table, label in ((exes["names"], "executable"), (exes["paths"], "executable path")):
        for key, glist in table.items():
            if len(glist) > EDR_GROUPS_PER_KEY:
                c.error(first_rule[glist[0]], f"{label} '{key}' needs {len(glist)} rule groups; "
                        f"the kernel takes {EDR_GROUPS_PER_KEY} per executable",
                        "give rules on it the same 'executable' list (so they share groups), "
                        "or simplify their regexes")
    if len(exes.get("fileless", [])) > EDR_GROUPS_PER_KEY:
        c.error(first_rule[exes["fileless"][0]], f"fileless rules without 'executable' need "
                f"{len(exes['fileless'])} groups; the kernel takes {EDR_GROUPS_PER_KEY}",
                "merge them or simplify their regexes")
    always = len(exes["wildcard"]) + (1 if "prefilter" in exes else 0)
    if always > MAX_CANDIDATES:
        c.error(first_rule[exes["wildcard"][0]], f"rules without 'executable' that have no "
                f"literal every match must contain run for every exec: {_always_run(c, bundle)} "
                f"need {len(exes['wildcard'])} groups" + (", the prefilter one more" if
                always > len(exes["wildcard"]) else "") + f"; the kernel evaluates "
                f"{MAX_CANDIDATES} with the whole argv scanned",
                "name the executables of some of these rules, or give their regexes a fixed "
                "text of 3 or more characters every match contains (e.g. 'nc.*-e' rather than "
                "'.*-e')")
    if len(groups) > EDR_POLICY_MAX_GROUPS:
        c.error(None, f"{len(groups)} rule groups; the kernel holds {EDR_POLICY_MAX_GROUPS}",
                "give rules that name the same executables the same 'executable' list",
                line=1, col=1)
    total = sum(len(d["trans"]) for d in bundle["dfas"])
    if total > MAX_TRANS_TOTAL:
        sizes = sorted(((len(g.dfa.trans), g) for g in groups if g.dfa), key=lambda t: -t[0])
        worst = ", ".join(f"'{policy.rules[t[1].rules[0]].id}' ({t[0]} entries)"
                          for t in sizes[:3])
        c.error(policy.rules[sizes[0][1].rules[0]], f"the automata need {total} transition "
                f"entries, the kernel holds {MAX_TRANS_TOTAL}; largest groups start at rules "
                f"{worst}", _SIMPLIFY)
    masks = {m for d in bundle["dfas"] for _, m in d["accept"]}
    if len(masks) > MAX_ACCEPT_MASKS:
        c.error(None, f"the automata use {len(masks)} distinct condition masks; the kernel "
                f"holds {MAX_ACCEPT_MASKS}", "simplify regexes or split the policy",
                line=1, col=1)
    counts = (("executable names", len(exes["names"]), EDR_POLICY_MAX_NAMES),
              ("executable paths", len(exes["paths"]), EDR_POLICY_MAX_INODES),
              ("scope cgroups", len(policy.scope_cgroups), EDR_POLICY_MAX_SCOPE))
    for what, count, cap in counts:
        if count > cap:
            c.error(None, f"{count} {what}; the kernel holds {cap}", "split the policy",
                    line=1, col=1)
    # parents and ancestors share the kernel's parent-key bits (both counted as parents)
    for attrs, what in ((("parents", "ancestors"), "parent executables"),
                        (("cwds",), "cwd prefixes")):
        seen: dict[str, Rule] = {}
        for rule in policy.rules:
            for key in (k for attr in attrs for k in getattr(rule, attr)):
                seen.setdefault(key, rule)
        if len(seen) > EDR_KEY_BITS:
            first_over = list(seen.values())[EDR_KEY_BITS]
            c.error(first_over, f"the policy names {len(seen)} distinct {what}; the kernel "
                    f"holds {EDR_KEY_BITS} (the {EDR_KEY_BITS + 1}th is in rule "
                    f"'{first_over.id}')", "give rules the same lists, or drop rarely "
                    "needed ones")
    _check_candidates(c, exes, first_rule)


def _always_run(c: _Compilation, bundle: dict[str, Any]) -> str:
    """The rules of the always-run wildcard groups, for messages: the first three by id."""
    ids = [c.policy.rules[r].id for g in bundle["executables"]["wildcard"]
           for r, _ in bundle["groups"][g]["rules"]]
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return ", ".join(f"'{i}'" for i in ids[:3]) + more


def _check_candidates(c: _Compilation, exes: dict[str, Any], first_rule: dict[int, Rule]) -> None:
    """Refuse a policy of which one exec can hit more groups than the kernel evaluates.

    One exec hits its file's inode, its name as executed and its real name (a link: `rm ->
    busybox` is judged under both, and on the host any names may be one file), the fileless
    list when it has no link, its size's groups when the kernel does not know its inode (a
    copy of any protected file, under any names: bpf/identity.c), and the wildcard groups.
    Every three keys of the policy are taken as one exec (two names and a size); more than
    that in one file is the host's affair (the agent and kernel fail closed: docs/status.md
    candidates_dropped).
    """
    wild = set(exes["wildcard"])
    if "prefilter" in exes:
        wild.add(-1)  # the prefilter automaton is one more candidate of every exec
    if len(wild) > MAX_CANDIDATES:
        return  # _check_capacity said so, naming the rules
    keys: list[tuple[str, set[int]]] = [(f"'{k}'", set(g)) for table in (
        exes["names"], exes["paths"]) for k, g in table.items()]
    if exes.get("fileless"):
        keys.append(("a fileless executable", set(exes["fileless"])))
    keys.sort(key=lambda kg: -len(kg[1]))
    worst, over = _worst_exec(keys, wild)
    if worst is None:
        return
    n, picked = worst
    named = [keys[i] for i in picked]
    groups = set().union(*(g for _, g in named))
    if len(named) == 1:
        who, mine = f"an exec of {named[0][0]}", f"{len(named[0][1])}"
    elif len(named) == 2:
        who = f"{named[0][0]} and {named[1][0]} as one file (a link)"
        mine = f"{len(named[0][1])} + {len(named[1][1])}"
    else:
        who = (f"{named[0][0]} run as {named[1][0]} with the size of {named[2][0]} (a copy, "
               "judged by its names and its size)")
        mine = " + ".join(str(len(g)) for _, g in named)
    others = f" (and {over - 1} more such cases)" if over > 1 else ""
    c.error(first_rule[min(groups)], f"{who} would run {n} rule groups ({mine} of its "
            f"executables, {len(wild)} for rules without 'executable' run for every exec"
            + (", the prefilter included" if -1 in wild else "") + "); the kernel evaluates at "
            f"most {MAX_CANDIDATES} with the whole argv scanned{others}",
            "give rules on these executables the same 'executable' list (they then share "
            "groups), name the executables of rules without one, or merge rules")


def _worst_exec(keys: list[tuple[str, set[int]]],
                wild: set[int]) -> tuple[tuple[int, tuple[int, ...]] | None, int]:
    """The exec over the cap with the most groups - (groups, the distinct keys it hits) - and
    how many distinct key sets are over it; ``keys`` sorted by size, largest first."""
    sizes = [len(g) for _, g in keys]
    cap = MAX_CANDIDATES - len(wild)
    worst: tuple[int, tuple[int, ...]] | None = None
    over: set[tuple[int, ...]] = set()
    for i in range(len(keys)):
        if 3 * sizes[i] <= cap:
            break  # sorted: no later triple can pass the cap either
        for j in range(i, len(keys)):
            if sizes[i] + 2 * sizes[j] <= cap:
                break
            gij = keys[i][1] | keys[j][1] | wild
            for k in range(j, len(keys)):
                if sizes[i] + sizes[j] + sizes[k] <= cap:
                    break
                n = len(gij | keys[k][1])
                if n > MAX_CANDIDATES:
                    picked = tuple(sorted({i, j, k}))
                    over.add(picked)
                    if worst is None or n > worst[0] or (n == worst[0]
                                                         and len(picked) < len(worst[1])):
                        worst = (n, picked)
    return worst, len(over)
