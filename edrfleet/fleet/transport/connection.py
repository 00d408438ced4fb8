"""Which transport reaches a host: its ``ansible_connection`` variable, as in Ansible.

``ssh`` (the default; ``paramiko`` and ``smart`` mean the same here) is
:class:`~edrfleet.fleet.transport.ssh.SshTransport`; ``local`` is
:class:`~edrfleet.fleet.transport.local.LocalTransport`: the controller itself, no SSH.  Any
other connection plugin is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edrfleet.fleet.transport.base import HostLike, Transport

SSH_NAMES = ("ssh", "paramiko", "smart")

Connect = Callable[[HostLike, Path], Transport]


def connection_kind(host: HostLike) -> str:
    """``ssh`` or ``local``; ValueError (naming host, variable and fix) for anything else."""
    value = str(host.vars.get("ansible_connection") or "ssh")
    if value in SSH_NAMES:
        return "ssh"
    if value == "local":
        return "local"
    raise ValueError(f"{host.name}: ansible_connection {value!r}: edrfleet connects by ssh or "
                     "local only (fix: one of those)")


def transport_for(host: HostLike, inventory_dir: Path, *,
                  connect_timeout: float = 10) -> Transport:
    """A transport to ``host`` (not connected yet: SSH connects on first use)."""
    if connection_kind(host) == "local":
        from edrfleet.fleet.transport.local import LocalTransport

        return LocalTransport.for_host(host)
    from edrfleet.fleet.transport.ssh import SshTransport  # Fabric/paramiko: only when needed

    return SshTransport(host, inventory_dir, connect_timeout=connect_timeout)


def connector(connect_timeout: float) -> Connect:
    """``transport_for`` with this connect timeout: what deploy, status and uninstall call."""
    def connect(host: HostLike, inventory_dir: Path) -> Transport:
        return transport_for(host, inventory_dir, connect_timeout=connect_timeout)
    return connect
