"""``option`` and ``path`` entries: bad input is one clear error with its place and a fix."""

from __future__ import annotations

import pytest

from edrfleet.policy import PolicyError, load_policy_text

HEAD = ("version: 1\nrules:\n  - id: a\n    description: d\n    severity: low\n"
        "    action: block\n    match:\n      args:\n")


def error(entry: str) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy_text(HEAD + "        - " + entry + "\n", "policy.yaml")
    return str(info.value)


@pytest.mark.parametrize(("entry", "expected"), [
    ("option: {abbrev: 2}", "policy.yaml:9:19: 'option' in rule 'a' names no option (fix: "
                            "write 'option: {short: r, long: recursive}')"),
    ("option: {short: rf}", "policy.yaml:9:27: bad short option 'rf' in rule 'a'"),
    ("option: {long: recursive, abbrev: 0}", "policy.yaml:9:45: 'abbrev' in rule 'a' must be a "
                                             "whole number >= 1"),
    ("option: {lng: x}", "policy.yaml:9:20: unknown key 'lng' in 'option' of rule 'a' (fix: "
                         "did you mean 'long'?)"),
    ("option: -r", "'option' in rule 'a' must be a mapping, not a string"),
    ("path: /etc/", "policy.yaml:9:17: path '/etc/' in rule 'a' is not absolute and canonical "
                    "(fix: write '/etc'"),
    ("path: etc", "write '/etc'"),
    ("path: {is: [/a/../b]}", "write '/b'"),
    ("path: {below: true}", "missing required key 'is'"),
    ("path: {is: /x, below: 1}", "'below' in rule 'a' must be true or false"),
])
def test_bad_entry_names_place_and_fix(entry: str, expected: str) -> None:
    assert expected in error(entry)


def test_good_entries_load_with_canonical_text() -> None:
    policy = load_policy_text(HEAD + "        - option: {short: [r, R], long: --recursive}\n"
                                     "        - path: {is: [/etc, /etc], below: true}\n", "p.yaml")
    option, path = policy.rules[0].args
    assert (option.kind, path.kind) == ("option", "path")
    assert '"long": ["recursive"]' in str(option.value)  # the leading -- is dropped
    assert '"is": ["/etc"]' in str(path.value)
