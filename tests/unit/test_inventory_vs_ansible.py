"""edrfleet's inventory and --limit against the real ansible-core, on the same files.

Each folder under data/inventories/ is one case; ``ansible-inventory --list`` and edrfleet's
`Inventory.to_ansible_list` must be equal (groups, their hosts and children in order, every
host's merged variables). The pattern table runs ``ansible all --list-hosts --limit P``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edrfleet.fleet.inventory import load_inventory
from edrfleet.fleet.patterns import PatternError
from tests.unit.ansible_ref import ansible_inventory, ansible_list_hosts, needs_ansible

DATA = Path(__file__).parent / "data" / "inventories"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "inventory.yml").is_file())
EXAMPLE = Path(__file__).parents[2] / "inventories" / "example" / "inventory.yml"
PATTERN_INVENTORY = DATA / "patterns" / "inventory.yml"
RETRY = DATA / "patterns" / "hosts.retry"

pytestmark = needs_ansible

PATTERNS = [
    "all", "*", "web", "web:db", "web,db", "  web , db ", "web:", "web:&prod", "prod:&staging",
    "prod:!db", "!web", "&web", "&web:&db", "all:!prod", "web*", "*web*", "stage-*",
    "?b1.example.com", "*.example.com", "~web0[1-3]", "~.*example", "~^db", "~(web|db)0?1$",
    "web[0]", "web[-1]", "web[1:3]", "web[2:]", "web[0:0]", "web[3:1]", "web[1-2]", "db[1:3]",
    "web[0]:db[-1]", "web0[1-3]", "web0[12]", "web[10]", "web01", "web01,db1", "nosuch",
    "nosuch,web01", "web01:22", "lb1.example.com", "solo.example.com:lb1.example.com",
    "ungrouped", "ungr*", "prod:&staging:!web06", "web:&staging", "web:!web0[1-3]", "WEB",
    "~web[", "~web[,db", "!web:!db:prod", "webhooks:web",
    f"@{RETRY}", f"@{RETRY},!db1", f"@{RETRY}:&web",
]


@pytest.mark.parametrize("case", CASES)
def test_list_matches_ansible_inventory(case: str) -> None:
    path = DATA / case / "inventory.yml"
    assert load_inventory(path).to_ansible_list() == ansible_inventory(path)


def test_example_inventory_matches_ansible_inventory() -> None:
    assert load_inventory(EXAMPLE).to_ansible_list() == ansible_inventory(EXAMPLE)


@pytest.mark.parametrize("limit", ["web", "prod:!db", "lb*:solo.example.com", f"@{RETRY}"])
def test_list_with_limit_matches_ansible_inventory(limit: str) -> None:
    got = load_inventory(PATTERN_INVENTORY).to_ansible_list(limit)
    assert got == ansible_inventory(PATTERN_INVENTORY, "--limit", limit)


@pytest.mark.parametrize("host", ["app4.internal", "legacy2.internal", "jump.example.com"])
def test_host_matches_ansible_inventory_host(host: str) -> None:
    path = DATA / "connection" / "inventory.yml"
    assert load_inventory(path).host_vars(host) == ansible_inventory(path, "--host", host)


@pytest.fixture(scope="module")
def pattern_inventory():
    return load_inventory(PATTERN_INVENTORY)


@pytest.mark.parametrize("limit", PATTERNS)
def test_limit_selects_what_ansible_lists(limit: str, pattern_inventory, caplog) -> None:
    expected = ansible_list_hosts(PATTERN_INVENTORY, limit)
    caplog.set_level(logging.ERROR)
    if expected is None:
        with pytest.raises(PatternError):
            pattern_inventory.select(limit)
    else:
        assert [h.name for h in pattern_inventory.select(limit)] == expected


@pytest.mark.parametrize("case", ["basic", "ranges", "patterns"])
def test_all_hosts_in_ansible_order(case: str) -> None:
    path = DATA / case / "inventory.yml"
    assert list(load_inventory(path).hosts) == ansible_list_hosts(path, "all")


@pytest.mark.parametrize("case", ["deep", "toplevel"])
def test_all_hosts_are_ansibles_where_its_order_is_arbitrary(case: str) -> None:
    # Below the first level of children, Ansible walks a Python set of group objects (ordered
    # by memory address); edrfleet goes breadth first in the order written. Same hosts.
    path = DATA / case / "inventory.yml"
    assert sorted(load_inventory(path).hosts) == sorted(ansible_list_hosts(path, "all") or [])
