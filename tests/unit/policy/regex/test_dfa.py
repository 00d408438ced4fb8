"""Regex -> NFA -> DFA: the automaton agrees with Python's re, fnmatch and literals."""

from __future__ import annotations

import fnmatch
import itertools
import random
import re

import pytest

from edrfleet.policy.identity import stream_symbols
from edrfleet.policy.regex.dfa import DfaTooLarge, build_dfa, minimize
from edrfleet.policy.regex.nfa import NfaTooLarge
from edrfleet.policy.regex.parse import ARG, CMD, RegexUnsupported, any_ast, glob_ast, regex_ast
from edrfleet.policy.simulate import run_dfa

ALPHABET = b"ab -/\nAZ_09."


def corpus() -> list[list[bytes]]:
    """Every argv of up to 3 strings over a tiny alphabet, plus random longer ones."""
    small = [b"", b"a", b"b", b" ", b"\n", b"A", b"-", b"/"]
    out = [[a] for a in small]
    out += [[b"x", *rest] for n in (1, 2) for rest in itertools.product(small, repeat=n)]
    rnd = random.Random(7)
    for _ in range(300):
        out.append([bytes(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 5)))
                    for _ in range(rnd.randint(1, 4))])
    return out


CORPUS = corpus()

PATTERNS = [
    rb"a", rb"ab", rb"a|b", rb"^a", rb"a$", rb"^a$", rb"\Aa\Z", rb"^$", rb"^", rb"$", rb"",
    rb"a\n?$", rb"$\n", rb"a$\n", rb"\Z", rb"\A", rb"a\Z",
    rb"\ba", rb"a\b", rb"\b", rb"\B", rb"\Ba\B", rb"\b\b", rb"\B$", rb"^\B", rb"a\b ",
    rb"(?m)^b", rb"(?m)a$", rb"(?m)$\n^", rb"(?m)^$",
    rb"(?i)A[b-c]", rb"(?i)[Z-a]", rb"(?i:a)B", rb"(?i)[^a]", rb"(?i)[^A-Z]",
    rb"[^a]", rb".", rb"(?s).", rb"a.b", rb"(?s)a.*b", rb"[ -/]{2}", rb"[\s]", rb"[^\S]",
    rb"\s", rb"\S+", rb"\w", rb"\W", rb"\d", rb"\D\D", rb"a b", rb" ", rb"[ ]", rb"\x00",
    rb"a{2,3}", rb"a{2}", rb"a{0,2}b", rb"(ab|a)*b", rb"a*?b", rb"(?:a|b)+?$", rb"a{1,}",
    rb"x*", rb"(a*)*b", rb"(|a)+", rb"((a|)b)*\Z", rb"(?x) a  b # comment",
    rb"-[a-zA-Z]*[rR][a-zA-Z]*$", rb"^-[a-z]*r", rb"^/\S*$", rb"a\b\B", rb"\b-",
]


def matches_cmd(dfa, argv):
    return bool(run_dfa(dfa.to_json(), stream_symbols(argv)))


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.decode("latin-1") for p in PATTERNS])
def test_a_regex_automaton_agrees_with_re_search_in_both_contexts(pattern):
    rx = re.compile(pattern)
    on_cmdline = build_dfa([], [(regex_ast(pattern, CMD), 0)])
    in_an_arg = build_dfa([(regex_ast(pattern, ARG), 0)], [])
    for argv in CORPUS:
        syms = stream_symbols(argv)
        assert bool(run_dfa(on_cmdline.to_json(), syms)) == bool(rx.search(b" ".join(argv))), argv
        assert bool(run_dfa(in_an_arg.to_json(), syms)) == any(rx.search(a) for a in argv[1:]), argv


GLOBS = [b"*", b"a*", b"*a", b"*a*b*", b"?", b"??", b"[!a]?", b"[]a]", b"[!]a]", b"[", b"[a-]",
         b"[z-a]", b"[!]", b"[]", b"\\*", b"", b"/*", b"[a-b-]", b"*[ab]b*", b"a[!-/]*",
         b"[[]", b"-*", b"*\n"]


@pytest.mark.parametrize("glob", GLOBS, ids=[g.decode("latin-1") for g in GLOBS])
def test_a_glob_automaton_agrees_with_fnmatchcase_on_whole_arguments(glob):
    dfa = build_dfa([(glob_ast(glob), 0)], [])
    for argv in CORPUS:
        expected = any(fnmatch.fnmatchcase(a, glob) for a in argv[1:])
        assert bool(run_dfa(dfa.to_json(), stream_symbols(argv))) == expected, argv


def test_an_any_automaton_matches_whole_arguments_only():
    dfa = build_dfa([(any_ast((b"-rf", b"", b"a b")), 0)], [])
    assert run_dfa(dfa.to_json(), stream_symbols([b"rm", b"-rf"]))
    assert run_dfa(dfa.to_json(), stream_symbols([b"rm", b"x", b""]))
    assert run_dfa(dfa.to_json(), stream_symbols([b"echo", b"a b"]))
    assert not run_dfa(dfa.to_json(), stream_symbols([b"rm", b"-rfv"]))
    assert not run_dfa(dfa.to_json(), stream_symbols([b"-rf"])), "argv[0] is not an argument"
    assert not run_dfa(dfa.to_json(), stream_symbols([b"echo", b"a", b"b"])), \
        "NUL is not a space in args"


