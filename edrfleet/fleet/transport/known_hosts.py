"""OpenSSH known_hosts files, read with their line numbers so a refusal can say where to look.

What is understood (ssh(8) "SSH_KNOWN_HOSTS FILE FORMAT"): comma-separated host patterns with
``*``/``?`` wildcards and ``!`` negation, ``[host]:port`` for non-22 ports, hashed names
(``|1|salt|hmac``), ``@revoked`` lines, and ``@cert-authority`` lines (the CA keys trusted to
sign host certificates for the hosts they match; the certificates themselves are checked in
edrfleet/fleet/transport/hostcert.py).

The verdict follows OpenSSH: a key matching any line of any file is accepted; otherwise a line
for the same host and key type with another key means "changed"; otherwise "unknown".
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

# Host key types as known_hosts writes them, and the signature algorithms a server may use
# for each (an RSA key is written "ssh-rsa" but negotiated as rsa-sha2-*).
ALGORITHMS_FOR_TYPE: dict[str, tuple[str, ...]] = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}
_append_lock = threading.Lock()  # one writer per process; flock orders processes


@dataclass(frozen=True)
class Entry:
    file: Path
    line: int
    patterns: str  # the host field as written (may be hashed)
    keytype: str
    blob: bytes
    revoked: bool = False
    authority: bool = False  # an @cert-authority line: a CA key, not a host key

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Verdict:
    status: str  # "ok" | "unknown" | "changed" | "revoked"
    entries: tuple[Entry, ...] = ()  # the lines that decided it (the old keys when changed)


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def host_key_name(host: str, port: int) -> str:
    """The name ssh looks up and records: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def _hashed_match(pattern: str, name: str) -> bool:
    parts = pattern.split("|")  # "|1|salt|hash" -> ['', '1', salt, hash]
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except ValueError:
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), want)


def _glob(pattern: str) -> re.Pattern[str]:
    # ssh's match_pattern(): only * and ? are special ("[" is literal, as in [host]:port).
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body + r"\Z", re.IGNORECASE | re.DOTALL)


def pattern_match(pattern: str, name: str) -> bool:
    """One ssh pattern (``*``/``?``, case-insensitive) against a name."""
    return bool(_glob(pattern).match(name))


def names_match(field: str, name: str) -> bool:
    """True when the host field of a known_hosts line matches name (negations win)."""
    if field.startswith("|"):
        return _hashed_match(field, name)
    matched = False
    for pat in field.split(","):
        negated = pat.startswith("!")
        if _glob(pat.lstrip("!")).match(name):
            if negated:
                return False
            matched = True
    return matched


def parse_file(path: Path) -> list[Entry]:
    """Entries of one known_hosts file; a missing file has none, unparsable lines are skipped
    (ssh skips them too)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    entries = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        revoked = authority = False
        if fields[0].startswith("@"):
            if fields[0] not in ("@revoked", "@cert-authority"):
                continue  # ssh ignores markers it does not know
            revoked, authority = fields[0] == "@revoked", fields[0] == "@cert-authority"
            fields = fields[1:]
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except ValueError:
            continue
        entries.append(Entry(path, lineno, fields[0], fields[1], blob, revoked, authority))
    return entries


class KnownHosts:
    """The merged view of several known_hosts files (earlier files are listed first)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        every = [e for f in files for e in parse_file(f)]
        self.entries = [e for e in every if not e.authority]
        self.authority_entries = [e for e in every if e.authority]

    def for_name(self, name: str) -> list[Entry]:
        return [e for e in self.entries if names_match(e.patterns, name)]

    def authorities(self, name: str) -> list[Entry]:
        """The @cert-authority lines whose host patterns match name."""
        return [e for e in self.authority_entries if names_match(e.patterns, name)]

    def revoked(self) -> list[Entry]:
        return [e for e in self.entries if e.revoked]

    def known_types(self, name: str) -> set[str]:
        return {e.keytype for e in self.for_name(name) if not e.revoked}

    def check(self, name: str, keytype: str, blob: bytes) -> Verdict:
        lines = self.for_name(name)
        revoked = [e for e in self.entries
                   if e.revoked and e.keytype == keytype and e.blob == blob]
        if revoked:
            return Verdict("revoked", tuple(revoked))
        same = [e for e in lines if not e.revoked and e.keytype == keytype and e.blob == blob]
        if same:
            return Verdict("ok", tuple(same))
        other = [e for e in lines if not e.revoked and e.keytype == keytype]
        if other:
            return Verdict("changed", tuple(other))
        return Verdict("unknown")


def append(path: Path, name: str, keytype: str, blob: bytes) -> int:
    """Record a key (accept-new) and return its line number; safe across threads and processes."""
    line = f"{name} {keytype} {base64.b64encode(blob).decode()}\n"
    with _append_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            existing = f.read()
            lines = existing.decode(errors="replace").splitlines()
            if line.rstrip("\n") in lines:  # another process recorded it meanwhile
                return lines.index(line.rstrip("\n")) + 1
            if existing and not existing.endswith(b"\n"):
                f.write(b"\n")
                existing += b"\n"
            f.write(line.encode())
            return existing.count(b"\n") + 1
