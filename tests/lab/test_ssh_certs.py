"""SSH certificates against a real sshd: a CA made here with ssh-keygen signs a lab host's host
key (sshd ``HostCertificate``) and a user key (sshd ``TrustedUserCAKeys``).

The transport connects knowing the host only through an ``@cert-authority`` line (no plain host
key in known_hosts) and logs in with a user certificate only (the user key is in no
authorized_keys); a certificate signed by another CA, expired, or for another name is refused
naming why.  The host's sshd gets its original configuration back at the end.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edrfleet.cli.main import main
from edrfleet.fleet.transport.base import HostKeyError, Unreachable
from edrfleet.lab import netns as lab
from tests.lab.lab_fleet import hosts, run_deploy


def _keygen(*args: str) -> None:
    subprocess.run(["ssh-keygen", "-q", *args], check=True, capture_output=True, timeout=30)


def _ca(path: Path) -> str:
    _keygen("-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path))
    return path.with_suffix(".pub").read_text().split(maxsplit=2)[1]


@pytest.fixture(scope="module")
def cert_host(lab_hosts, tmp_path_factory) -> Iterator[tuple[str, Path, Callable[..., None]]]:
    """(host name, directory with ca/ca.pub, sign(validity, principals)): the last lab host's
    sshd presents a certificate signed by ``ca`` and trusts ``ca`` for user certificates."""
    tmp = tmp_path_factory.mktemp("certs")
    name = lab_hosts.names[-1]
    h = lab_hosts.lab().host(name)
    config, saved = h.config, h.config.read_text()
    cert = h.host_key.parent / (h.host_key.name + "-cert.pub")
    _ca(tmp / "ca")

    def sign(validity: str = "-5m:+1h", principals: str = h.addr, ca: str = "ca") -> None:
        _keygen("-s", str(tmp / ca), "-h", "-I", f"{name}-host", "-n", principals,
                "-V", validity, str(h.host_key.with_suffix(".pub")))
        lab.start_host(lab_hosts.dir, name)  # sshd reads its certificate at start

    config.write_text(saved + f"HostCertificate {cert}\nTrustedUserCAKeys {tmp / 'ca.pub'}\n")
    try:
        sign()
        yield name, tmp, sign
    finally:
        config.write_text(saved)
        cert.unlink(missing_ok=True)
        lab.start_host(lab_hosts.dir, name)


def _known_hosts(tmp: Path, addr: str, ca: str = "ca") -> Path:
    """A known_hosts with nothing for the host but the CA line."""
    f = tmp / f"known_hosts-{ca}"
    key = (tmp / f"{ca}.pub").read_text().split()[:2]
    f.write_text(f"@cert-authority {addr} {' '.join(key)}\n")
    return f


def _transport(lab_hosts, name: str, known: Path, **more):
    # edrfleet_known_hosts_file is read relative to the inventory's directory; absolute here
    return lab_hosts.transport(name, edrfleet_known_hosts_file=str(known), **more)


def _connect(lab_hosts, name: str, known: Path, **more) -> None:
    """Connect and run one command (what fails is the connection)."""
    with _transport(lab_hosts, name, known, **more) as t:
        t.run(["true"])


def test_a_host_known_only_by_its_ca_line_is_reached(lab_hosts, cert_host):
    name, tmp, _sign = cert_host
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    known = _known_hosts(tmp, addr)
    with _transport(lab_hosts, name, known) as t:
        assert t.run(["echo", "ok"]).stdout == b"ok\n"
    assert "@cert-authority" in known.read_text() and len(known.read_text().splitlines()) == 1


def test_a_user_certificate_alone_logs_in(lab_hosts, cert_host):
    name, tmp, _sign = cert_host
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    user = tmp / "user_key"
    if not user.exists():
        _keygen("-t", "ed25519", "-N", "", "-f", str(user))
    (tmp / "user_key-cert.pub").unlink(missing_ok=True)
    with pytest.raises(Unreachable, match="authentication"):  # the key alone: not authorized
        _connect(lab_hosts, name, _known_hosts(tmp, addr), ansible_ssh_private_key_file=str(user))
    assert _user_cert(tmp) == user and (tmp / "user_key-cert.pub").is_file()
    with _transport(lab_hosts, name, _known_hosts(tmp, addr),
                    ansible_ssh_private_key_file=str(user)) as t:
        assert t.run(["id", "-un"]).stdout == b"root\n"


def _user_cert(tmp: Path) -> Path:
    """A user key in no authorized_keys, with a certificate for root signed by ``ca``."""
    user = tmp / "user_key"
    if not user.exists():
        _keygen("-t", "ed25519", "-N", "", "-f", str(user))
    if not (tmp / "user_key-cert.pub").exists():
        _keygen("-s", str(tmp / "ca"), "-I", "lab-user", "-n", "root", "-V", "-5m:+1h",
                str(user.with_suffix(".pub")))
    return user


def test_a_certificate_named_by_certificate_file_logs_in(lab_hosts, cert_host, tmp_path):
    name, tmp, _sign = cert_host
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    user = _user_cert(tmp)
    elsewhere = tmp_path / "user.cert"
    shutil.copy(tmp / "user_key-cert.pub", elsewhere)
    key = tmp_path / "key"  # no key-cert.pub beside this copy of the key
    shutil.copy(user, key)
    key.chmod(0o600)
    with pytest.raises(Unreachable, match="authentication"):
        _connect(lab_hosts, name, _known_hosts(tmp, addr), ansible_ssh_private_key_file=str(key))
    args = f"-o IdentitiesOnly=yes -o CertificateFile={elsewhere}"
    with _transport(lab_hosts, name, _known_hosts(tmp, addr), ansible_ssh_common_args=args,
                    ansible_ssh_private_key_file=str(key)) as t:
        assert t.run(["id", "-un"]).stdout == b"root\n"
    with pytest.raises(Unreachable, match=r"cannot use the certificate .*/missing.cert"):
        _connect(lab_hosts, name, _known_hosts(tmp, addr), ansible_ssh_private_key_file=str(key),
                 ansible_ssh_common_args=f"-o CertificateFile={tmp_path / 'missing.cert'}")


def test_deploy_through_a_ca_line_and_a_user_certificate_blocks_the_canary(lab_hosts,
                                                                          cert_host):
    name, tmp, _sign = cert_host
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    over = {"edrfleet_known_hosts_file": str(_known_hosts(tmp, addr)),
            "ansible_ssh_private_key_file": str(_user_cert(tmp))}
    (host,) = [h for h in hosts(lab_hosts, **{name: over}) if h.name == name]
    try:
        report, by_name = run_deploy(lab_hosts, [host])
        assert not report.failed, [(r.name, r.message) for r in report.failed]
        assert by_name[name].agent["state"] == "enforcing"
        rc, survived = lab_hosts.canary_attack(name)
        assert rc == 137 and survived
    finally:
        assert main(["uninstall", str(lab_hosts.inventory), "--limit", name, "--purge"]) == 0
        lab_hosts.restore_dirs()


@pytest.mark.parametrize(("validity", "principals", "why"), [
    ("20200101:20200102", None, r"it expired at 2020-01-02T00:00:00Z"),
    ("+1d:+2d", None, r"it is not valid before"),
    ("-5m:+1h", "other.example,10.255.255.1",
     r"it is valid for other.example, 10.255.255.1, not for"),
])
def test_an_invalid_host_certificate_is_refused_saying_why(lab_hosts, cert_host, validity,
                                                           principals, why):
    name, tmp, sign = cert_host
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    sign(validity, principals or addr)
    try:
        with pytest.raises(HostKeyError, match=f"refused: {why}"):
            _connect(lab_hosts, name, _known_hosts(tmp, addr))
        # accept-new records no plain key for a host whose certificate failed
        with pytest.raises(HostKeyError, match="refused"):
            _connect(lab_hosts, name, _known_hosts(tmp, addr),
                     edrfleet_host_key_policy="accept-new")
        assert len(_known_hosts(tmp, addr).read_text().splitlines()) == 1
    finally:
        sign()


def test_a_certificate_from_a_ca_known_hosts_does_not_trust_is_refused(lab_hosts, cert_host):
    name, tmp, _sign = cert_host
    addr = lab_hosts.hosts[name].vars["ansible_host"]
    if not (tmp / "other.pub").exists():
        _ca(tmp / "other")
    with pytest.raises(HostKeyError, match="refused: it is signed by the CA SHA256:.*which no "
                                           "@cert-authority line for it trusts"):
        _connect(lab_hosts, name, _known_hosts(tmp, addr, ca="other"))
    revoked = _known_hosts(tmp, addr)
    ca_key = (tmp / "ca.pub").read_text().split()[:2]
    revoked.write_text(revoked.read_text() + f"@revoked * {' '.join(ca_key)}\n")
    with pytest.raises(HostKeyError, match="refused: its CA SHA256:.* is @revoked at"):
        _connect(lab_hosts, name, revoked)
