"""``option``: the compiled automaton reads argv as getopt does (examples), and agrees with
the plain-Python oracle on random argvs (property)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edrfleet.policy.identity import stream_symbols
from edrfleet.policy.regex.dfa import build_dfa
from edrfleet.policy.spell.options import option_ast, option_holds
from edrfleet.policy.spell.spec import OptionSpec

RM = OptionSpec(short=("r", "R"), long=("recursive",))
TAR = OptionSpec(long=("remove-files",), abbrev=3, takes=("f", "C", "file", "directory"))


def dfa_holds(spec: OptionSpec, argv: list[bytes]) -> bool:
    dfa = build_dfa([], [(option_ast(spec), 0)], max_states=4096)
    state, hit = dfa.start, False
    for sym in stream_symbols(argv):
        state = dfa.trans[state * dfa.nclasses + dfa.classes[sym]]
        hit |= any(s == state for s, _ in dfa.accept)
    return hit


CASES = [
    (RM, "rm -rf V", True), (RM, "rm -r -f V", True), (RM, "rm -fr V", True),
    (RM, "rm -Rf V", True), (RM, "rm -vfR V", True), (RM, "rm --recursive V", True),
    (RM, "rm --recur --force V", True), (RM, "rm --r V", True), (RM, "rm V -rf", True),
    (RM, "rm -f V", False), (RM, "rm -- -rf", False), (RM, "rm -f -- -r V", False),
    (RM, "rm --force V", False), (RM, "rm --recursivex V", False), (RM, "rm ---r V", False),
    (RM, "rm V", False), (RM, "-rf V", False),  # argv[0] is never an option
    (TAR, "tar -cf x.tar --remove-files d", True), (TAR, "tar --rem d", True),
    (TAR, "tar --remove-files=x d", True), (TAR, "tar --re d", False),
    (TAR, "tar -f -- --remove-files d", True),  # '--' is -f's value, not the end
    (TAR, "tar -cf x -- --remove-files", False), (TAR, "tar --file -- --remove d", True),
]


@pytest.mark.parametrize(("spec", "line", "want"), CASES, ids=[c[1] for c in CASES])
def test_getopt_spellings(spec: OptionSpec, line: str, want: bool) -> None:
    argv = [a.encode() for a in line.split()]
    assert option_holds(spec, argv[1:]) is want
    assert dfa_holds(spec, argv) is want


def test_a_value_letter_ends_the_cluster() -> None:
    spec = OptionSpec(short=("r",), takes=("C",))
    assert not option_holds(spec, [b"-Cr"]) and not dfa_holds(spec, [b"x", b"-Cr"])
    assert option_holds(spec, [b"-vr"]) and dfa_holds(spec, [b"x", b"-vr"])


specs = st.builds(
    OptionSpec, short=st.lists(st.sampled_from("rRf"), max_size=2).map(tuple),
    long=st.lists(st.sampled_from(["recursive", "rex", "force"]), min_size=1,
                  max_size=2).map(tuple),
    abbrev=st.integers(1, 4), takes=st.lists(st.sampled_from(["f", "C", "rex"]),
                                            max_size=2).map(tuple))
words = st.sampled_from(["-", "--", "-r", "-fr", "-Cr", "-f", "--re", "--rec=1", "--rexx",
                         "--force", "--f", "x", "/", "-R", "--recursive", "---r", "", "-rC"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, args=st.lists(words, max_size=5))
def test_automaton_agrees_with_the_oracle(spec: OptionSpec, args: list[str]) -> None:
    argv = [b"prog", *(a.encode() for a in args)]
    assert dfa_holds(spec, argv) == option_holds(spec, argv[1:])