def test_on_the_command_line_nul_is_the_space_between_arguments():
    dfa = build_dfa([], [(regex_ast(rb"rm -rf /$", CMD), 0)])
    assert run_dfa(dfa.to_json(), stream_symbols([b"rm", b"-rf", b"/"]))
    assert run_dfa(dfa.to_json(), stream_symbols([b"rm -rf", b"/"]))
    assert not run_dfa(dfa.to_json(), stream_symbols([b"rm", b"-rf", b"/x"]))


def test_several_conditions_set_their_own_bits_in_one_automaton():
    dfa = build_dfa(
        [(regex_ast(rb"^-[a-z]*r", ARG), 0), (any_ast((b"-f",)), 1), (glob_ast(b"/*"), 2)],
        [(regex_ast(rb"^rm ", CMD), 3)])
    assert run_dfa(dfa.to_json(), stream_symbols([b"rm", b"-r", b"-f", b"/"])) == 0b1111
    assert run_dfa(dfa.to_json(), stream_symbols([b"rm", b"-f", b"x"])) == 0b1010
    assert run_dfa(dfa.to_json(), stream_symbols([b"ls", b"/tmp"])) == 0b0100


def test_the_tables_have_the_bundle_shape():
    dfa = build_dfa([], [(regex_ast(rb"ab", CMD), 5)])
    assert len(dfa.classes) == 258 and max(dfa.classes) == dfa.nclasses - 1
    assert len(dfa.trans) == dfa.nstates * dfa.nclasses and dfa.start == 0
    assert all(0 <= t < dfa.nstates for t in dfa.trans)
    assert [m for _, m in dfa.accept] == [1 << 5] * len(dfa.accept)


def test_symbols_no_pattern_tells_apart_share_one_class():
    dfa = build_dfa([], [(regex_ast(rb"ab", CMD), 0)])
    classes = dfa.classes
    assert classes[ord("c")] == classes[ord("z")] == classes[0] == classes[255]
    assert len({classes[ord("a")], classes[ord("b")], classes[ord("c")], classes[256],
                classes[257]}) == dfa.nclasses == 5
    # the partition is the coarsest: no two classes have identical columns
    columns = {tuple(dfa.trans[s * dfa.nclasses + c] for s in range(dfa.nstates))
               for c in range(dfa.nclasses)}
    assert len(columns) == dfa.nclasses


def test_in_an_argument_classes_never_match_the_separator():
    dfa = build_dfa([(regex_ast(rb"a[^b]c", ARG), 0)], [])
    assert not run_dfa(dfa.to_json(), stream_symbols([b"x", b"a", b"c"]))
    assert run_dfa(dfa.to_json(), stream_symbols([b"x", b"a c"]))


def test_moore_and_hopcroft_minimize_to_the_same_automaton():
    rnd = random.Random(3)
    for _ in range(30):
        n, k = rnd.randint(1, 40), rnd.randint(1, 4)
        rows = [[rnd.randrange(n) for _ in range(k)] for _ in range(n)]
        masks = [rnd.choice([0, 0, 1, 2]) for _ in range(n)]
        moore, count_m = minimize(rows, masks, k)
        hopcroft, count_h = minimize(rows, masks, k, moore_rounds=0)
        assert count_m == count_h
        assert len({(a, b) for a, b in zip(moore, hopcroft, strict=True)}) == count_m


UNSUPPORTED = [
    (rb"(a)\1", "back-reference \\1", 3),
    (rb"(?P<x>a)(?P=x)", "back-reference \\1", 8),
    (rb"a(?=b)", "look-ahead (?=...)", 1),
    (rb"a(?!b)", "look-ahead (?!...)", 1),
    (rb"(?<=a)b", "look-behind (?<=...)", 0),
    (rb"(?<!a)b", "look-behind (?<!...)", 0),
    (rb"(a)?(?(1)b|c)", "conditional group (?(1)...)", 4),
    (rb"(?>a)", "atomic group (?>...)", 0),
    (rb"a++", "possessive repeat ++", 1),
    (rb"a{2,3}+", "possessive repeat {2,3}+", 5),
    (rb"(?L)a", "(?L)", 0),
    (rb"a{1001}", "{1001}", 1),
]


@pytest.mark.parametrize(("pattern", "piece", "pos"), UNSUPPORTED,
                         ids=[u[0].decode() for u in UNSUPPORTED])
def test_constructs_a_dfa_cannot_run_exactly_are_refused_with_a_hint(pattern, piece, pos):
    with pytest.raises(RegexUnsupported) as info:
        regex_ast(pattern, CMD)
    assert info.value.piece == piece
    assert info.value.pos == pos
    assert info.value.hint


def test_invalid_syntax_is_python_re_error_with_position():
    with pytest.raises(re.error) as info:
        regex_ast(rb"ab(c", ARG)
    assert info.value.pos == 2


def test_an_automaton_past_the_state_cap_is_refused():
    ast = regex_ast(rb"(a|b)*a(a|b){12}", CMD)  # the search DFA needs 2**13 states
    with pytest.raises(DfaTooLarge):
        build_dfa([], [(ast, 0)])
    assert build_dfa([], [(regex_ast(rb"(a|b)*a(a|b){4}", CMD), 0)]).nstates <= 64


def test_a_pattern_that_expands_past_the_nfa_cap_is_refused():
    with pytest.raises(NfaTooLarge) as info:
        build_dfa([], [(regex_ast(rb"(a{1000}){1000}", CMD), 0)])
    assert "{m,n}" in info.value.hint
