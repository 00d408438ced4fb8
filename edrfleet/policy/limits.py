"""Capacities of the kernel side and caps of the compiler, and the check that a compiled
bundle fits them (``check_capacity``: each refusal names the rule it starts at and the fix).

The kernel's numbers are read from ``bpf/edrfleet.h`` (``edrfleet.paths.BPF``) when this module
is imported, with the parser the agent uses (``edrfleet.kernel_abi``): the header is the only
place they are written.  ``tests/unit/policy/test_limits.py`` checks that every ``EDR_*`` name
here is read, not written, and that the compiler's own caps fit the kernel's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from edrfleet import paths
from edrfleet.kernel_abi import kernel_nclasses, load_header, trans_parts_of
from edrfleet.policy.model import Policy, Rule

KERNEL = load_header(paths.BPF)

# --- read from bpf/edrfleet.h -------------------------------------------------------------
EDR_GROUPS_PER_KEY = KERNEL["EDR_GROUPS_PER_KEY"]  # groups one executable key maps to
EDR_RULES_PER_GROUP = KERNEL["EDR_RULES_PER_GROUP"]  # rule slots in one group
EDR_UIDS_PER_RULE = KERNEL["EDR_UIDS_PER_RULE"]  # uid list of one rule
EDR_HEAD_BYTES = KERNEL["EDR_HEAD_BYTES"]  # bytes of a file the "fsizes" key hashes with its size
EDR_CWD_DEPTH = KERNEL["EDR_CWD_DEPTH"]  # directories of the cwd checked; deeper = unknown
EDR_ARGS_MAX = KERNEL["EDR_ARGS_MAX"]  # argv bytes the kernel copies (and reads applets from)
EDR_FILENAME_MAX = KERNEL["EDR_FILENAME_MAX"]  # bytes of a path the kernel reads a basename in
EDR_ANCESTOR_DEPTH = KERNEL["EDR_ANCESTOR_DEPTH"]  # ancestors match.ancestor sees, parent first
EDR_APPLET_SCAN = KERNEL["EDR_APPLET_SCAN"]  # argv[0]/argv[1] bytes read for an applet name
EDR_KEY_BITS = KERNEL["EDR_KEY_BITS"]  # distinct parent executables / cwd prefixes per policy
EDR_CAND_MAX = KERNEL["EDR_CAND_MAX"]  # distinct groups evaluated for one exec
EDR_PF_BITS = KERNEL["EDR_PF_BITS"]  # prefiltered groups: one bit of the prefilter's mask each
EDR_TAIL_CALLS = KERNEL["EDR_TAIL_CALLS"]  # judge + scan calls of one exec
EDR_SCAN_WINDOW = KERNEL["EDR_SCAN_WINDOW"]  # argv bytes one scan call reads (the default)
EDR_NSYM = KERNEL["EDR_NSYM"]  # symbols a DFA reads: bytes 0..255, BOS, EOS
EDR_SYM_BOS = KERNEL["EDR_SYM_BOS"]
EDR_SYM_EOS = KERNEL["EDR_SYM_EOS"]
EDR_SYM_CWD = KERNEL["EDR_SYM_CWD"]  # the first cwd-class symbol (class 1)
EDR_CWD_CLASSES = KERNEL["EDR_CWD_CLASSES"]  # cwd classes of one policy: (anchor, level)
EDR_CWD_LEVELS = KERNEL["EDR_CWD_LEVELS"]  # levels: the cwd is the anchor, its child, ...
EDR_ROW_BITS = KERNEL["EDR_ROW_BITS"]  # transition entry: next row bits, accept id above
EDR_ACCEPT_IDS = KERNEL["EDR_ACCEPT_IDS"]  # distinct condition masks per slot; id 0 = no bits
EDR_TRANS_MAX = KERNEL["EDR_TRANS_MAX"]  # transition entries a program starts with
# the most one policy may hold (the agent sizes its maps from the policy, up to twice that)
EDR_POLICY_MAX_GROUPS = KERNEL["EDR_POLICY_MAX_GROUPS"]
EDR_POLICY_MAX_RULES = KERNEL["EDR_POLICY_MAX_RULES"]
EDR_POLICY_MAX_NAMES = KERNEL["EDR_POLICY_MAX_NAMES"]  # executable basename keys
EDR_POLICY_MAX_INODES = KERNEL["EDR_POLICY_MAX_INODES"]  # executable path keys
EDR_POLICY_MAX_SCOPE = KERNEL["EDR_POLICY_MAX_SCOPE"]  # scope cgroups
name_fits = KERNEL.name_fits  # a basename the kernel matches: at most NAME_BYTES_MAX bytes
NAME_BYTES_MAX = KERNEL.name_bytes_max

# --- compiler caps ------------------------------------------------------------------------
COND_BITS = 64  # condition bits per group (the need mask is a u64)
MAX_CLASSES = 256  # byte classes per DFA (class ids are u8)
MAX_DFA_STATES = 4096  # states of one group DFA
MAX_TRANS_TOTAL = 1 << EDR_ROW_BITS  # entries in one part of the table: the most a transition
#                                      entry can address (the agent sizes trans up to this)
EDR_TRANS_PARTS = KERNEL["EDR_TRANS_PARTS"]  # parts of the table; a DFA lies in one
MAX_ACCEPT_MASKS = EDR_ACCEPT_IDS - 1  # distinct non-zero masks in the whole bundle
# groups one exec may hit: the kernel evaluates EDR_CAND_MAX, but past this many (all with an
# automaton) the tail-call budget leaves no argv window, and every exec of them is unscanned
MAX_CANDIDATES = min(EDR_CAND_MAX, (EDR_TAIL_CALLS - 1) // 2)
MAX_NFA_NODES = 20_000  # NFA nodes of one pattern after expanding {m,n}
MAX_REPEAT_BOUND = 1_000  # largest m or n accepted in {m,n}

DEFAULT_SEARCH_PATH = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
)


def kernel_trans_sizes(dfas: list[dict[str, Any]]) -> list[int]:
    """Entries each bundle automaton takes in the kernel's table (with its cwd columns)."""
    return [len(d["trans"]) // d["nclasses"] * kernel_nclasses(d["classes"], d["nclasses"],
                                                                 EDR_NSYM) for d in dfas]


