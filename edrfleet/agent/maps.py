"""Pack a compiled policy bundle into the contents of the kernel maps (pure functions).

Byte format of the tables (declared in ``bpf/edrfleet.h``; BCC turns each struct into ctypes):

- ``trans``: the DFAs of all groups laid end to end as flat u32 arrays (``EDR_TRANS_PARTS``
  map values per slot, a DFA in one: the group's ``part``).  DFA *d* starts at entry ``O_d``
  of its part; the row of its state *s* starts at ``O_d + s * nclasses_d``.  An entry is
  ``next_row | accept_id << EDR_ROW_BITS``.  A DFA that reads cwd-class symbols gets, for
  each, the column "NUL, then that symbol" (`kernel_columns`): the kernel reads NUL as it
  when the cwd has that class (bpf/scan.c).
- ``cwdcls``: an anchor directory's inode -> its class per level (bundle ``cwd_classes``;
  anchors reached through a symlink are skipped: the kernel's cwd is never one).
- ``accepts``: accept id -> u64 condition mask (id 0 is the empty mask).  Ids number the
  distinct masks of the slot, so groups share them.
- ``groups``: per group the start row (``EDR_NONE`` = no argv condition), the symbol -> class
  table and the rule slots ``(need mask, rule index)``.
- ``rules``: per rule the action, severity and uid list (enum values from the header); user
  names are resolved to uids here, on the host.
- the prefilter (``executables.prefilter``): one more group, after the bundle's, without rule
  slots, whose DFA is the prefilter automaton; ``config`` holds its index, the prefiltered
  group of each mask bit and which of them block.
- ``names`` / ``inodes``: executable key -> group list; inodes come from resolving every policy
  path, and every policy basename through the bundle's ``search_path``, on this host.  The
  empty name (never a file's name) holds ``executables.fileless``: the program looks it up
  only for an executable with no link (bpf/edrfleet.c, EDR_F_FILELESS).
- ``pnames`` / ``pinodes`` / ``dirs``: context keys -> u64 of key bits.  Every distinct parent
  executable of the policy gets a bit (its basename in ``pnames``; its inode, or the inodes
  the basename has through ``search_path``, in ``pinodes``), every distinct cwd prefix too (the
  directory's inode in ``dirs``).  A rule's ``parents`` / ``cwds`` masks are the bits of its
  keys; its rule slots carry the ``EDR_CTX_*`` flags of what it needs, the group their OR.
  ``match.ancestor`` keys share the parent-key bits (a rule's ``ancestors`` mask);
  ``match.inet_stdio`` is a rule's ``EDR_STDIO_*`` bits.
- ``mcnames`` / ``mcinodes``: the multi-call executables (``executables.multicall``): basenames,
  and the inodes of those names through ``search_path`` and of the paths.

The scanner (kernel and ``edrfleet.policy.simulate``) reads BOS, argv joined by NUL, EOS.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field

from edrfleet.kernel_abi import Header, kernel_nclasses, trans_parts_of

Identity = tuple[int, int]  # (kernel dev, inode)
NO_UID = 0xFFFFFFFF  # (uid_t)-1: no process runs with it
EXACT_CWD = "="  # a rule's cwds entry "=/d": match.cwd_is (edrfleet.policy.model.EXACT_CWD)


class PackError(ValueError):
    """The bundle cannot be laid into this program's maps; the message names what and why."""


@dataclass
class GroupEntry:
    start: int
    has_block: int  # enum edr_block_bit: what an unscanned argv / a dropped group does
    classes: list[int]
    slots: list[tuple[int, int]]  # (need mask, rule index)
    flags: list[int] = field(default_factory=list)  # EDR_CTX_* per slot
    part: int = 0  # the "trans" value of the slot its DFA lies in
    cwdsym: bool = False  # its DFA reads cwd-class symbols (EDR_CTX_CWDSYM)


