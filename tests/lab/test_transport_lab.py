"""SshTransport against real sshd lab hosts: commands, cgroups, failures, host keys, files.

The promises every transport makes are tests/unit/helpers/transport_contract.py, run here over
SSH and in tests/unit/fleet/transport/test_local.py on the local transport."""

from __future__ import annotations

import base64
import dataclasses
import os
import pwd
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edrfleet.fleet.transport.base import HostKeyError, Result, Unreachable
from edrfleet.fleet.transport.ssh import SshTransport
from tests.unit.helpers import transport_contract as contract


def _each(lab_hosts, fn):
    def one(name):
        with lab_hosts.transport(name) as t:
            return fn(t)
    with ThreadPoolExecutor(len(lab_hosts.names)) as pool:
        return dict(zip(lab_hosts.names, pool.map(one, lab_hosts.names), strict=True))


def test_a_command_runs_on_every_host_in_parallel(lab_hosts):
    out = _each(lab_hosts, lambda t: t.run(["sh", "-c", "hostname; hostname -I"]).stdout.split())
    for name, words in out.items():  # its own UTS namespace and its own address
        assert words == [name.encode(), lab_hosts.hosts[name].vars["ansible_host"].encode()]


def test_commands_run_inside_the_hosts_cgroup(lab_hosts):
    lab = lab_hosts.lab()
    out = _each(lab_hosts, lambda t: t.run(["cat", "/proc/self/cgroup"]).stdout.decode())
    for name, text in out.items():
        assert f"0::{lab.host(name).cgroup}\n" in text
        assert lab_hosts.hosts[name].vars["edrfleet_scope_cgroups"] == [lab.host(name).cgroup]


