"""The VM lab inventory: what `lab up --vm` hands to edrfleet deploy and to Ansible."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edrfleet.fleet.inventory.load import load_inventory
from edrfleet.lab.netns import LAB_CANARY_RULE
from edrfleet.lab.vm.fleet import down, guest_names, inventory_data, write_inventory
from edrfleet.lab.vm.qemu import VmHandle, recipe_hash
from edrfleet.lab.vm.releases import RELEASES, parse


def _handles(workdir: Path, n: int) -> list[VmHandle]:
    return [VmHandle(f"vm{i}", 40000 + i, 999_999_000 + i, workdir / f"vm{i}.console.log",
                     workdir, workdir / "id_ed25519", workdir / "known_hosts")
            for i in range(n)]


def test_the_inventory_has_one_host_per_vm_in_group_vms(tmp_path):
    inv = inventory_data(_handles(tmp_path, 2), tmp_path)
    group = inv["all"]["children"]["vms"]
    assert group["hosts"] == {"vm0": {"ansible_host": "127.0.0.1", "ansible_port": 40000},
                              "vm1": {"ansible_host": "127.0.0.1", "ansible_port": 40001}}
    v = group["vars"]
    assert v["ansible_user"] == "root"
    assert v["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    assert v["edrfleet_known_hosts_file"] == "known_hosts"  # relative to the inventory's dir
    assert v["edrfleet_service_manager"] == "systemd"
    assert v["edrfleet_start_timeout"] == 600  # a TCG guest's agent start, under load
    assert v["edrfleet_extra_rules"] == [LAB_CANARY_RULE]


def test_the_written_inventory_reads_back_as_yaml(tmp_path):
    path = write_inventory(_handles(tmp_path, 1), tmp_path)
    assert path == tmp_path / "inventory.yml"
    assert yaml.safe_load(path.read_text()) == inventory_data(_handles(tmp_path, 1), tmp_path)


def test_down_removes_what_up_made_and_keeps_console_logs(tmp_path):
    for name in ("vms.json", "inventory.yml", "known_hosts", "id_ed25519", "vm0.qcow2",
                 "vm0.console.log"):
        (tmp_path / name).write_text("[]" if name == "vms.json" else "x")
    down(tmp_path)  # vms.json lists no VM: nothing to stop
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm0.console.log"]


def _matrix_handles(workdir: Path) -> list[VmHandle]:
    return [VmHandle(name, 41000 + i, 999_999_100 + i, workdir / f"{name}.console.log", workdir,
                     workdir / f"id_ed25519.{rel.name}", workdir / "known_hosts", os=rel.name)
            for i, (rel, name) in enumerate(guest_names(parse(",".join(RELEASES)), 1))]


def test_several_releases_get_one_guest_each_named_by_release():
    names = [(r.name, n) for r, n in guest_names(parse("debian-11,debian-13"), 1)]
    assert names == [("debian-11", "d11-vm0"), ("debian-13", "d13-vm0")]
    assert [n for _r, n in guest_names(parse("debian-12"), 2)] == ["vm0", "vm1"]  # as always


def test_os_names_are_checked_and_deduplicated():
    assert [r.suite for r in parse("debian-13, debian-11,debian-13")] == ["trixie", "bullseye"]
    with pytest.raises(ValueError, match="'ubuntu-24': not a lab release .*debian-11"):
        parse("debian-12,ubuntu-24")


def test_each_release_has_its_own_recipe():
    hashes = {recipe_hash(b"script", r.packages, r.suite) for r in RELEASES.values()}
    assert len(hashes) == len(RELEASES)


def test_a_lab_of_several_releases_has_a_group_per_release_and_a_key_per_host(tmp_path):
    inv = inventory_data(_matrix_handles(tmp_path), tmp_path)
    children = inv["all"]["children"]
    assert set(children) == {"vms", "debian_11", "debian_12", "debian_13"}
    assert children["debian_11"] == {"hosts": {"d11-vm0": None}}
    vms = children["vms"]
    assert vms["hosts"]["d13-vm0"]["ansible_ssh_private_key_file"] == str(
        tmp_path / "id_ed25519.debian-13")
    assert "ansible_ssh_private_key_file" not in vms["vars"]


def test_the_inventory_loader_reads_the_release_groups(tmp_path):
    write_inventory(_matrix_handles(tmp_path), tmp_path)
    inv = load_inventory(str(tmp_path / "inventory.yml"))
    (host,) = inv.select("debian_11")
    assert host.name == "d11-vm0"
    assert host.vars["ansible_port"] == 41000
    assert host.vars["ansible_ssh_private_key_file"].endswith("id_ed25519.debian-11")
    assert host.vars["edrfleet_service_manager"] == "systemd"
    assert len(inv.select("vms")) == 3


def test_down_removes_the_keys_of_every_release(tmp_path):
    for name in ("vms.json", "id_ed25519.debian-11", "id_ed25519.debian-13"):
        (tmp_path / name).write_text("[]" if name == "vms.json" else "x")
    down(tmp_path)
    assert list(tmp_path.iterdir()) == []
