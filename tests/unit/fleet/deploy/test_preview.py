"""edrfleet.fleet.deploy.preview: one host's policy as deploy would render it."""

from __future__ import annotations

import pytest

from edrfleet.fleet.deploy import preview
from edrfleet.fleet.inventory.load import load_inventory
from edrfleet.fleet.inventory.parse import InventoryError

INVENTORY = """all:
  hosts:
    web1: {edrfleet_mode: monitor}
    web2: {}
"""


@pytest.fixture
def inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = tmp_path / "inventory.yml"
    p.write_text(INVENTORY)
    return load_inventory(p)


def test_without_facts_nothing_connects(inventory, monkeypatch) -> None:
    def no(*a, **k):
        raise AssertionError("connected")

    monkeypatch.setattr(preview, "host_facts", no)
    hp = preview.preview_host_policy(inventory, "web1", facts=False)
    assert "\nmode: monitor\n" in hp.yaml_text and len(hp.sha256) == 64


def test_facts_are_gathered_from_the_host_in_its_inventory_dir(inventory, monkeypatch) -> None:
    seen = []

    def facts(host, inventory_dir, connect_timeout=10.0):
        seen.append((host.name, inventory_dir, connect_timeout))
        return {}

    monkeypatch.setattr(preview, "host_facts", facts)
    preview.preview_host_policy(inventory, "web2", connect_timeout=3.0)
    assert seen == [("web2", inventory.path.resolve().parent, 3.0)]


def test_an_unknown_host_names_the_hosts_there_are(inventory) -> None:
    with pytest.raises(InventoryError, match=r"no host 'db9' \(fix: one of web1, web2\)"):
        preview.preview_host_policy(inventory, "db9", facts=False)
