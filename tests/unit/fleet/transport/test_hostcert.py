"""Host certificate checks (hostcert.py) on certificates ssh-keygen makes: each OpenSSH rule,
and a certificate changed by one byte."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from edrfleet.fleet.transport import hostcert
from edrfleet.fleet.transport import known_hosts as kh

NOW = 1_800_000_000  # 2027-01-15; the certificates below are dated around it


def _keygen(*args: str) -> None:
    subprocess.run(["ssh-keygen", "-q", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for name, kind in (("ca", "ed25519"), ("rsa_ca", "rsa"), ("other", "ed25519"),
                       ("host", "ed25519"), ("ecdsa_host", "ecdsa")):
        _keygen("-t", kind, "-N", "", "-f", str(d / name))
    return d


def _cert(keys: Path, *, ca: str = "ca", host: str = "host", principals: str = "web1",
          validity: str = "20260101:20280101", user: bool = False) -> bytes:
    pub = keys / f"{host}.pub"
    cert = keys / f"{host}-cert.pub"
    cert.unlink(missing_ok=True)
    _keygen("-s", str(keys / ca), *([] if user else ["-h"]), "-I", "id-1", "-z", "7",
            "-n", principals, "-V", validity, str(pub))
    return base64.b64decode(cert.read_text().split()[1])


def _line(keys: Path, ca: str = "ca", *, marker: str = "@cert-authority",
          patterns: str = "web*") -> list[kh.Entry]:
    f = keys / f"known-{ca}-{marker[1:]}"
    f.write_text(f"{marker} {patterns} {' '.join((keys / f'{ca}.pub').read_text().split()[:2])}\n")
    return [e for e in kh.parse_file(f)]


def test_a_valid_certificate_passes_and_its_fields_are_read(keys) -> None:
    cert = hostcert.parse(_cert(keys, principals="web1,web1.example"))
    assert (cert.kind, cert.key_id, cert.serial) == (hostcert.HOST_CERT, "id-1", 7)
    assert cert.principals == ("web1", "web1.example")
    assert hostcert.refusal(cert, _line(keys), [], "web1", NOW) == ""
    assert hostcert.refusal(cert, _line(keys), [], "web1.example", NOW) == ""


@pytest.mark.parametrize("kw,host,why", [
    ({"principals": "db1"}, "web1", "it is valid for db1, not for web1"),
    ({"validity": "20200101:20200102"}, "web1", "it expired at 2020-01-02T00:00:00Z"),
    ({"validity": "20290101:20300101"}, "web1", "it is not valid before 2029-01-01"),
    ({"user": True}, "web1", "it is a user certificate (type 1), not a host certificate"),
    ({"ca": "other"}, "web1", "it is signed by the CA SHA256:"),
])
def test_each_openssh_rule_refuses_naming_why(keys, kw, host, why) -> None:
    cert = hostcert.parse(_cert(keys, **kw))
    assert why in hostcert.refusal(cert, _line(keys), [], host, NOW)


def test_wildcard_principals_and_rsa_and_ecdsa_keys(keys) -> None:
    cert = hostcert.parse(_cert(keys, ca="rsa_ca", host="ecdsa_host", principals="*.example"))
    assert cert.cert_type.startswith("ecdsa-sha2-nistp256-cert")
    assert hostcert.refusal(cert, _line(keys, "rsa_ca"), [], "web1.example", NOW) == ""
    assert "not for web1" in hostcert.refusal(cert, _line(keys, "rsa_ca"), [], "web1", NOW)


def test_a_revoked_ca_and_a_tampered_certificate_are_refused(keys) -> None:
    blob = _cert(keys)
    revoked = _line(keys, marker="@revoked", patterns="*")
    assert "is @revoked at" in hostcert.refusal(hostcert.parse(blob), _line(keys), revoked,
                                                "web1", NOW)
    # principals "web1" -> "web2": same length, the signature no longer covers it
    tampered = blob.replace(b"web1", b"web2")
    assert tampered != blob
    why = hostcert.refusal(hostcert.parse(tampered), _line(keys), [], "web2", NOW)
    assert why.startswith("its signature by the CA SHA256:") and "does not verify" in why


def test_what_is_not_a_certificate_is_a_cert_error(keys) -> None:
    plain = base64.b64decode((keys / "host.pub").read_text().split()[1])
    with pytest.raises(hostcert.CertError, match="not a certificate type"):
        hostcert.parse(plain)
    with pytest.raises(hostcert.CertError, match="truncated or malformed"):
        hostcert.parse(_cert(keys)[:60])


def test_known_hosts_keeps_ca_lines_apart_from_host_keys(keys) -> None:
    f = keys / "known_mixed"
    ca = " ".join((keys / "ca.pub").read_text().split()[:2])
    host = " ".join((keys / "host.pub").read_text().split()[:2])
    f.write_text(f"@cert-authority *.example,web1 {ca}\nweb2 {host}\n@unknown web1 {ca}\n")
    known = kh.KnownHosts([f])
    assert [e.line for e in known.authorities("web1")] == [1]
    assert known.authorities("web2") == [] and known.known_types("web1") == set()
    assert known.known_types("web2") == {"ssh-ed25519"}
