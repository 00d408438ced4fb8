"""ansible_connection picks the transport: ssh (and its Ansible aliases) or local."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from edrfleet.fleet.transport.connection import connection_kind, connector, transport_for
from edrfleet.fleet.transport.local import LocalTransport
from edrfleet.fleet.transport.ssh import SshTransport


@dataclass
class H:
    name: str
    vars: dict = field(default_factory=dict)


@pytest.mark.parametrize("value, kind", [
    (None, "ssh"), ("", "ssh"), ("ssh", "ssh"), ("paramiko", "ssh"), ("smart", "ssh"),
    ("local", "local"),
])
def test_the_kind_follows_ansible_connection(value, kind) -> None:
    hv = {} if value is None else {"ansible_connection": value}
    assert connection_kind(H("h", hv)) == kind


def test_a_connection_plugin_edrfleet_does_not_have_is_refused_by_name(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"^web1: ansible_connection 'docker': .*\(fix:"):
        transport_for(H("web1", {"ansible_connection": "docker"}), tmp_path)


def test_local_hosts_get_the_local_transport_and_others_ssh(tmp_path) -> None:
    local = transport_for(H("ctl", {"ansible_connection": "local"}), tmp_path)
    assert isinstance(local, LocalTransport) and local.name == "ctl"
    assert local.run(["echo", "here"]).stdout == b"here\n"
    ssh = connector(3)(H("web1", {"ansible_host": "192.0.2.1"}), tmp_path)
    assert isinstance(ssh, SshTransport) and ssh.connect_timeout == 3
    assert ssh.settings.target.host == "192.0.2.1"  # not connected: that is on first use
