"""OpenSSH host certificates, verified here: paramiko negotiates them but checks nothing.

paramiko (5.x) can ask a server for a certificate host key (``ssh-ed25519-cert-v01@openssh.com``
…) and verifies the key exchange with the key inside it, but it reads none of the certificate's
other fields: not who signed it, for which names, until when.  OpenSSH's client does that
against the ``@cert-authority`` lines of known_hosts (sshconnect.c ``check_host_cert``,
sshkey.c ``sshkey_cert_check_authority``); this module does the same from the certificate blob
(the format is OpenSSH's PROTOCOL.certkeys):

- it is a *host* certificate (type 2, not a user certificate);
- its signature key is a CA trusted by an ``@cert-authority`` line whose host patterns match the
  host (as ``[host]:port`` off port 22), and that CA key is not ``@revoked``;
- the CA's signature over the certificate verifies (paramiko's own key classes verify it);
- now is inside its validity window (``valid after <= now < valid before``);
- the host name connected to is one of its principals (principals may be ``*``/``?`` patterns,
  as OpenSSH allows for host certificates); a certificate without principals is valid for any
  host, as in OpenSSH;
- it carries no critical options (none are defined for host certificates; OpenSSH refuses them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import paramiko

from edrfleet.errors import HostError
from edrfleet.fleet.transport import known_hosts as kh

CERT_SUFFIX = "-cert-v01@openssh.com"
HOST_CERT = 2
_FOREVER = (1 << 64) - 1
# The public fields of each key type inside a certificate, after the nonce.
_KEY_FIELDS = {"ssh-ed25519": ("string",), "ssh-rsa": ("mpint", "mpint"),
               "ecdsa-sha2-nistp256": ("string", "string"),
               "ecdsa-sha2-nistp384": ("string", "string"),
               "ecdsa-sha2-nistp521": ("string", "string")}


class CertError(HostError, ValueError):
    """The certificate a host offers cannot be read at all."""


@dataclass(frozen=True)
class Certificate:
    cert_type: str                # "ssh-ed25519-cert-v01@openssh.com"
    serial: int
    kind: int                     # 1 user, 2 host
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical_options: bytes
    ca_blob: bytes                # the signature key, as a public key blob
    signature: bytes
    signed: bytes                 # what the signature covers

    @property
    def ca_type(self) -> str:
        return paramiko.Message(self.ca_blob).get_text()


def parse(blob: bytes) -> Certificate:
    """The fields of an OpenSSH certificate blob; CertError when it is not one."""
    m = paramiko.Message(blob)
    try:
        cert_type = m.get_text()
        base = cert_type.removesuffix(CERT_SUFFIX)
        base = "ssh-rsa" if base.startswith("rsa-sha2-") else base
        if not cert_type.endswith(CERT_SUFFIX) or base not in _KEY_FIELDS:
            raise CertError(f"not a certificate type edrfleet reads: {cert_type}")
        m.get_binary()  # nonce
        for f in _KEY_FIELDS[base]:
            m.get_mpint() if f == "mpint" else m.get_binary()
        serial, kind, key_id = m.get_int64(), m.get_int(), m.get_text()
        p = paramiko.Message(m.get_binary())
        principals = []
        while p.get_remainder():
            principals.append(p.get_text())
        after, before = m.get_int64(), m.get_int64()
        critical = m.get_binary()
        m.get_binary()  # extensions: none matter to a host certificate
        m.get_binary()  # reserved
        ca_blob = m.get_binary()
        signed = blob[:m.packet.tell()]
        signature = m.get_binary()
    except (IndexError, ValueError, TypeError) as exc:
        if isinstance(exc, CertError):
            raise
        raise CertError(f"a truncated or malformed certificate ({exc})") from None
    # paramiko pads a short read with zeros: a blob that is not exactly these fields was cut
    if blob != signed + len(signature).to_bytes(4, "big") + signature:
        raise CertError("a truncated or malformed certificate (its fields do not add up)")
    if not signature:
        raise CertError("a certificate without a signature")
    return Certificate(cert_type, serial, kind, key_id, tuple(principals), after, before,
                       critical, ca_blob, signature, signed)


def _when(t: int) -> str:
    if t >= _FOREVER:
        return "forever"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signature_ok(cert: Certificate) -> bool:
    try:
        ca = paramiko.PKey.from_type_string(cert.ca_type, cert.ca_blob)
        return bool(ca.verify_ssh_sig(cert.signed, paramiko.Message(cert.signature)))
    except (paramiko.SSHException, ValueError, TypeError, IndexError):
        return False


def refusal(cert: Certificate, authorities: Sequence[kh.Entry], revoked: Sequence[kh.Entry],
            host: str, now: float | None = None) -> str:
    """Why OpenSSH would refuse this host certificate for ``host`` ("" when it is valid).

    ``authorities``: the ``@cert-authority`` lines that match the host; ``revoked``: every
    ``@revoked`` line (a revoked CA key revokes what it signed)."""
    now = time.time() if now is None else now
    ca_fp = kh.fingerprint(cert.ca_blob)
    if cert.kind != HOST_CERT:
        return f"it is a user certificate (type {cert.kind}), not a host certificate"
    if not any(a.blob == cert.ca_blob for a in authorities):
        trusted = ", ".join(f"{kh.fingerprint(a.blob)} at {a.where}" for a in authorities)
        return (f"it is signed by the CA {ca_fp}, which no @cert-authority line for it trusts "
                f"(trusted: {trusted})")
    bad = [r for r in revoked if r.blob == cert.ca_blob]
    if bad:
        return f"its CA {ca_fp} is @revoked at {bad[0].where}"
    if not _signature_ok(cert):
        return f"its signature by the CA {ca_fp} does not verify"
    if now < cert.valid_after:
        return f"it is not valid before {_when(cert.valid_after)}"
    if now >= cert.valid_before:
        return f"it expired at {_when(cert.valid_before)}"
    if cert.principals and not any(kh.pattern_match(p, host) for p in cert.principals):
        return (f"it is valid for {', '.join(cert.principals)}, not for {host} "
                "(its principals)")
    if cert.critical_options:
        return "it carries critical options, which a host certificate must not"
    return ""


def describe(cert: Certificate) -> str:
    """One line naming the certificate for messages."""
    return (f"host certificate {cert.key_id!r} (serial {cert.serial}, CA "
            f"{kh.fingerprint(cert.ca_blob)}, valid {_when(cert.valid_after)} to "
            f"{_when(cert.valid_before)})")
