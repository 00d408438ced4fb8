"""Lab ids, subnets and names: distinct per lab directory, valid for the kernel."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest

from edrfleet.lab import names as lab_names
from edrfleet.lab import netns as lab

needs_ip = pytest.mark.skipif(not shutil.which("ip"), reason="needs ip(8) (iproute2)")


def test_the_id_is_stable_for_a_directory_and_skips_ids_of_other_directories():
    d = Path("/tmp/some/lab")
    first = lab_names.pick_id(d, {})
    assert lab_names.pick_id(d, {}) == first and len(first) == 6
    assert lab_names.pick_id(d, {first: {"dir": str(d)}}) == first  # its own entry
    other = lab_names.pick_id(d, {first: {"dir": "/elsewhere"}})
    assert other != first


@needs_ip
def test_the_subnet_avoids_registered_labs_and_every_network_on_this_machine():
    lab_id = "abc123"
    first = lab_names.pick_subnet(lab_id, {})
    assert first.subnet_of(lab_names.BASE_NET) and first.prefixlen == lab_names.BLOCK_PREFIX
    second = lab_names.pick_subnet(lab_id, {"x": {"subnet": str(first)}})
    assert second != first and not second.overlaps(first)
    for net in lab_names._networks_in_use():
        if net.prefixlen:
            assert not first.overlaps(net)


def test_names_fit_the_kernel_and_addresses_are_one_30_per_host(tmp_path):
    subnet = ipaddress.ip_network("10.200.0.0/22")
    plan = lab._plan(tmp_path, "abc123", subnet, lab.MAX_HOSTS)
    assert len({h.netns for h in plan.hosts}) == lab.MAX_HOSTS
    for i, h in enumerate(plan.hosts):
        assert len(h.veth_host) <= 15 and len(h.veth_ns) <= 15  # IFNAMSIZ - 1
        net = ipaddress.ip_network(f"{h.addr}/30", strict=False)
        assert net.subnet_of(subnet) and ipaddress.ip_address(h.addr_host) in net
        assert net.network_address == subnet.network_address + 4 * i
    assert plan.hosts[0].name == "lab001" and plan.hosts[-1].name == "lab256"
    assert lab._plan(tmp_path, "abc123", subnet, 3).hosts[2].name == "lab03"
    assert plan.hosts[0].cgroup == "/edrfleet-lab-abc123/lab001"
