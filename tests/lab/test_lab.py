"""`edrfleet lab up/down`: what a lab host is made of, and that down leaves no trace."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from edrfleet.agent.run import cgroup2_root
from edrfleet.fleet.transport.ssh import SshTransport
from edrfleet.lab import netns as lab
from edrfleet.lab.host import LabError
from tests.lab.lab_fleet import load_lab_hosts

EDRFLEET = [sys.executable, "-m", "edrfleet.cli.main"]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_inventory_gives_each_host_its_address_dirs_cgroup_and_canary(lab_hosts):
    doc = yaml.safe_load(lab_hosts.inventory.read_text())
    group = doc["all"]["children"]["lab"]
    assert list(group["hosts"]) == ["lab01", "lab02", "lab03"]
    v = group["vars"]
    assert v["edrfleet_extra_rules"] == [lab.LAB_CANARY_RULE]
    assert v["edrfleet_service_manager"] == "supervisor" and v["ansible_user"] == "root"
    assert (lab_hosts.inventory.parent / v["edrfleet_known_hosts_file"]).is_file()
    lab_state = lab_hosts.lab()
    addrs = set()
    for name, hv in group["hosts"].items():
        h = lab_state.host(name)
        assert hv["ansible_host"] == h.addr and hv["edrfleet_scope_cgroups"] == [h.cgroup]
        addrs.add(h.addr)
        for var in ("install", "config", "spool", "run"):
            d = Path(hv[f"edrfleet_{var}_dir"])
            assert d == lab_hosts.dir / "hosts" / name / var  # made 0700: see the CLI test
        assert (cgroup2_root() / h.cgroup.lstrip("/")).is_dir()
        assert Path(f"/run/netns/{h.netns}").exists()
    assert len(addrs) == 3


def test_the_known_hosts_holds_the_generated_host_keys_not_what_the_wire_says(lab_hosts):
    lab_state = lab_hosts.lab()
    lines = lab_state.known_hosts.read_text().splitlines()
    for h, line in zip(lab_state.hosts, lines, strict=True):
        pub = h.host_key.with_suffix(".pub").read_text().split()[:2]
        assert line.split() == [h.addr, *pub]


def test_sshd_runs_in_the_host_netns_and_cgroup_and_agents_see_the_kernel_mounts(lab_hosts):
    lab_state = lab_hosts.lab()
    for h in lab_state.hosts:
        pid = int(h.pidfile.read_text())
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{h.netns}").st_ino
        assert Path(f"/proc/{pid}/cgroup").read_text().endswith(f"0::{h.cgroup}\n")
    # nsenter --net, not ip netns exec: /sys keeps tracefs, bpffs and cgroup2 visible
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        mounts = t.run(["cat", "/proc/self/mounts"]).stdout.decode()
    assert f" {cgroup2_root()} cgroup2 " in mounts
    assert Path("/proc/self/mounts").read_text() == mounts  # the same mount namespace as here


def test_two_labs_side_by_side_never_share_names_addresses_or_cgroups(lab_hosts, tmp_path):
    other = tmp_path / "other-lab"
    inv = lab.up(2, other, log=lambda _m: None)
    try:
        a, b = lab_hosts.lab(), lab.Lab.load(other)
        assert a.id != b.id
        assert not ipaddress.ip_network(a.subnet).overlaps(ipaddress.ip_network(b.subnet))
        for field in ("netns", "veth_host", "veth_ns", "addr", "cgroup"):
            assert not {getattr(h, field) for h in a.hosts} & {getattr(h, field) for h in b.hosts}
        for name, host in load_lab_hosts(inv).items():
            with SshTransport(host, inv.parent, connect_timeout=5) as t:
                assert t.run(["cat", "/proc/self/cgroup"]).stdout.endswith(
                    f"{b.host(name).cgroup}\n".encode())
    finally:
        lab.down(other, log=lambda _m: None)
    with lab_hosts.transport("lab01") as t:  # the first lab is untouched
        assert t.run(["true"]).rc == 0


def test_lab_up_keeps_a_running_lab_and_rebuilds_one_of_another_size(tmp_path):
    d = tmp_path / "lab"
    said: list[str] = []
    lab.up(2, d, log=said.append)
    try:
        pids = [h.pid for h in lab.Lab.load(d).hosts]
        lab.up(2, d, log=said.append)
        assert "already up" in said[-1] and [h.pid for h in lab.Lab.load(d).hosts] == pids
        lab.up(3, d, log=said.append)
        assert len(lab.Lab.load(d).hosts) == 3 and not any(_alive(p) for p in pids)
    finally:
        lab.down(d, log=lambda _m: None)


def test_lab_up_refuses_a_directory_that_is_not_a_lab(tmp_path):
    (tmp_path / "precious").write_text("x")
    with pytest.raises(LabError, match="not empty and holds no lab"):
        lab.up(1, tmp_path, log=lambda _m: None)
    assert (tmp_path / "precious").read_text() == "x"
    with pytest.raises(LabError, match="nothing was removed"):
        lab.down(tmp_path, log=lambda _m: None)


def test_a_sshd_that_fails_to_start_is_reported_with_its_log(tmp_path):
    d = tmp_path / "lab"
    lab.up(1, d, log=lambda _m: None)
    try:
        h = lab.Lab.load(d).host("lab01")
        h.config.write_text(h.config.read_text() + "NoSuchOption yes\n")
        t0 = time.monotonic()
        with pytest.raises(LabError, match="(?s)lab01: sshd exited .*Bad configuration option"):
            lab.start_host(d, "lab01")
        assert time.monotonic() - t0 < 10
    finally:
        lab.down(d, log=lambda _m: None)


def _no_trace(lab_id: str, workdir: Path, pids: list[int]) -> None:
    assert lab.leftovers(lab_id) == []
    assert not workdir.exists()
    assert [p for p in pids if _alive(p)] == []


def test_cli_lab_down_leaves_no_netns_veth_cgroup_process_or_file(tmp_path):
    d = tmp_path / "lab"
    up = subprocess.run([*EDRFLEET, "lab", "up", "--hosts", "2", "--dir", str(d)],
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().splitlines()[-1] == str(d / "inventory.yml")
    state = lab.Lab.load(d)
    pids = [h.pid for h in state.hosts]
    for name, host in load_lab_hosts(d / "inventory.yml").items():
        for var in ("install", "config", "spool", "run"):
            p = Path(host.vars[f"edrfleet_{var}_dir"])
            assert p.is_dir() and p.stat().st_mode & 0o777 == 0o700, p
        with SshTransport(host, d, connect_timeout=5) as t:  # something left running, as an
            r = t.run(["sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!"])
            pids.append(int(r.stdout))                     # agent would be
        assert f"0::{state.host(name).cgroup}" in Path(f"/proc/{pids[-1]}/cgroup").read_text()
    assert all(_alive(p) for p in pids)
    down = subprocess.run([*EDRFLEET, "lab", "down", "--dir", str(d)],
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    _no_trace(state.id, d, pids)
    again = subprocess.run([*EDRFLEET, "lab", "down", "--dir", str(d)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "no lab" in again.stdout


def test_down_after_a_crash_works_from_what_is_left(tmp_path):
    d = tmp_path / "lab"
    lab.up(2, d, log=lambda _m: None)
    state = lab.Lab.load(d)
    pids = [h.pid for h in state.hosts]
    (d / "inventory.yml").unlink()
    (d / "state.json").unlink()  # only the machine registry still knows this lab
    lab.down(d, log=lambda _m: None)
    _no_trace(state.id, d, pids)


def test_twenty_hosts_come_up_fast_and_all_answer_in_parallel(tmp_path):
    d = tmp_path / "lab20"
    t0 = time.monotonic()
    inv = lab.up(20, d, log=lambda _m: None)
    took_up = time.monotonic() - t0
    state = lab.Lab.load(d)
    try:
        hosts = load_lab_hosts(inv)

        def one(name: str) -> bytes:
            with SshTransport(hosts[name], d, connect_timeout=10) as t:
                return t.run(["cat", "/proc/self/cgroup"]).stdout

        with ThreadPoolExecutor(20) as pool:
            out = dict(zip(hosts, pool.map(one, hosts), strict=True))
        for name, text in out.items():
            assert text.endswith(f"{state.host(name).cgroup}\n".encode())
    finally:
        t1 = time.monotonic()
        lab.down(d, log=lambda _m: None)
        took_down = time.monotonic() - t1
    print(f"lab up 20 hosts: {took_up:.2f} s, down: {took_down:.2f} s")
    assert took_up < 20 and took_down < 20  # generous: a shared 2-core machine
    _no_trace(state.id, d, [h.pid for h in state.hosts])


def test_ansible_reaches_the_lab_hosts_with_strict_host_key_checking(lab_hosts):
    ansible = Path(sys.executable).with_name("ansible")
    if not ansible.exists():
        pytest.skip("needs ansible-core in the venv (the dev extra)")
    r = subprocess.run([str(ansible), "-i", str(lab_hosts.inventory), "lab", "-m", "ping",
                        "-o"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True",
                            "ANSIBLE_DEPRECATION_WARNINGS": "False"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(line.split()[0] for line in r.stdout.splitlines() if "SUCCESS" in line) \
        == lab_hosts.names


def test_a_lab_whose_owner_process_died_is_removed_by_the_next_lab_up(tmp_path):
    # (only labs of this checkout: another checkout's orphans are named, never touched)
    owner = subprocess.Popen(["sleep", "600"])
    orphan_dir, next_dir = tmp_path / "orphan", tmp_path / "next"
    lab.up(1, orphan_dir, log=lambda _m: None, owner_pid=owner.pid)
    orphan = lab.Lab.load(orphan_dir)
    lab.up(1, next_dir, log=lambda _m: None)  # owner alive: the orphan-to-be is kept
    assert orphan_dir.exists() and lab.leftovers(orphan.id)
    lab.down(next_dir, log=lambda _m: None)
    owner.kill()
    owner.wait()
    said: list[str] = []
    lab.up(1, next_dir, log=said.append)
    try:
        assert any(f"removing lab {orphan.id}" in m for m in said)
        _no_trace(orphan.id, orphan_dir, [orphan.hosts[0].pid])
    finally:
        lab.down(next_dir, log=lambda _m: None)
        lab.down(orphan_dir, log=lambda _m: None)


def test_labs_brought_up_at_the_same_moment_still_get_their_own_subnets(tmp_path):
    dirs = [tmp_path / f"race{i}" for i in range(3)]
    procs = [subprocess.Popen([*EDRFLEET, "lab", "up", "--hosts", "3", "--dir", str(d)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for d in dirs]
    try:
        for p in procs:
            _out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        labs = [lab.Lab.load(d) for d in dirs]
        nets = [ipaddress.ip_network(x.subnet) for x in labs]
        assert len({x.id for x in labs}) == 3
        assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    finally:
        for d in dirs:
            lab.down(d, log=lambda _m: None)
