"""Host keys: ranges and ports as Ansible expands them."""

from __future__ import annotations

import pytest

from edrfleet.fleet.inventory.hostrange import RangeError, expand_range, parse_address, split_port


@pytest.mark.parametrize(("key", "names"), [
    ("web[01:03]", ["web01", "web02", "web03"]),
    ("web[1:3]", ["web1", "web2", "web3"]),
    ("web[8:10]", ["web8", "web9", "web10"]),
    ("web[:2]", ["web0", "web1", "web2"]),
    ("n[0:10:5]", ["n0", "n5", "n10"]),
    ("db-[a:c]", ["db-a", "db-b", "db-c"]),
    ("x[y:B]", ["xy", "xz", "xA", "xB"]),  # Ansible's letters: a..z then A..Z
    ("r[1:2]u[a:b]", ["r1ua", "r1ub", "r2ua", "r2ub"]),
    ("10.0.[0:1].[1:2]", ["10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2"]),
    ("plain", ["plain"]),
])
def test_expand_range(key: str, names: list[str]) -> None:
    assert expand_range(key) == names


@pytest.mark.parametrize(("key", "why"), [
    ("w[1:]", "no end value"), ("w[3:1]", "begin <= end"), ("w[c:a]", "begin <= end"),
    ("w[01:9]", "same number of digits"), ("w[1:a]", "from a number to a number"),
    ("w[1:2:x]", "step that is not a number"), ("w[1:2:0]", "step of 1 or more"),
    ("w[1:2:3:4]", "[begin:end:step]"), ("w[1:2", "without a closing"),
])
def test_bad_ranges_say_why(key: str, why: str) -> None:
    with pytest.raises(RangeError, match=why.replace("[", r"\[")):
        expand_range(key)


@pytest.mark.parametrize(("key", "split"), [
    ("web1:2222", ("web1", 2222)),
    ("web[01:03].example.com:22", ("web[01:03].example.com", 22)),
    ("10.0.0.1:2200", ("10.0.0.1", 2200)),
    ("[fe80::1]:22", ("fe80::1", 22)),
    ("fe80::1", ("fe80::1", None)),
    ("web1", ("web1", None)),
    ("web_:22", ("web_:22", None)),  # not a valid name: kept whole, as Ansible does
    ("odd name:22", ("odd name:22", None)),
])
def test_split_port(key: str, split: tuple[str, int | None]) -> None:
    assert split_port(key) == split


def test_parse_address_rejects_colon_lists() -> None:
    assert parse_address("web:db") is None
    assert parse_address("web[1:3]") == ("web[1:3]", None)