@dataclass
class RuleEntry:
    action: int
    severity: int
    uids: list[int]
    parents: int = 0  # parent-key bits, 0 = any parent
    cwds: int = 0  # cwd-prefix bits, 0 = any cwd
    fileless: bool = False  # holds only for an executable with no link (EDR_F_FILELESS)
    ancestors: int = 0  # parent-key bits one of the ancestors must have, 0 = any
    inet_stdio: int = 0  # EDR_STDIO_* bits, 0 = any


@dataclass
class ContextKeys:
    """Parent executables and cwd prefixes of one slot, as bit sets per kernel key."""

    pnames: dict[bytes, int] = field(default_factory=dict)
    pinodes: dict[Identity, int] = field(default_factory=dict)
    dirs: dict[Identity, int] = field(default_factory=dict)
    parent_bit: dict[str, int] = field(default_factory=dict)
    cwd_bit: dict[str, int] = field(default_factory=dict)


@dataclass
class Packed:
    """Everything one policy slot holds, ready to be written."""

    mode: int
    scoped: bool
    unscanned_block: bool
    wildcard: list[int]
    names: dict[bytes, list[int]]
    inodes: dict[Identity, list[int]]
    scope: list[int]
    accepts: list[int]  # accept id -> mask; accepts[0] == 0
    groups: list[GroupEntry]
    rules: list[RuleEntry]
    trans: list[list[int]]  # one list per part
    paths: dict[Identity, str] = field(default_factory=dict)  # where each inode was found
    context: ContextKeys = field(default_factory=ContextKeys)
    prefilter: int | None = None  # group index of the prefilter automaton (no rules)
    pf_groups: list[int] = field(default_factory=list)  # prefiltered group of each mask bit
    pf_block: int = 0  # bit i: pf_groups[i] has a block rule
    mcnames: list[bytes] = field(default_factory=list)  # multi-call executables by basename
    mcinodes: list[Identity] = field(default_factory=list)  # and by inode
    cwdcls: dict[Identity, list[int]] = field(default_factory=dict)  # class id per level

    def needs(self, header: Header) -> dict[str, int]:
        """Capacity each map needs for this slot, keyed like the EDR_MAX_* macros."""
        return {
            "EDR_MAX_GROUPS": len(self.groups),
            "EDR_MAX_RULES": len(self.rules),
            "EDR_TRANS_MAX": max((len(p) for p in self.trans), default=0),
            "EDR_TRANS_PARTS": len(self.trans),
            "EDR_MAX_CWDCLS": len(self.cwdcls),
            "EDR_MAX_NAMES": len(self.names),
            "EDR_MAX_INODES": len(self.inodes),
            "EDR_MAX_SCOPE": len(self.scope),
            "EDR_MAX_PNAMES": len(self.context.pnames),
            "EDR_MAX_PINODES": len(self.context.pinodes),
            "EDR_MAX_DIRS": len(self.context.dirs),
            "EDR_MAX_MCNAMES": len(self.mcnames),
            "EDR_MAX_MCINODES": len(self.mcinodes),
            # matchers: 1 = the program must hold their code (EDR_WITH_* in the header)
            "EDR_WITH_UIDS": int(any(r.uids for r in self.rules)),
            "EDR_WITH_CTX": int(any(r.parents or r.cwds or r.ancestors or r.inet_stdio
                                    for r in self.rules)),
            "EDR_WITH_ANCESTORS": int(any(r.ancestors for r in self.rules)),
            "EDR_WITH_STDIO": int(any(r.inet_stdio for r in self.rules)),
            "EDR_WITH_MULTICALL": int(bool(self.mcnames or self.mcinodes)),
            "EDR_WITH_PF": int(self.prefilter is not None),
            "EDR_WITH_CWDSYM": int(any(g.cwdsym for g in self.groups)),
        }


