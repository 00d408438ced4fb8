"""--limit patterns: splitting, ordering, errors that carry the pattern, retry files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edrfleet.fleet.inventory.load import load_inventory
from edrfleet.fleet.inventory.patterns import (
    PatternError,
    order_patterns,
    split_patterns,
    write_retry,
)

INVENTORY = Path(__file__).parents[2] / "data" / "inventories" / "patterns" / "inventory.yml"


@pytest.fixture(scope="module")
def inv():
    return load_inventory(INVENTORY)


def names(hosts) -> list[str]:
    return [h.name for h in hosts]


@pytest.mark.parametrize(("text", "parts"), [
    ("web:db", ["web", "db"]),
    ("web,db:x", ["web", "db:x"]),  # with a comma, ':' is part of a name
    ("web[1:3]", ["web[1:3]"]),  # an address with a range is one part
    ("web[0]:db[-1]", ["web[0]", "db[-1]"]),
    ("fe80::1", ["fe80::1"]),
    ("host:22", ["host:22"]),
    (" a , ,b ", ["a", "b"]),
    ("a:!b:&c", ["a", "!b", "&c"]),
])
def test_split_patterns_like_ansible(text: str, parts: list[str]) -> None:
    assert split_patterns(text) == parts


def test_union_then_intersection_then_exclusion_whatever_the_written_order() -> None:
    assert order_patterns(["!x", "a", "&b", "c"]) == ["a", "c", "&b", "!x"]
    assert order_patterns(["!x"]) == ["all", "!x"]


def test_select_keeps_inventory_order_match_keeps_pattern_order(inv) -> None:
    assert names(inv.select("db1,web01")) == ["web01", "db1"]
    assert names(inv.match("db1,web01")) == ["db1", "web01"]
    assert names(inv.select(None)) == list(inv.hosts)


def test_slices_are_inclusive_and_index_errors_name_the_pattern(inv) -> None:
    assert names(inv.select("web[1:3]")) == ["web02", "web03", "web04"]
    assert names(inv.select("web[-1]")) == ["web06"]
    with pytest.raises(PatternError, match=r"'web\[10\]': index 10 is outside the 6 matching"):
        inv.select("web[10]")


def test_unknown_name_warns_and_is_ignored(inv, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="edrfleet.fleet.inventory.patterns"):
        assert names(inv.select("nosuch:web01")) == ["web01"]
    assert "could not match supplied host pattern, ignoring: nosuch" in caplog.text


@pytest.mark.parametrize(("limit", "message"), [
    ("nosuch", "--limit 'nosuch' matches no host; 'nosuch' matches no group or host name"),
    ("web:&staging:!web06", "--limit 'web:&staging:!web06' matches no host"),
    ("~web[,db", "pattern '~web[' is not a valid regular expression"),
    ("!", "pattern part '!' has nothing after '!'"),
    ("@/nonexistent/x.retry", "limit file '/nonexistent/x.retry' does not exist"),
])
def test_errors_carry_the_pattern_and_a_fix(inv, limit: str, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        inv.select(limit)
    assert message in str(caught.value) and "(fix: " in str(caught.value)


def test_limit_file_must_be_a_file(inv, tmp_path: Path) -> None:
    with pytest.raises(PatternError, match="is not a file"):
        inv.select(f"@{tmp_path}")


def test_retry_file_round_trips_in_ansibles_format(inv, tmp_path: Path) -> None:
    retry = tmp_path / "sub" / "deploy.retry"
    write_retry(retry, ["db2", "web05", "lb1.example.com"])
    assert retry.read_text() == "db2\nweb05\nlb1.example.com\n"
    assert names(inv.select(f"@{retry}")) == ["lb1.example.com", "web05", "db2"]
    assert names(inv.select(f"@{retry},!db*")) == ["lb1.example.com", "web05"]
    write_retry(retry, [])
    assert retry.read_text() == ""
    assert [p.name for p in retry.parent.iterdir()] == ["deploy.retry"]


def test_host_vars_needs_exactly_one_host(inv) -> None:
    assert inv.host_vars("web01") == {}
    with pytest.raises(PatternError, match="matches 6 hosts, not one"):
        inv.host_vars("web")
