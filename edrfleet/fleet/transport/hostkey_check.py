"""How SshTransport judges a host's key: OpenSSH's verdicts on plain keys (known_hosts.py) and
on host certificates (hostcert.py), as paramiko's missing-host-key policy; and the host key
algorithms to ask for (certificates first when a CA is trusted for the host, as ssh does).
"""

from __future__ import annotations

from typing import Any

import paramiko

from edrfleet.fleet.transport import hostcert
from edrfleet.fleet.transport import known_hosts as kh
from edrfleet.fleet.transport.base import HostKeyError
from edrfleet.fleet.transport.settings import Settings


class HostKeyVerifier(paramiko.MissingHostKeyPolicy):
    """Called for every key (paramiko's own host key tables are left empty): OpenSSH verdicts,
    failures raised as HostKeyError.  A host certificate is checked against the
    ``@cert-authority`` lines (hostcert.py); one that fails falls back to its plain key, as
    ssh does, but is never recorded by accept-new."""

    def __init__(self, settings: Settings, known: kh.KnownHosts) -> None:
        self.s, self.known = settings, known

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        cert_refused = ""
        blob = getattr(key, "public_blob", None)
        if blob is not None and blob.key_type.endswith(hostcert.CERT_SUFFIX):
            cert_refused = self._check_cert(hostname, blob.key_blob)
            if not cert_refused:
                return
        keytype, raw = key.get_name(), key.asbytes()
        fp = kh.fingerprint(raw)
        v = self.known.check(hostname, keytype, raw)
        files = " or ".join(str(f) for f in self.known.files)
        record = self.s.record_file
        if v.status == "ok":
            return
        if v.status == "revoked":
            raise HostKeyError(f"{self.s.name}: {hostname} offers the {keytype} key {fp}, "
                               f"REVOKED at {v.entries[0].where}")
        if cert_refused:
            raise HostKeyError(f"{self.s.name}: {hostname} offers a {cert_refused}; fix: a "
                               "certificate signed by a CA of its @cert-authority line, "
                               f"valid now and naming {_principal(hostname)}")
        if v.status == "changed":
            old = ", ".join(f"{e.where} ({kh.fingerprint(e.blob)})" for e in v.entries)
            raise HostKeyError(
                f"{self.s.name}: host key for {hostname} CHANGED: it offers {keytype} {fp}, "
                f"known_hosts has {old}; if the change is expected, remove that line "
                f"(ssh-keygen -R '{hostname}' -f {v.entries[0].file}) and connect again")
        if self.s.accept_new:
            kh.append(record, hostname, keytype, raw)
            return
        cas = self.known.authorities(hostname)
        hint = (f"; known_hosts trusts a CA for it ({cas[0].where}) but it offered no "
                "certificate (sshd: HostCertificate)") if cas else ""
        raise HostKeyError(
            f"{self.s.name}: unknown {keytype} host key {fp} for {hostname} (not in "
            f"{files}){hint}; check it out of band and add it to {record}, or set "
            f"edrfleet_host_key_policy: accept-new")

    def _check_cert(self, hostname: str, blob: bytes) -> str:
        """"" when the host certificate is valid for hostname, else what it is and why not."""
        cas = self.known.authorities(hostname)
        try:
            cert = hostcert.parse(blob)
        except hostcert.CertError as exc:
            return f"host certificate edrfleet cannot read ({exc})"
        if not cas:
            return (f"{hostcert.describe(cert)}, but no @cert-authority line of "
                    f"{' or '.join(str(f) for f in self.known.files)} matches {hostname}")
        why = hostcert.refusal(cert, cas, self.known.revoked(), _principal(hostname))
        return f"{hostcert.describe(cert)} that is refused: {why}" if why else ""


def _principal(hostname: str) -> str:
    """The name a host certificate must list: the host without ``[...]:port``."""
    if hostname.startswith("[") and "]:" in hostname:
        return hostname[1:hostname.index("]:")]
    return hostname


def preferring(order: list[str]) -> Any:
    """A paramiko transport factory asking the server for these host key algorithms."""
    def factory(sock: Any, **kw: Any) -> paramiko.Transport:
        t = paramiko.Transport(sock, **kw)
        t.get_security_options().key_types = order
        return t
    return factory


# Certificate host key algorithms, in paramiko's order of the plain ones.
CERT_ALGORITHMS = [f"{k}{hostcert.CERT_SUFFIX}" for k in paramiko.Transport._preferred_keys
                   if f"{k}{hostcert.CERT_SUFFIX}" in paramiko.Transport._key_info]