def trans_parts(sizes: list[int]) -> int:
    """Parts of the transition table the agent fills for automata of these kernel sizes
    (`kernel_abi.trans_parts_of`, as agent/maps.py lays them); more than EDR_TRANS_PARTS when
    one is larger than a part."""
    if any(n > MAX_TRANS_TOTAL for n in sizes):
        return EDR_TRANS_PARTS + 1
    return max(trans_parts_of(sizes, MAX_TRANS_TOTAL), default=0) + 1


# --- the check of a compiled bundle -----------------------------------------------------------
class Reporter(Protocol):
    """The compilation in progress (compile.py): the policy and where refusals are collected."""

    policy: Policy

    def error(self, rule: Rule | None, message: str, fix: str, line: int = 0,
              col: int = 0) -> None: ...


class Grouped(Protocol):
    """A rule group as compiled: its rules (indices in policy order) and its automaton."""

    rules: list[int]
    dfa: Any


SIMPLIFY = ("simplify it: anchor it ('^...'), avoid '.*' or '.{m,n}' between pieces, "
            "or split it into several 'args' entries (each must hold)")


def check_capacity(c: Reporter, policy: Policy, bundle: dict[str, Any],
                   groups: Sequence[Grouped]) -> None:
    """Refuse (through ``c.error``) what the kernel cannot hold, naming the rule and the fix."""
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
    kernel_sizes = kernel_trans_sizes(bundle["dfas"])
    total = sum(kernel_sizes)
    if trans_parts(kernel_sizes) > EDR_TRANS_PARTS:
        sizes = sorted(((len(g.dfa.trans), g) for g in groups if g.dfa), key=lambda t: -t[0])
        worst = ", ".join(f"'{policy.rules[t[1].rules[0]].id}' ({t[0]} entries)"
                          for t in sizes[:3])
        c.error(policy.rules[sizes[0][1].rules[0]], f"the automata need {total} transition "
                f"entries, the kernel holds {EDR_TRANS_PARTS} x {MAX_TRANS_TOTAL} (a group's "
                f"automaton in one part); largest groups start at rules "
                f"{worst}", SIMPLIFY)
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


def _always_run(c: Reporter, bundle: dict[str, Any]) -> str:
    """The rules of the always-run wildcard groups, for messages: the first three by id."""
    ids = [c.policy.rules[r].id for g in bundle["executables"]["wildcard"]
           for r, _ in bundle["groups"][g]["rules"]]
    more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    return ", ".join(f"'{i}'" for i in ids[:3]) + more


def _check_candidates(c: Reporter, exes: dict[str, Any], first_rule: dict[int, Rule]) -> None:
    """Refuse a policy of which one exec can hit more groups than the kernel evaluates.

    One exec hits its file's inode, its name as executed and its real name (a link: `rm ->
    busybox` is judged under both, and on the host any names may be one file), the fileless
    list when it has no link, its size's groups when the kernel does not know its inode (a
    copy of any protected file, under any names: bpf/identity.c), and the wildcard groups.
    Every two keys of the policy are taken as one exec (a name and a link's name, a path and a
    name: what hosts do with alternatives and busybox links).  Three (two names and another
    file's size and head) only a crafted copy hits: refusing those refused the default policy,
    and the kernel fails closed on them (a block where a group left out has a block rule:
    docs/status.md candidates_dropped), as it does for more names than that on one host.
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
    else:
        who = f"{named[0][0]} and {named[1][0]} as one file (a link)"
        mine = f"{len(named[0][1])} + {len(named[1][1])}"
    others = f" (and {over - 1} more such cases)" if over > 1 else ""
    c.error(first_rule[min(groups)], f"{who} would run {n} rule groups ({mine} of its "
            f"executables, {len(wild)} for rules without 'executable' run for every exec"
            + (", the prefilter included" if -1 in wild else "") + "); the kernel evaluates at "
            f"most {MAX_CANDIDATES} with the whole argv scanned{others}",
            "give rules on these executables the same 'executable' list (they then share "
            "groups), name the executables of rules without one, or merge rules")


def _worst_exec(keys: list[tuple[str, set[int]]],
                wild: set[int]) -> tuple[tuple[int, tuple[int, ...]] | None, int]:
    """The exec over the cap with the most groups - (groups, the distinct keys it hits, one
    or two) - and how many distinct key sets are over it; ``keys`` sorted by size, largest
    first."""
    sizes = [len(g) for _, g in keys]
    cap = MAX_CANDIDATES - len(wild)
    worst: tuple[int, tuple[int, ...]] | None = None
    over: set[tuple[int, ...]] = set()
    for i in range(len(keys)):
        if 2 * sizes[i] <= cap:
            break  # sorted: no later pair can pass the cap either
        for j in range(i, len(keys)):
            if sizes[i] + sizes[j] <= cap:
                break
            n = len(keys[i][1] | keys[j][1] | wild)
            if n > MAX_CANDIDATES:
                picked = tuple(sorted({i, j}))
                over.add(picked)
                if worst is None or n > worst[0] or (n == worst[0]
                                                     and len(picked) < len(worst[1])):
                    worst = (n, picked)
    return worst, len(over)
