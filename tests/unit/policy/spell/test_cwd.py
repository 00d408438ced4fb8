"""Relative path arguments joined to the working directory (edrfleet/policy/spell/cwd.py):
the automaton with cwd-class symbols against the oracle (join, normalize, compare), the class
symbols transparent to every other condition, and the agent's one-step NUL columns."""

from __future__ import annotations

import os
import random

import pytest

from edrfleet.agent.maps import kernel_columns
from edrfleet.policy import compile_policy, load_policy_text, reference_decide, simulate
from edrfleet.policy.limits import EDR_NSYM, EDR_SYM_BOS, EDR_SYM_CWD, EDR_SYM_EOS
from edrfleet.policy.regex.dfa import build_dfa
from edrfleet.policy.regex.parse import ARG, CMD, regex_ast
from edrfleet.policy.spell import cwd as C
from edrfleet.policy.spell.options import option_ast
from edrfleet.policy.spell.paths import DEEP_DOTDOT, path_ast, path_holds
from edrfleet.policy.spell.spec import OptionSpec, PathSpec

SPECS = [
    PathSpec(("/etc/shadow", "/etc/passwd", "/etc/ssh/sshd_config", "/usr/bin")),
    PathSpec(("/var/log", "/boot"), below=True),
    PathSpec(("/", "/etc", "/usr/lib"), deep=False),
]
EXTRA = PathSpec(("/var/lib/dpkg", "/srv/a/b"))  # anchors of another matcher of the policy


def _words(spec: PathSpec, classes) -> tuple:
    return C.joined_words(spec, C.class_words(classes))


def _dfa(spec: PathSpec, classes, extra=()):
    conds = [(path_ast(spec, _words(spec, classes)), 0), *extra]
    return build_dfa(conds, [], cwd_classes=len(classes))


def _run(dfa, argv: list[bytes], cls: int) -> int:
    """The stream as bpf/scan.c reads it: BOS, argv joined by NUL with the class symbol after
    every NUL, EOS; the OR of the accept masks."""
    symbols = [EDR_SYM_BOS]
    for i, a in enumerate(argv):
        if i:
            symbols.append(0)
            if cls and len(dfa.classes) > EDR_NSYM:
                symbols.append(EDR_SYM_CWD + cls - 1)
        symbols.extend(a)
    symbols.append(EDR_SYM_EOS)
    accept = dict(dfa.accept)
    state, mask = dfa.start, 0
    for sym in symbols:
        state = dfa.trans[state * dfa.nclasses + dfa.classes[sym]]
        mask |= accept.get(state, 0)
    return mask


def _cwds(classes) -> list[bytes]:
    out = [b"/tmp/x/y/z", b"/home/u/a/b/c", b"/var/log/a/b/c"]
    for anchor in C.anchors(SPECS + [EXTRA]):
        base = anchor.rstrip("/").encode()
        out += [base or b"/", base + b"/q", base + b"/q/r"]
    return out


def _args(rng: random.Random) -> list[bytes]:
    comps = [b"etc", b"shadow", b"passwd", b"ssh", b"sshd_config", b"usr", b"bin", b"lib",
             b"var", b"log", b"boot", b"..", b".", b"q", b"r", b"x", b"..x", b".q"]
    out = []
    for _ in range(600):
        n = rng.randint(1, 5)
        parts = [rng.choice(comps) for _ in range(n)]
        arg = b"/".join(p + b"/" * rng.choice((0, 0, 0, 1)) for p in parts)
        if rng.random() < 0.2:
            arg += b"/"
        out.append(arg)
    return out


@pytest.mark.parametrize("spec", SPECS, ids=["files", "below", "allow-like"])
def test_joined_automaton_agrees_with_join_normalize_compare(spec):
    classes = C.cwd_classes([spec, EXTRA])
    dfa = _dfa(spec, classes)
    rng = random.Random(13)
    args = _args(rng)
    checked = hits = 0
    for cwd in _cwds(classes):
        cls = C.nearest_class(classes, cwd)
        aimed = [os.path.relpath(p.encode(), cwd) for t in spec.paths for p in (t, t + "/q")]
        aimed += [b"./" + a for a in aimed] + [a.replace(b"/", b"//") + b"/" for a in aimed]
        for arg in args + aimed:
            got = bool(_run(dfa, [b"rm", arg], cls) & 1)
            # more `..` than the automaton places: only what fails closed (deep) holds
            if arg.split(b"/").count(b"..") >= DEEP_DOTDOT:
                want = spec.deep
            else:
                want = path_holds(spec, arg) or C.joined_holds(spec, arg, cwd if cls else None)
            assert got == want, (spec, cwd, arg, cls)
            checked += 1
            hits += want
    assert checked > 10_000 and hits > 300  # the set holds matches, not only misses


def test_the_issue_cases_and_their_twins():
    spec = SPECS[0]
    classes = C.cwd_classes([spec])
    dfa = _dfa(spec, classes)

    def holds(cwd: bytes, arg: bytes) -> bool:
        return bool(_run(dfa, [b"shred", arg], C.nearest_class(classes, cwd)) & 1)

    assert holds(b"/etc/ssh", b"../shadow") and holds(b"/etc", b"shadow")
    assert holds(b"/etc/ssh/keys", b"../../passwd")  # a grandchild of /etc/ssh
    assert holds(b"/", b"etc//shadow/") and holds(b"/usr", b"bin")
    assert not holds(b"/tmp", b"../shadow") and not holds(b"/etc", b"/shadow")
    assert not holds(b"/etc/ssh", b"shadow") and not holds(b"/etc/a/b/c", b"../../shadow")
    assert not holds(b"/etc", b"")  # an empty argument names nothing


