"""Literals a regex requires (the prefilter's input): the expected sets for the usual shapes,
and soundness - a text re.search matches always holds one of them - for generated regexes."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edrfleet.policy.regex.literals import Lit, required, show
from edrfleet.policy.regex.parse import ARG, CMD, any_ast, glob_ast, regex_ast


def shown(pattern: str) -> list[str] | None:
    lits = required(regex_ast(pattern.encode(), CMD))
    return None if lits is None else sorted(show(lit) for lit in lits)


@pytest.mark.parametrize(("pattern", "expected"), [
    ("mimikatz", ["mimikatz"]),
    ("/dev/(tcp|udp)/", ["/dev/tcp/", "/dev/udp/"]),
    (r"base64 +(-d|--decode)", ["base64 "]),
    (r"^[^ ]+ -c .*(curl|wget) ", ["curl ", "wget "]),
    (r"(foo|bar)+baz?", ["barba", "fooba"]),
    (r"x{3}y", ["xxxy"]),
    (r"(?i)nc +-e", ["NC "]),  # a position per case pair, shown by its lowest byte
    (r"x +-rf", [" -rf"]),  # the repeat's copy joins what follows too
    (r"ab(cd)+", ["abcd"]),
    (r"a.*b", None),  # nothing of 3 bytes is required
    (r"[|] *(ba)?sh( |$)", None),
    (r"(abc)?def", ["def"]),
    (r"abc|d", None),  # one alternative has no usable literal
])
def test_the_literals_of_usual_shapes(pattern, expected):
    assert shown(pattern) == expected


def test_a_space_in_a_cmdline_literal_also_stands_for_the_argv_separator():
    (lit,) = required(regex_ast(b"rm -rf", CMD))
    assert all(lit[2] >> b & 1 for b in (0x20, 0x00))


def test_any_and_glob_conditions_have_literals_too():
    assert sorted(show(x) for x in required(any_ast((b"-rf", b"--recursive")))) == [
        "--recursive", "-rf"]
    assert [show(x) for x in required(glob_ast(b"/etc/shadow*"))] == ["/etc/shadow"]
    assert [show(x) for x in required(glob_ast(b"*.sh"))] == [".sh"]
    assert required(glob_ast(b"*.c")) is None


def matches(lit: Lit, text: bytes) -> bool:
    return any(all(lit[j] >> text[i + j] & 1 for j in range(len(lit)))
               for i in range(len(text) - len(lit) + 1))


PIECES = ["abc", "xyz", "ab", "/dev/", "-e ", "a", "b", " ", "."]
ATOMS = ["[ab]", "[a-z]", ".", "\\s", "\\w", "[^a]", "\\d"]


def regexes() -> st.SearchStrategy[str]:
    leaf = st.sampled_from([re.escape(p) for p in PIECES]) | st.sampled_from(ATOMS) | \
        st.sampled_from(["^", "$", "\\b"])

    def extend(inner):
        return (st.lists(inner, min_size=2, max_size=4).map("".join)
                | st.tuples(inner, inner).map(lambda t: f"(?:{t[0]}|{t[1]})")
                | st.tuples(inner, st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,2}"]))
                .map(lambda t: f"(?:{t[0]}){t[1]}"))

    return st.tuples(st.sampled_from(["", "(?i)"]), st.recursive(leaf, extend, max_leaves=8)
                     ).map("".join)


texts = st.lists(st.sampled_from(["abc", "xyz", "ab", "/dev/", "-e", " ", "A", "B", "q", "1",
                                  "XYZ", "ABC"]), max_size=10).map("".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regexes(), samples=st.lists(texts, min_size=1, max_size=20))
def test_every_text_a_regex_finds_holds_one_of_its_literals(pattern, samples):
    for ctx in (CMD, ARG):
        lits = required(regex_ast(pattern.encode(), ctx))
        if lits is None:
            continue
        for text in samples:
            data = text.encode()
            m = re.search(pattern.encode(), data)
            if m:
                assert any(matches(lit, data) for lit in lits), (pattern, text, lits)
