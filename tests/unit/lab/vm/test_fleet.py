"""The VM lab inventory: what `lab up --vm` hands to edrfleet deploy and to Ansible."""

from __future__ import annotations

from pathlib import Path

import yaml

from edrfleet.lab.netns import LAB_CANARY_RULE
from edrfleet.lab.vm.fleet import down, inventory_data, write_inventory
from edrfleet.lab.vm.qemu import VmHandle


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
