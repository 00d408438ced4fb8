"""Property tests: the compiled automata decide exactly like Python's re / fnmatch.

Small regexes are generated from a grammar over a small alphabet (space, '-', '/', 'a', 'b',
'A', newline, '_'), with classes, categories, anchors, word boundaries, repeats and flags;
random policies are compiled and ``simulate`` must equal ``reference_decide`` on random argvs.
"""

from __future__ import annotations

import re

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edrfleet.policy import (
    PolicyError,
    compile_policy,
    load_policy_text,
    reference_decide,
    simulate,
)
from edrfleet.policy.identity import stream_symbols
from edrfleet.policy.regex.dfa import build_dfa
from edrfleet.policy.regex.parse import ARG, CMD, RegexUnsupported, regex_ast
from edrfleet.policy.simulate import run_dfa
from tests.unit.helpers.policy_helpers import FS, PATH

TEXT_ALPHABET = "ab -/A\n_"
LITERALS = ["a", "b", " ", "-", "/", "A", "\\n", "_", "\\-", "\\ "]
ATOMS = ["[ab]", "[^a ]", "[a-b]", "[ -/]", "[^-]", ".", "\\s", "\\S", "\\w", "\\W", "\\d",
         "[^\\w ]", "[A-a]"]
ANCHORS = ["^", "$", "\\A", "\\Z", "\\b", "\\B"]
REPEATS = ["*", "+", "?", "{0,2}", "{1,3}", "{2}", "*?", "+?", "??"]
FLAGS = ["", "", "(?i)", "(?s)", "(?m)", "(?is)", "(?x)"]


def regexes() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(LITERALS) | st.sampled_from(ATOMS) | st.sampled_from(ANCHORS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return (
            st.lists(inner, min_size=2, max_size=3).map("".join)
            | st.tuples(inner, inner).map(lambda t: f"(?:{t[0]}|{t[1]})")
            | inner.map(lambda x: f"({x})")
            | st.tuples(inner, st.sampled_from(REPEATS)).map(lambda t: f"(?:{t[0]}){t[1]}")
        )

    body = st.recursive(leaf, extend, max_leaves=6)
    return st.tuples(st.sampled_from(FLAGS), body).map("".join)


texts = st.text(alphabet=TEXT_ALPHABET, max_size=4)
argvs = st.tuples(st.sampled_from(["rm", "/usr/bin/rm", "/bin/rm", "ls", "x y", "a"]),
                  st.lists(texts, max_size=3)).map(lambda t: [t[0], *t[1]])
globs = st.text(alphabet="ab*?[]!-/ ", max_size=5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regexes(), samples=st.lists(argvs, min_size=1, max_size=12))
def test_a_generated_regex_automaton_agrees_with_re_search(pattern, samples):
    data = pattern.encode()
    try:
        rx = re.compile(data)
        cmd_ast, arg_ast = regex_ast(data, CMD), regex_ast(data, ARG)
    except (re.error, RegexUnsupported):
        assume(False)
        return
    dfa = build_dfa([(arg_ast, 0)], [(cmd_ast, 1)])
    for argv in samples:
        raw = [a.encode() for a in argv]
        mask = run_dfa(dfa.to_json(), stream_symbols(raw))
        assert bool(mask & 2) == bool(rx.search(b" ".join(raw))), (pattern, argv, "cmdline")
        assert bool(mask & 1) == any(rx.search(a) for a in raw[1:]), (pattern, argv, "args")


def arg_entries() -> st.SearchStrategy[dict]:
    return (
        st.lists(texts, min_size=1, max_size=2).map(lambda v: {"any": v})
        | globs.map(lambda g: {"glob": g})
        | regexes().map(lambda r: {"regex": r})
    )


@st.composite
def rules(draw, index: int) -> dict:
    match: dict = {}
    exe = draw(st.sampled_from([None, ["rm"], ["/usr/bin/rm"], ["ls"], ["rm", "ls"]]))
    if exe:
        match["executable"] = exe
    args = draw(st.lists(arg_entries(), max_size=2))
    if args:
        match["args"] = args
    if draw(st.booleans()):
        match["cmdline"] = draw(regexes())
    if draw(st.integers(0, 4)) == 0:
        match["uid"] = [draw(st.sampled_from([0, 1000]))]
    if not match:
        match["executable"] = ["rm"]
    return {"id": f"r{index}", "description": "generated", "severity": "low",
            "action": draw(st.sampled_from(["block", "log", "allow"])), "match": match}


@st.composite
def policies(draw) -> str:
    count = draw(st.integers(1, 4))
    doc = {"version": 1, "rules": [draw(rules(i)) for i in range(count)]}
    return yaml.safe_dump(doc)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=policies(), samples=st.lists(argvs, min_size=1, max_size=8),
       uid=st.sampled_from([0, 1000]))
def test_simulate_on_the_bundle_equals_the_reference_on_the_policy(text, samples, uid):
    try:
        pol = load_policy_text(text, "generated.yaml")
        bundle = compile_policy(pol)
    except PolicyError:
        assume(False)
        return
    for argv in samples:
        expected = reference_decide(pol, argv, uid=uid, stat=FS, path=PATH)
        assert simulate(bundle, argv, uid=uid, stat=FS, path=PATH) == expected, (text, argv)