def kernel_dev(st_dev: int) -> int:
    """Userspace dev_t -> the kernel's internal encoding (MAJOR << 20 | MINOR) in s_dev."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def stat_identity(path: str) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return kernel_dev(st.st_dev), st.st_ino


class GroupList(list):
    """The groups of one "names"/"inodes" key; ``over`` (edr_group_list.over) is 0, or 1 when
    more groups apply than the kernel's list holds, | EDR_BLOCK_RULE when one left out blocks."""

    over: int = 0


def _merge(table: dict, key, groups: list[int], limit: int, blocks: set[int],
           block_bit: int) -> None:
    """Add groups to a key's list.  Several policy names can be one file on this host (links,
    Debian's alternatives): what the list cannot hold is left out and flagged, and the kernel
    blocks such an exec when a left-out group has a block rule - never a refused policy.
    Groups with block rules are kept first, so only more of those than fit fail closed."""
    merged = table.setdefault(key, GroupList())
    every = list(merged)
    every.extend(g for g in groups if g not in every)
    if len(every) <= limit:
        merged[:] = every
        return
    every.sort(key=lambda g: g not in blocks)  # stable: block groups first, in order
    merged[:] = every[:limit]
    merged.over = 1 | (block_bit if any(g in blocks for g in every[limit:]) else 0)


def kernel_columns(dfa: dict, nsym: int) -> dict:
    """The DFA as the kernel reads it: a class read only by cwd-class symbols (the classes
    table past ``nsym``) becomes the column "NUL, then it", appended when a byte reads it too.
    The second state keeps the first one's condition bits (policy/regex/dfa.py)."""
    classes, k, trans = list(dfa["classes"]), dfa["nclasses"], dfa["trans"]
    if len(classes) <= nsym:
        return dfa
    nstates = len(trans) // k
    nul = classes[0]
    cwd_ids = sorted(set(classes[nsym:]))
    shared = set(classes[:nsym])
    moved = [c for c in cwd_ids if c in shared]
    new_id = {c: c for c in cwd_ids} | {c: k + n for n, c in enumerate(moved)}
    width = kernel_nclasses(classes, k, nsym)
    if width > 256:  # class ids are u8 in the kernel's table
        raise PackError(f"an automaton needs {width} classes with its cwd columns, max 256; "
                        "split the rules of its group")
    rows = [list(trans[s * k:(s + 1) * k]) + [0] * (width - k) for s in range(nstates)]
    for c in cwd_ids:
        for s in range(nstates):
            rows[s][new_id[c]] = trans[trans[s * k + nul] * k + c]
    for sym in range(nsym, len(classes)):
        classes[sym] = new_id[classes[sym]]
    return dict(dfa, nclasses=width, classes=classes, trans=[t for r in rows for t in r])