def test_class_symbols_are_transparent_to_other_conditions():
    spec = SPECS[0]
    classes = C.cwd_classes([spec])
    extra = [(regex_ast(b"^etc$", ARG), 1), (regex_ast(b"^(\\./+)*shadow", ARG), 2),
             (regex_ast(b"x$", ARG), 3)]
    dfa = build_dfa([(path_ast(spec, _words(spec, classes)), 0), *extra],
                    [(regex_ast(b"^rm etc x$", CMD), 4),
                     (option_ast(OptionSpec(("r",), ("recursive",), 1, ())), 5)],
                    cwd_classes=len(classes))
    for cwd in (b"/", b"/etc", b"/etc/ssh", b"/tmp/a"):
        cls = C.nearest_class(classes, cwd)
        mask = _run(dfa, [b"rm", b"etc", b"x"], cls)
        assert mask & 0b110010 == 0b010010, (cwd, bin(mask))  # ^etc$ and the cmdline hold
        assert _run(dfa, [b"rm", b"./shadow", b"-r"], cls) & 0b100100 == 0b100100
        assert _run(dfa, [b"rm", b"--", b"-r"], cls) & 0b100000 == 0  # '--' ends options
    assert _run(dfa, [b"rm", b"etc"], C.nearest_class(classes, b"/")) & 1 == 0  # / etc: no


def test_kernel_columns_read_nul_and_the_class_in_one_step():
    spec = SPECS[1]
    classes = C.cwd_classes([spec])
    dfa = _dfa(spec, classes, [(regex_ast(b"^log$", ARG), 1)]).to_json()
    kdfa = kernel_columns(dfa, EDR_NSYM)
    rng = random.Random(7)
    for argv in ([b"rm", b"log"], [b"rm", b"-r", b"../log/x"], [b"rm", b"a", b"b/", b".."]):
        for cls in (0, *rng.sample(range(1, len(classes) + 1), 6)):
            two = one = 0
            s2 = s1 = dfa["start"]
            acc = dict(map(tuple, dfa["accept"]))
            for sym in [EDR_SYM_BOS, *b"\0".join(argv), EDR_SYM_EOS]:
                s2 = dfa["trans"][s2 * dfa["nclasses"] + dfa["classes"][sym]]
                two |= acc.get(s2, 0)
                if sym == 0 and cls:
                    s2 = dfa["trans"][s2 * dfa["nclasses"] + dfa["classes"][EDR_SYM_CWD + cls - 1]]
                    two |= acc.get(s2, 0)
                col = kdfa["classes"][EDR_SYM_CWD + cls - 1 if sym == 0 and cls else sym]
                s1 = kdfa["trans"][s1 * kdfa["nclasses"] + col]
                one |= acc.get(s1, 0)
            assert (s1, one) == (s2, two), (argv, cls)


def _fs(dirs: list[str]):
    ids = {d: (1, 100 + i) for i, d in enumerate(dirs)}

    def stat(path):
        p = os.fsdecode(path)
        if p not in ids:
            raise FileNotFoundError(p)
        return os.stat_result((0o40755, ids[p][1], ids[p][0], 1, 0, 0, 0, 0, 0, 0))
    return stat


POLICY = """
version: 1
rules:
  - {id: shadow, description: d, severity: high, action: block,
     match: {executable: [shred, rm], args: [{path: [/etc/shadow]}]}}
  - {id: tree, description: d, severity: high, action: block,
     match: {executable: [rm], args: [{option: {short: r}}, {path: {is: [/etc], below: true}}]}}
"""


@pytest.mark.parametrize(("cwd", "argv", "rule"), [
    ("/etc/ssh", ["shred", "../shadow"], "shadow"),
    ("/etc", ["rm", "-r", "ssh"], "tree"),
    ("/etc/ssh", ["rm", "-r", "."], "tree"),
    ("/", ["rm", "-r", "etc/x"], "tree"),
    ("/tmp", ["shred", "../shadow"], None),
    ("/tmp", ["rm", "-r", "ssh"], None),
    (None, ["shred", "shadow"], None),
])
def test_simulate_and_reference_join_alike(cwd, argv, rule):
    pol = load_policy_text(POLICY)
    bundle = compile_policy(pol)
    assert len(bundle["cwd_classes"]) == 3 * len(C.anchors([PathSpec(("/etc/shadow",))]))
    stat = _fs(["/", "/etc", "/etc/ssh", "/tmp"])
    got = simulate(bundle, argv, identity=(9, 9), stat=stat, cwd=cwd)
    assert got == reference_decide(pol, argv, identity=(9, 9), stat=stat, cwd=cwd)
    assert got.rule == rule, (cwd, argv, got)


def test_a_policy_without_path_matchers_keeps_its_bytes():
    bundle = compile_policy(load_policy_text("""
version: 1
rules:
  - {id: r, description: d, severity: high, action: block,
     match: {executable: [rm], args: [{regex: '^x$'}]}}
"""))
    assert "cwd_classes" not in bundle
    assert all(len(d["classes"]) == EDR_NSYM for d in bundle["dfas"])


def test_a_policy_with_more_anchors_than_classes_joins_level_0_then_the_shallowest():
    many = PathSpec(tuple(f"/srv/d{i}/f" for i in range(120)))
    classes = C.cwd_classes([many])
    assert len(classes) <= 248 and {lvl for _, lvl in classes} == {0}
    assert ("/", 0) in classes and ("/srv", 0) in classes
    huge = PathSpec(tuple(f"/srv/d{i}/f" for i in range(300)))
    classes = C.cwd_classes([huge])
    assert len(classes) == 248 and ("/srv/d0", 0) in classes
    assert not any(a.endswith("/f") for a, _ in classes)  # the deepest anchors left out
