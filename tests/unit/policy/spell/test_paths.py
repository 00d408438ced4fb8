"""``path``: the automaton accepts the lexical spellings of a path (examples, and random
spellings built by inserting no-ops), and agrees with the component-level oracle."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edrfleet.policy.regex.dfa import build_dfa
from edrfleet.policy.spell.paths import DETOUR_DEPTH, path_ast, path_holds
from edrfleet.policy.spell.spec import PathSpec

ETC = PathSpec(("/etc", "/"))
CANARY = PathSpec(("/tmp/edrfleet-canary-x",), below=True)
ALLOW = PathSpec(("/etc",), deep=False)  # as an allow rule uses it


def dfa_holds(spec: PathSpec, arg: bytes) -> bool:
    dfa = build_dfa([(path_ast(spec), 0)], [], max_states=4096)
    state, hit = dfa.start, False
    for sym in [256, 0x61, 0, *arg, 257]:  # BOS "a" NUL arg EOS
        state = dfa.trans[state * dfa.nclasses + dfa.classes[sym]]
        hit |= any(s == state for s, _ in dfa.accept)
    return hit


CASES = [
    (ETC, "/etc", True), (ETC, "//etc", True), (ETC, "/etc/", True), (ETC, "/./etc/.", True),
    (ETC, "/tmp/../etc", True), (ETC, "/../etc", True), (ETC, "/etc/x/..", True),
    (ETC, "/proc/self/root/etc", True), (ETC, "/proc/1/root//etc/", True),
    (ETC, "/proc/thread-self/root/proc/self/root/etc", True), (ETC, "/", True),
    (ETC, "/.", True), (ETC, "//", True), (ETC, "/a/b/../../etc", True),
    (ETC, "/tmp/x/..", False), (ETC, "/etc/x", False), (ETC, "etc", False),
    (ETC, "/etcx", False), (ETC, "/proc/self/cwd/etc", True), (ETC, "/etc/...", False),
    (ETC, "/a/b/c/../../../etc", True),  # deeper than DETOUR_DEPTH: fails closed
    (ETC, "/a/b/c/d/e/../../../../../etc", True), (ETC, "../../../tmp", True),
    (ETC, "x/../y/../z/..", True), (ETC, "/a/..b/..c/..d", False), (ETC, "../../x", False),
    (CANARY, "/tmp/a/b/c/../../../edrfleet-canary-y", True),
    (ALLOW, "/a/b/c/../../../etc", False), (ALLOW, "/a/b/../../etc", True),
    (ETC, "", False), (ETC, "/.../etc", False),
    (CANARY, "/tmp/edrfleet-canary-x", True), (CANARY, "/tmp/edrfleet-canary-x/a/b", True),
    (CANARY, "/tmp//edrfleet-canary-x/./a/../b", True), (CANARY, "/tmp/edrfleet-canary-y", False),
    (CANARY, "/tmp/edrfleet-canary-x/..", False),
]


@pytest.mark.parametrize(("spec", "arg", "want"), CASES, ids=[c[1] or "empty" for c in CASES])
def test_spellings(spec: PathSpec, arg: str, want: bool) -> None:
    assert path_holds(spec, arg.encode()) is want
    assert dfa_holds(spec, arg.encode()) is want


comps = st.lists(st.sampled_from(["etc", "tmp", ".", "..", "x", "...", "proc", "self",
                                  "root", "1", "a.b"]), max_size=7)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=comps, slashes=st.lists(st.integers(1, 2), min_size=8, max_size=8),
       trailing=st.booleans(), below=st.booleans(), deep=st.booleans())
def test_automaton_agrees_with_the_oracle(parts: list[str], slashes: list[int],
                                          trailing: bool, below: bool, deep: bool) -> None:
    joined = "".join("/" * n + p for n, p in zip(slashes, parts, strict=False))
    arg = joined + ("/" if trailing else "")
    arg = arg or "/"
    spec = PathSpec(("/etc", "/tmp/x"), below, deep)
    assert dfa_holds(spec, arg.encode()) == path_holds(spec, arg.encode())


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.sampled_from(["etc", "tmp", ".", "..", "x"]), max_size=6))
def test_shallow_spellings_are_normpath(parts: list[str]) -> None:
    """Within the detour depth (no /proc), the oracle is exactly lexical normalization."""
    arg = "/" + "/".join(parts)
    depth, worst = 0, 0
    for p in parts:
        depth = max(0, depth + (p not in (".", "..")) - (p == ".."))
        worst = max(worst, depth)
    if worst > DETOUR_DEPTH:
        return
    want = posixpath.normpath(arg).replace("//", "/") == "/etc"
    assert path_holds(PathSpec(("/etc",), deep=False), arg.encode()) == want