def _pack_dfas(bundle: dict, header: Header
               ) -> tuple[list[list[int]], list[int], list[tuple[int, int]], list[dict]]:
    """Lay the DFAs end to end in the parts `kernel_abi.trans_parts_of` gives them (the
    compiler counts with it too: edrfleet/policy/limits.py); return (entries per part,
    accept id -> mask, (part, start row) per DFA, the DFAs as the kernel reads them)."""
    row_bits = header["EDR_ROW_BITS"]
    accepts: list[int] = [0]
    ids: dict[int, int] = {0: 0}
    starts: list[tuple[int, int]] = []
    dfas = [kernel_columns(d, header["EDR_NSYM"]) for d in bundle["dfas"]]
    sizes = [len(d["trans"]) for d in dfas]
    part_of = trans_parts_of(sizes, 1 << row_bits)
    most = header.switches["EDR_TRANS_PARTS"]
    if any(n > 1 << row_bits for n in sizes) or (part_of and part_of[-1] >= most):
        raise PackError(f"the automata need more than {most} x {1 << row_bits} transition "
                        "entries; simplify or split the policy's regexes")
    parts: list[list[int]] = [[] for _ in range(part_of[-1] + 1 if part_of else 1)]
    for i, dfa in enumerate(dfas):
        part = part_of[i]
        trans = parts[part]
        base = len(trans)
        k = dfa["nclasses"]
        state_id: dict[int, int] = {}
        for state, mask in dfa["accept"]:
            if mask not in ids:
                ids[mask] = len(accepts)
                accepts.append(mask)
            state_id[state] = ids[mask]
        # one entry per state, then a C-speed lookup per transition (400 000 of them in the
        # default policy: a Python expression per entry cost 30 ms of every agent start)
        entry = [(base + state * k) | (state_id.get(state, 0) << row_bits)
                 for state in range(len(dfa["trans"]) // k if k else 0)]
        trans.extend(map(entry.__getitem__, dfa["trans"]))
        starts.append((part, base + dfa["start"] * k))
    if len(accepts) > header["EDR_ACCEPT_IDS"]:
        raise PackError(f"{len(accepts)} distinct condition masks, max {header['EDR_ACCEPT_IDS']}")
    return parts, accepts, starts, dfas


def host_uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def rule_uids(rule: dict, user_uid: Callable[[str], int | None]) -> list[int]:
    """The rule's uids plus its user names resolved on this host.  A rule that names users
    of which none exists here gets the uid (uid_t)-1, which no process has: it never matches."""
    uids = list(rule.get("uids") or [])
    names = list(rule.get("users") or [])
    for name in names:
        uid = user_uid(name)
        if uid is not None and uid not in uids:
            uids.append(uid)
    if names and not uids:
        uids = [NO_UID]
    return uids


def pack_bundle(
    bundle: dict,
    header: Header,
    *,
    identity: Callable[[str], Identity | None] = stat_identity,
    user_uid: Callable[[str], int | None] = host_uid,
    cgroup_id: Callable[[str], int],
) -> Packed:
    """Lay ``bundle`` out for the maps; raises PackError when it cannot fit the contract."""
    none = header["EDR_NONE"]
    per_key = header["EDR_GROUPS_PER_KEY"]
    actions = header.enum_by_suffix("edr_action", "EDR_ACTION_")
    severities = header.enum_by_suffix("edr_severity", "EDR_SEV_")
    trans, accepts, starts, dfas = _pack_dfas(bundle, header)

    # An argv too long to scan fails closed only where a rule names the executable: a long
    # command line alone is no reason to kill an arbitrary program (xargs makes them daily).
    prefilter = bundle["executables"].get("prefilter")
    wildcard_groups = set(bundle["executables"].get("wildcard", []))
    wildcard_groups.update(prefilter["groups"] if prefilter else ())
    block_bits = header.enum_by_suffix("edr_block_bit", "EDR_BLOCK_")
    blocks = {i for i, grp in enumerate(bundle["groups"]) if grp.get("has_block")}
    groups = []
    for i, grp in enumerate(bundle["groups"]):
        if len(grp["rules"]) > header["EDR_RULES_PER_GROUP"]:
            raise PackError(f"group {i} has {len(grp['rules'])} rule slots")
        dfa = grp["dfa"]
        classes = dfas[dfa]["classes"] if dfa is not None else [0] * header["EDR_NSYM"]
        groups.append(
            GroupEntry(
                start=none if dfa is None else starts[dfa][1],
                has_block=(block_bits["unscanned"] if i in blocks and i not in wildcard_groups
                           else 0) | (block_bits["rule"] if i in blocks else 0),
                classes=list(classes),
                slots=[(need, rule) for rule, need in grp["rules"]],
                part=0 if dfa is None else starts[dfa][0],
                cwdsym=len(classes) > header["EDR_NSYM"],
            )
        )

    pf_index = None
    pf_block = 0
    if prefilter:
        if len(prefilter["groups"]) > header["EDR_PF_BITS"]:
            raise PackError(f"{len(prefilter['groups'])} prefiltered groups, max "
                            f"{header['EDR_PF_BITS']}")
        pf_index = len(groups)
        groups.append(GroupEntry(start=starts[prefilter["dfa"]][1], has_block=0,
                                 classes=list(dfas[prefilter["dfa"]]["classes"]),
                                 slots=[], part=starts[prefilter["dfa"]][0]))
        pf_block = sum(1 << i for i, g in enumerate(prefilter["groups"]) if g in blocks)

    context = pack_context(bundle, header, identity)
    ctx_flag = header.enum_by_suffix("edr_ctx_flag", "EDR_CTX_")
    rules = []
    for rule in bundle["rules"]:
        uids = rule_uids(rule, user_uid)
        if len(uids) > header["EDR_UIDS_PER_RULE"]:
            raise PackError(
                f"rule {rule['id']!r} lists {len(uids)} uids, the kernel takes "
                f"{header['EDR_UIDS_PER_RULE']}; split it into several rules"
            )
        parents = sum(1 << context.parent_bit[k] for k in rule.get("parents", ()))
        cwds = sum(1 << context.cwd_bit[k] for k in rule.get("cwds", ()))
        ancestors = sum(1 << context.parent_bit[k] for k in rule.get("ancestors", ()))
        whose = header.enum_by_suffix("edr_stdio_whose", "EDR_STDIO_")
        stdio = sum(whose[w] for w in rule.get("inet_stdio", ()))
        rules.append(RuleEntry(actions[rule["action"]], severities[rule["severity"]], uids,
                               parents, cwds, bool(rule.get("fileless")), ancestors, stdio))
    for grp in groups:
        grp.flags = [(ctx_flag["parent"] if rules[r].parents else 0)
                     | (ctx_flag["cwd"] if rules[r].cwds else 0)
                     | (ctx_flag["ancestors"] if rules[r].ancestors else 0)
                     | (ctx_flag["stdio"] if rules[r].inet_stdio else 0) for _, r in grp.slots]

    exe = bundle["executables"]
    names: dict[bytes, list[int]] = {}
    inodes: dict[Identity, list[int]] = {}
    paths: dict[Identity, str] = {}
    for name, grps in exe.get("names", {}).items():
        key = name.encode()
        if not header.name_fits(key):
            raise PackError(f"executable name {name!r} is longer than the kernel key "
                            f"({header.name_bytes_max} bytes)")
        _merge(names, key, grps, per_key, blocks, block_bits["rule"])
        for directory in bundle.get("search_path", []):
            path = os.path.join(directory, name)
            ident = identity(path)
            if ident is not None:
                _merge(inodes, ident, grps, per_key, blocks, block_bits["rule"])
                paths.setdefault(ident, os.path.realpath(path))
    for path, grps in exe.get("paths", {}).items():
        ident = identity(path)
        if ident is not None:
            _merge(inodes, ident, grps, per_key, blocks, block_bits["rule"])
            paths[ident] = path
    if exe.get("fileless"):
        _merge(names, b"", exe["fileless"], per_key, blocks, block_bits["rule"])
    wildcard = list(exe.get("wildcard", []))
    if len(wildcard) > per_key:
        raise PackError(f"{len(wildcard)} groups of rules without an executable, max {per_key}")

    mcnames, mcinodes = pack_multicall(exe.get("multicall", {}), bundle, header, identity)
    scope_paths = bundle.get("scope", {}).get("cgroups", [])
    return Packed(
        mode=header[f"EDR_MODE_{bundle['mode'].upper()}"],
        scoped=bool(scope_paths),
        unscanned_block=bundle.get("unscanned", "block") == "block",
        wildcard=wildcard,
        names=names,
        inodes=inodes,
        scope=[cgroup_id(p) for p in scope_paths],
        accepts=accepts,
        groups=groups,
        rules=rules,
        trans=trans,
        paths=paths,
        context=context,
        prefilter=pf_index,
        pf_groups=list(prefilter["groups"]) if prefilter else [],
        pf_block=pf_block,
        mcnames=mcnames,
        mcinodes=mcinodes,
        cwdcls=pack_cwd_classes(bundle, header, identity),
    )


def pack_cwd_classes(bundle: dict, header: Header,
                     identity: Callable[[str], Identity | None]) -> dict[Identity, list[int]]:
    """Anchor directory inode -> class id per level (0: none), from ``cwd_classes``.  An
    anchor reached through a symlink (``/bin`` on merged-/usr) is skipped: the kernel's cwd
    is the real directory, which has its own class when it is an anchor."""
    out: dict[Identity, list[int]] = {}
    for k, (anchor, level) in enumerate(bundle.get("cwd_classes", ())):
        if os.path.realpath(anchor) != anchor:
            continue
        ident = identity(anchor)
        if ident is None:
            continue
        levels = out.setdefault(ident, [0] * header["EDR_CWD_LEVELS"])
        if not levels[level]:
            levels[level] = k + 1
    return out


def pack_multicall(multicall: dict, bundle: dict, header: Header,
                   identity: Callable[[str], Identity | None]
                   ) -> tuple[list[bytes], list[Identity]]:
    """The multi-call executables as kernel keys: basenames, and the inodes of those names
    through ``search_path`` and of the paths (one not on this host adds no inode)."""
    names = [n.encode() for n in multicall.get("names", [])]
    for name in names:
        if not header.name_fits(name):
            raise PackError(f"multi-call executable name {name!r} is longer than the kernel "
                            f"key ({header.name_bytes_max} bytes)")
    found = [identity(os.path.join(d, n.decode())) for n in names
             for d in bundle.get("search_path", [])]
    found += [identity(p) for p in multicall.get("paths", [])]
    inodes: list[Identity] = []
    for ident in found:
        if ident is not None and ident not in inodes:
            inodes.append(ident)
    return names, inodes


def pack_context(bundle: dict, header: Header,
                 identity: Callable[[str], Identity | None]) -> ContextKeys:
    """Bits for the policy's parent executables and cwd prefixes, resolved on this host.

    A path or prefix that does not exist here gets its bit but no key: it never matches.
    """
    ctx = ContextKeys()
    limit = header["EDR_KEY_BITS"]
    for rule in bundle["rules"]:
        for key in (*rule.get("parents", ()), *rule.get("ancestors", ())):
            ctx.parent_bit.setdefault(key, len(ctx.parent_bit))
        for prefix in rule.get("cwds", ()):
            ctx.cwd_bit.setdefault(prefix, len(ctx.cwd_bit))
    for what, bits in (("parent executables", ctx.parent_bit), ("cwd prefixes", ctx.cwd_bit)):
        if len(bits) > limit:
            raise PackError(f"the policy names {len(bits)} distinct {what}, the kernel "
                            f"holds {limit}; share lists between rules")
    for key, bit in ctx.parent_bit.items():
        if key.startswith("/"):
            found = [identity(key)]
        else:
            if not header.name_fits(key):
                raise PackError(f"parent executable name {key!r} is longer than the kernel "
                                f"key ({header.name_bytes_max} bytes)")
            ctx.pnames[key.encode()] = ctx.pnames.get(key.encode(), 0) | 1 << bit
            found = [identity(os.path.join(d, key)) for d in bundle.get("search_path", [])]
        for ident in found:
            if ident is not None:
                ctx.pinodes[ident] = ctx.pinodes.get(ident, 0) | 1 << bit
    for prefix, bit in ctx.cwd_bit.items():
        exact = prefix.startswith(EXACT_CWD)
        ident = identity(prefix[1:] if exact else prefix)
        if ident is not None:
            ctx.dirs[ident] = ctx.dirs.get(ident, 0) | 1 << bit
        if exact:  # the kernel sets these bits for the cwd itself only (bpf/context.c)
            xkey = (0, header["EDR_XDIRS_INO"])
            ctx.dirs[xkey] = ctx.dirs.get(xkey, 0) | 1 << bit
    return ctx
