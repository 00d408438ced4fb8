"""known_hosts parsing and OpenSSH's verdicts: ok, unknown, changed, revoked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from pathlib import Path

import pytest

from edrfleet.fleet.transport import known_hosts as kh

A = base64.b64encode(b"key-a").decode()
B = base64.b64encode(b"key-b").decode()


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    mac = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(mac).decode()}"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_host_key_name_brackets_non_default_ports():
    assert kh.host_key_name("10.0.0.1", 22) == "10.0.0.1"
    assert kh.host_key_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


@pytest.mark.parametrize("field, name, match", [
    ("web1", "web1", True), ("web1", "WEB1", True), ("web1,10.0.0.1", "10.0.0.1", True),
    ("web*", "web7", True), ("web?", "web12", False), ("*.lab,!db.lab", "db.lab", False),
    ("*.lab,!db.lab", "app.lab", True), ("[10.0.0.1]:2222", "[10.0.0.1]:2222", True),
    ("[10.0.0.1]:2222", "10.0.0.1", False), (hashed("web1"), "web1", True),
    (hashed("web1"), "web2", False), ("|1|bad", "web1", False),
])
def test_host_patterns_match_like_ssh(field, name, match):
    assert kh.names_match(field, name) is match


def test_verdicts_carry_the_file_and_line_that_decided(tmp_path):
    user = write(tmp_path, "user", f"# comment\n\nweb1 ssh-ed25519 {A}\n")
    inv = write(tmp_path, "inv", f"web2 ssh-ed25519 {A}\n@revoked * ssh-rsa {B}\n"
                                 f"garbage\nweb3 ssh-ed25519 !!notbase64\n")
    k = kh.KnownHosts([user, inv, tmp_path / "missing"])
    ok = k.check("web1", "ssh-ed25519", b"key-a")
    assert ok.status == "ok" and ok.entries[0].where == f"{user}:3"
    changed = k.check("web2", "ssh-ed25519", b"key-b")
    assert changed.status == "changed" and changed.entries[0].where == f"{inv}:1"
    assert k.check("web2", "ecdsa-sha2-nistp256", b"key-b").status == "unknown"
    assert k.check("web3", "ssh-ed25519", b"key-a").status == "unknown"
    assert k.check("web4", "ssh-rsa", b"key-b").status == "revoked"
    assert k.known_types("web2") == {"ssh-ed25519"}


def test_a_match_in_any_file_wins_over_a_stale_line_in_another(tmp_path):
    old = write(tmp_path, "old", f"web1 ssh-ed25519 {B}\n")
    new = write(tmp_path, "new", f"web1 ssh-ed25519 {A}\n")
    assert kh.KnownHosts([old, new]).check("web1", "ssh-ed25519", b"key-a").status == "ok"


def test_fingerprint_is_openssh_sha256():
    blob = b"\x00\x00\x00\x0bssh-ed25519" + b"\x00\x00\x00\x20" + bytes(32)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert kh.fingerprint(blob) == "SHA256:" + digest


def test_append_returns_line_numbers_and_is_safe_across_threads(tmp_path):
    p = tmp_path / "sub" / "kh"
    p.parent.mkdir()
    p.write_text("first ssh-ed25519 " + A)  # no trailing newline: append must add one
    lines: list[int] = []
    threads = [threading.Thread(target=lambda i=i: lines.append(
        kh.append(p, f"h{i}", "ssh-ed25519", b"key-a"))) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = p.read_text().splitlines()
    assert sorted(lines) == list(range(2, 22)) and len(text) == 21
    assert {e.patterns for e in kh.parse_file(p)} == {"first"} | {f"h{i}" for i in range(20)}


def test_append_creates_a_private_file(tmp_path):
    p = tmp_path / "new" / "kh"
    assert kh.append(p, "h", "ssh-ed25519", b"key-a") == 1
    assert p.stat().st_mode & 0o777 == 0o600
    assert p.read_text() == f"h ssh-ed25519 {A}\n"