def test_hostile_argv_words_arrive_intact(lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.hostile_argv_words_arrive_intact(t)


def test_a_nul_byte_in_argv_is_refused_before_anything_is_sent(lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.a_nul_byte_in_argv_is_refused(t)


def test_stdin_and_binary_output_are_bytes_exact(lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.stdin_and_output_are_bytes_exact(t)


def test_stdin_a_command_does_not_read_is_no_error_and_one_read_after_eof_gets_it_all(
        lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.unread_stdin_is_no_error_and_read_after_eof_gets_it_all(t, Path("/tmp"))


def test_a_failing_command_raises_remote_error_with_rc_and_stderr(lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.a_failing_command_raises_remote_error_with_rc_and_stderr(t)


def test_a_command_past_its_timeout_raises_and_the_transport_still_works(lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.a_command_past_its_timeout_raises_and_the_transport_still_works(t)


def test_a_command_past_its_timeout_is_ended_on_the_host(lab_hosts, tmp_path):
    tmp_path.chmod(0o777)
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.a_command_past_its_timeout_is_ended_on_the_host_with_what_it_started(
            t, tmp_path)


def test_a_signal_death_is_reported_by_the_signals_name(lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        r = t.run(["sh", "-c", "kill -USR1 $$"], check=False)
        assert (r.rc, r.signal) == (-1, "SIGUSR1")
        assert t.run(["sh", "-c", "exit 137"], check=False) == Result(137, b"", b"")


def test_put_lands_atomically_with_mode_0600(lab_hosts, tmp_path):
    d = tmp_path / "config"  # this machine's /tmp is the lab host's: same mount namespace
    d.mkdir(mode=0o700)
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.put_lands_atomically_with_its_mode(t, d)


def test_a_script_gets_its_args_and_the_input_after_it(lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        contract.a_script_gets_its_args_and_the_input_after_it(t)


def test_a_host_whose_sshd_is_down_is_unreachable_quickly_while_others_work(lab_hosts):
    down, *others = lab_hosts.names
    with lab_hosts.sshd_stopped(down):
        t0 = time.monotonic()
        with pytest.raises(Unreachable, match=f"{down}: cannot connect"), \
                lab_hosts.transport(down) as t:
            t.run(["true"])
        assert time.monotonic() - t0 < 5  # refused at once; the bound is for a loaded machine
        for name in others:
            with lab_hosts.transport(name) as t:
                assert t.run(["echo", name]).stdout == f"{name}\n".encode()


def test_a_changed_host_key_is_refused_naming_the_file_and_line(lab_hosts):
    name = lab_hosts.names[1]
    known = lab_hosts.lab().known_hosts
    line = lab_hosts.names.index(name) + 1
    with lab_hosts.host_key_changed(name):
        with pytest.raises(HostKeyError) as e, lab_hosts.transport(name) as t:
            t.run(["true"])
        msg = str(e.value)
        assert f"{name}: host key for" in msg and "CHANGED" in msg
        assert f"{known}:{line}" in msg and "ssh-keygen -R" in msg
        # accept-new records unknown keys only: a changed key still fails
        with pytest.raises(HostKeyError, match="CHANGED"), \
                lab_hosts.transport(name, edrfleet_host_key_policy="accept-new") as t:
            t.run(["true"])
    with lab_hosts.transport(name) as t:
        assert t.run(["true"]).rc == 0


def test_an_unknown_host_key_fails_strictly_and_accept_new_records_it(lab_hosts, tmp_path):
    name = lab_hosts.names[2]
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    recorded = tmp_path / "recorded_known_hosts"
    rel = os.path.relpath(recorded, lab_hosts.inventory.parent)  # as the inventory gives it
    with pytest.raises(HostKeyError, match=f"unknown ssh-ed25519 host key SHA256:.* for "
                                           f"{addr}.*accept-new") as e, \
            lab_hosts.transport(name, edrfleet_known_hosts_file=rel) as t:
        t.run(["true"])
    assert str(recorded) in str(e.value)
    assert not recorded.exists()
    with lab_hosts.transport(name, edrfleet_known_hosts_file=rel,
                             edrfleet_host_key_policy="accept-new") as t:
        assert t.run(["true"]).rc == 0
    lab_line = lab_hosts.lab().known_hosts.read_text().splitlines()[2]
    assert recorded.read_text() == lab_line + "\n"
    with lab_hosts.transport(name, edrfleet_known_hosts_file=rel) as t:  # strict now passes
        assert t.run(["true"]).rc == 0


def test_proxy_jump_goes_through_the_jump_host(lab_hosts):
    # Lab namespaces do not route to each other, so the jump host forwards to its own address:
    # the session then comes from the host's address, not from the root side of its veth.
    name = lab_hosts.names[0]
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    with lab_hosts.transport(name) as t:
        assert t.run(["sh", "-c", "echo $SSH_CLIENT"]).stdout.split()[0] != addr.encode()
    with lab_hosts.transport(name, ansible_ssh_common_args=f"-J root@{addr}:22") as t:
        assert t.run(["sh", "-c", "echo $SSH_CLIENT"]).stdout.split()[0] == addr.encode()


def test_proxy_command_carries_the_connection(lab_hosts):
    name = lab_hosts.names[0]
    lab = lab_hosts.lab()
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    ssh_w = (f"ssh -F /dev/null -i {lab.key} -o BatchMode=yes -o StrictHostKeyChecking=yes "
             f"-o UserKnownHostsFile={lab.known_hosts} -W %h:%p root@{addr}")
    with lab_hosts.transport(name, ansible_ssh_common_args=f"-o 'ProxyCommand={ssh_w}'") as t:
        assert t.run(["sh", "-c", "echo $SSH_CLIENT"]).stdout.split()[0] == addr.encode()


def test_an_unreachable_jump_host_fails_the_host_with_unreachable(lab_hosts):
    name = lab_hosts.names[0]
    with lab_hosts.sshd_stopped(lab_hosts.names[1]):
        jump = lab_hosts.hosts[lab_hosts.names[1]].vars["ansible_host"]
        with pytest.raises(Unreachable, match=f"via {jump}"), \
                lab_hosts.transport(name, ansible_ssh_common_args=f"-J {jump}") as t:
            t.run(["true"])


def test_a_key_the_host_does_not_authorize_is_unreachable_naming_the_key(lab_hosts, tmp_path):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(Unreachable, match=f"authentication to root@.* failed.*{key}"), \
            lab_hosts.transport(lab_hosts.names[0], ansible_ssh_private_key_file=str(key)) as t:
        t.run(["true"])


def test_a_hung_sshd_fails_after_the_connect_timeout_not_never(lab_hosts):
    name = lab_hosts.names[0]
    pid = int(lab_hosts.lab().host(name).pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)  # accepts TCP (the kernel does), never sends a banner
    try:
        t0 = time.monotonic()
        t = SshTransport(lab_hosts.hosts[name], lab_hosts.inventory.parent, connect_timeout=2)
        with pytest.raises(Unreachable, match=f"{name}: cannot connect"), t:
            t.run(["true"])
        assert 1.5 < time.monotonic() - t0 < 15  # generous: a loaded shared machine
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_connection_lost_mid_command_is_unreachable_and_the_next_call_reconnects(lab_hosts):
    with lab_hosts.transport(lab_hosts.names[0]) as t:
        # the session's own sshd process is the parent of the host's `timeout` (the shell's
        # parent): kill it under the command
        kill = 'kill -9 "$(cut -d " " -f 4 /proc/$PPID/stat)"; sleep 5'
        with pytest.raises(Unreachable, match="connection lost|closed"):
            t.run(["sh", "-c", kill], timeout=20)
        assert t.run(["echo", "back"]).stdout == b"back\n"


def test_become_runs_commands_and_put_through_sudo(lab_hosts, tmp_path):
    if not shutil.which("sudo"):
        pytest.skip("needs sudo (scripts/setup.sh installs it)")
    name = lab_hosts.names[0]
    with lab_hosts.transport(name, ansible_become=True, ansible_become_user="nobody") as t:
        assert t.command_line(["id"]).startswith("sudo -n -u nobody -- ")
        assert t.run(["id", "-un"]).stdout == b"nobody\n"
        target = f"/tmp/edrfleet-become-{os.getpid()}"
        try:
            t.put(b"as nobody", target, mode=0o640)
            st = os.stat(target)
            assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam("nobody").pw_uid, 0o640)
        finally:
            Path(target).unlink(missing_ok=True)


def test_transports_for_many_hosts_work_from_a_thread_pool_and_reconnect_after_close(lab_hosts):
    def many(name: str) -> list[bytes]:
        t = lab_hosts.transport(name)
        out = []
        for i in range(5):
            out.append(t.run(["echo", f"{name}-{i}"]).stdout)
            if i == 2:
                t.close()
        t.close()
        return out

    with ThreadPoolExecutor(12) as pool:
        names = lab_hosts.names * 4
        for name, out in zip(names, pool.map(many, names), strict=True):
            assert out == [f"{name}-{i}\n".encode() for i in range(5)]


def test_a_host_offering_none_of_the_known_key_types_is_a_host_key_error(lab_hosts, tmp_path):
    name = lab_hosts.names[0]
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    kh_file = tmp_path / "kh"
    kh_file.write_text(f"{addr} ecdsa-sha2-nistp256 {base64.b64encode(b'old-key').decode()}\n")
    with pytest.raises(HostKeyError, match=f"offers none of the host key types known for it "
                                           f"\\({kh_file}:1 \\(ecdsa-sha2-nistp256\\)\\)"), \
            lab_hosts.transport(name, edrfleet_known_hosts_file=str(kh_file),
                                edrfleet_host_key_policy="accept-new") as t:
        t.run(["true"])


def test_a_non_default_port_is_checked_under_its_bracketed_known_hosts_name(lab_hosts,
                                                                             tmp_path):
    from edrfleet.agent.run import cgroup2_root
    from edrfleet.lab import host as lh

    name = lab_hosts.names[0]
    lab = lab_hosts.lab()
    h = lab.host(name)
    alt = dataclasses.replace(h, dir=tmp_path / "alt")  # a second sshd for the host, port 2222
    alt.sshd_dir.mkdir(parents=True)
    for suffix in ("", ".pub"):
        shutil.copy2(f"{h.host_key}{suffix}", f"{alt.host_key}{suffix}")
    alt.config.write_text(lh.sshd_config(alt, lab.authorized_keys).replace("Port 22\n",
                                                                           "Port 2222\n"))
    pid = lh.start_sshd(alt, cgroup2_root())
    try:
        lh.wait_sshd(alt, pid, port=2222)
        recorded = tmp_path / "kh"
        with pytest.raises(HostKeyError, match=rf"unknown .* for \[{h.addr}\]:2222"), \
                lab_hosts.transport(name, ansible_port=2222) as t:  # the lab's file: port 22
            t.run(["true"])
        with lab_hosts.transport(name, ansible_port=2222, edrfleet_known_hosts_file=str(recorded),
                                 edrfleet_host_key_policy="accept-new") as t:
            assert t.run(["echo", "$SSH_CONNECTION"]).stdout == b"$SSH_CONNECTION\n"
        assert recorded.read_text().startswith(f"[{h.addr}]:2222 ssh-ed25519 ")
        with lab_hosts.transport(name, ansible_port=2222,
                                 edrfleet_known_hosts_file=str(recorded)) as t:
            assert t.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()[-1] == b"2222"
    finally:
        lh.stop_pids({pid})


def test_a_target_the_jump_host_cannot_reach_is_unreachable_saying_so(lab_hosts):
    name = lab_hosts.names[0]
    jump = lab_hosts.hosts[name].vars["ansible_host"]
    with pytest.raises(Unreachable, match=f"via {jump}: the jump host could not open"), \
            lab_hosts.transport(name, ansible_host="10.255.255.254",
                                ansible_ssh_common_args=f"-J {jump}") as t:
        t.run(["true"])
