"""Why a connection failed, in words a user acts on rather than the SSH library's own.

paramiko says ``[Errno None] Unable to connect to port 22 on 10.0.0.5`` for a refused
connection, ``No existing session`` when the server hung up during authentication and ``No
authentication methods available`` when there was no key to offer; the fleet commands print
these beside the host's name, so they say what happened and what to change.
"""

from __future__ import annotations

import os

import paramiko

_PLAIN = {
    "No existing session": "the server closed the connection during authentication",
    "No authentication methods available": (
        "no key to offer (fix: ansible_ssh_private_key_file on the host, private_key_file in "
        "ansible.cfg, ANSIBLE_PRIVATE_KEY_FILE, or a key in ssh-agent)"),
    "Error reading SSH protocol banner": "no SSH server answered on that port (no banner)",
}


def plain_reason(exc: BaseException) -> str:
    """One short phrase for a failed connect."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        why = {_os_reason(e) for e in exc.errors.values()}
        return "; ".join(sorted(why)) or "connection failed"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    for jargon, plain in _PLAIN.items():
        if text.startswith(jargon):
            return plain
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return text or type(exc).__name__


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__
