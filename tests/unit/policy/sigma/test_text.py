"""Sigma values as kernel-subset regexes (edrfleet/policy/sigma/text.py), checked against
Python's ``re`` on every short string over a small alphabet."""

from __future__ import annotations

import itertools
import re

import pytest
from sigma.types import SigmaString

from edrfleet.policy.regex.parse import ARG, CMD, regex_ast
from edrfleet.policy.sigma.text import (
    arg_regex,
    cmdline_regex,
    complement_regex,
    escape,
    from_sigma,
)

ALPHABET = b"ab -lA*\\]"
TEXTS = [bytes(t) for n in range(6) for t in itertools.product(ALPHABET, repeat=n)]
VALUES = ["* -l *", "*ab*", "ab*", "*ba", "a?b", "*a*b*", "", "*", "-l", "a\\*b", "*a]b*",
          "*A-*", "? ?"]


def _sigma_match(value: str, text: bytes) -> bool:
    """Sigma's own semantics: a full, case-insensitive wildcard match (``*``, ``?``)."""
    rx = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch)
                 for ch in re.split(r"(\\\*|\*|\?)", value) if ch) if value else ""
    rx = rx.replace(re.escape("\\*"), re.escape("*"))
    return re.fullmatch(rx.encode(), text, re.IGNORECASE | re.DOTALL) is not None


@pytest.mark.parametrize("value", VALUES)
def test_cmdline_regex_is_the_sigma_match_and_its_complement_the_opposite(value: str) -> None:
    p = from_sigma(SigmaString(value))
    pos = re.compile(cmdline_regex(p).encode())
    comp = complement_regex(p)
    neg = re.compile(comp.encode()) if comp is not None else None
    for text in TEXTS:
        want = _sigma_match(value, text)
        assert (pos.search(text) is not None) == want, (value, text)
        assert (neg is not None and neg.search(text) is not None) == (not want), (value, text)
    for rx in (cmdline_regex(p), comp, arg_regex(p)):
        if rx is not None:
            regex_ast(rx.encode(), CMD)  # the kernel's subset: no look-around, no \b
            regex_ast(rx.encode(), ARG)


def test_a_value_matching_everything_has_no_complement() -> None:
    assert complement_regex(from_sigma(SigmaString("*"))) is None


def test_cased_values_are_case_sensitive() -> None:
    p = from_sigma(SigmaString("*Ab*"), icase=False)
    assert re.search(cmdline_regex(p).encode(), b"xAbx")
    assert not re.search(cmdline_regex(p).encode(), b"xabx")
    assert re.search(complement_regex(p).encode(), b"xabx")


def test_escape_keeps_printable_ascii_and_hex_escapes_the_rest() -> None:
    assert escape("a.b (c)|\u2013".encode()) == "a\\.b \\(c\\)\\|\\xe2\\x80\\x93"
    assert re.fullmatch(escape(bytes(range(256))).encode(), bytes(range(256)))


@pytest.mark.parametrize("values", [["* -l *", "* --listen *"], ["ab*", "*ba"], ["a?b", "*b*"],
                                    ["", "-l"]])
def test_the_complement_of_several_values_matches_when_none_does(values: list[str]) -> None:
    comp = complement_regex([from_sigma(SigmaString(v)) for v in values])
    assert comp is not None
    neg = re.compile(comp.encode())
    for text in TEXTS:
        assert (neg.search(text) is not None) == (
            not any(_sigma_match(v, text) for v in values)), (values, text)
