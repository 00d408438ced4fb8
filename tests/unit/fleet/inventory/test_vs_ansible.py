"""edrfleet's inventory and --limit against the real ansible-core, on the same files.

Each folder under data/inventories/ is one case; ``ansible-inventory --list`` and edrfleet's
`Inventory.to_ansible_list` must be equal (groups, their hosts and children in order, every
host's merged variables). The pattern table runs ``ansible all --list-hosts --limit P``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edrfleet.fleet.inventory.load import load_inventory
from edrfleet.fleet.inventory.patterns import PatternError
from tests.unit.helpers.ansible_ref import (
    ansible_graph,
    ansible_inventory,
    ansible_list_hosts,
    needs_ansible,
)
from tests.unit.helpers.random_inventory import write_random_inventory

DATA = Path(__file__).parents[2] / "data" / "inventories"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "inventory.yml").is_file())
EXAMPLE = Path(__file__).parents[4] / "inventories" / "example" / "inventory.yml"
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
    "~web[", "~web[,db", "!web:!db:prod", "localhost", "127.0.0.1,web01", "webhooks:web",
    "web*[0:2]", "*[-1]", "prod[4]", "prod[7:]", "&prod[0]",
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


@pytest.mark.parametrize(("case", "group"), [("toplevel", "all"), ("deep", "all"),
                                             ("deep", "region"), ("values", "all")])
def test_graph_matches_ansible_inventory_graph(case: str, group: str) -> None:
    path = DATA / case / "inventory.yml"
    assert load_inventory(path).to_ansible_graph(group) == ansible_graph(path, group)


@pytest.mark.parametrize("host", ["app4.internal", "legacy2.internal", "jump.example.com"])
def test_host_matches_ansible_inventory_host(host: str) -> None:
    path = DATA / "connection" / "inventory.yml"
    assert load_inventory(path).host_vars(host) == ansible_inventory(path, "--host", host)


@pytest.fixture(scope="module")
def pattern_inventory():
    return load_inventory(PATTERN_INVENTORY)


@pytest.fixture(scope="module")
def ansible_answers() -> dict[str, list[str] | None]:
    # One `ansible` process per pattern, two at a time (this is most of the file's run time).
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = pool.map(lambda p: ansible_list_hosts(PATTERN_INVENTORY, p), PATTERNS)
        return dict(zip(PATTERNS, answers, strict=True))


@pytest.mark.parametrize("limit", PATTERNS)
def test_limit_selects_what_ansible_lists(limit: str, pattern_inventory, ansible_answers,
                                          caplog) -> None:
    expected = ansible_answers[limit]
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


@pytest.mark.parametrize("seed", range(8))
def test_random_inventory_matches_ansible(seed: int, tmp_path: Path, caplog) -> None:
    path, patterns = write_random_inventory(tmp_path, seed)
    inv = load_inventory(path)
    assert inv.to_ansible_list() == ansible_inventory(path), path.read_text()
    caplog.set_level(logging.ERROR)
    # Not the slice pattern (patterns[2]): a slice takes Ansible's host order, which below the
    # first level of children follows Python's set order of group objects (memory addresses).
    for limit in patterns[seed % 2:seed % 2 + 1]:
        expected = ansible_list_hosts(path, limit)
        if expected is None:
            with pytest.raises(PatternError):
                inv.select(limit)
        else:  # same hosts; Ansible's order below the first level is arbitrary
            assert sorted(h.name for h in inv.select(limit)) == sorted(expected), limit
