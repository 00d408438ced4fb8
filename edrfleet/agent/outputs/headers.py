"""Webhook credentials, never on the command line (where ``ps`` shows them to every user).

Header file (``--webhook-header-file FILE``, read at start and again on SIGHUP)::

    # lines "Name: value"; blank lines and lines starting with # are ignored
    Authorization: Bearer eyJhbGciOi…
    X-Tenant: blue

Keep it 0600, owned by root.  A malformed line is refused with its line number, never with its
content (it may be a secret).

A URL with credentials (``https://user:pass@host/…``) is split by :func:`split_credentials` into
the URL without them and an ``Authorization: Basic`` header, for callers that read the URL
from a protected file; the agent's command line refuses such a URL instead.
"""

from __future__ import annotations

import base64
import re
import urllib.parse

_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110 §5.6.2)


def parse_headers(text: str, source: str) -> dict[str, str]:
    """Headers from ``Name: value`` lines.

    Raises:
        ValueError: a line that is not ``Name: value``, or a value with a control character.
    """
    headers: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _NAME.fullmatch(name) or not value:
            raise ValueError(f"{source} line {number}: not a 'Name: value' header line")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError(f"{source} line {number}: control character in the value")
        headers[name] = value
    return headers


def read_header_file(path: str) -> dict[str, str]:
    """The headers of a header file (see the module doc).

    Raises:
        OSError: it cannot be read.  ValueError: a malformed line.
    """
    with open(path, encoding="utf-8") as f:
        return parse_headers(f.read(), path)


def url_has_credentials(url: str) -> bool:
    return "@" in urllib.parse.urlsplit(url).netloc


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """(the URL without ``user:pass@``, an ``Authorization: Basic`` header or no header)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    token = base64.b64encode(pair.encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), {
        "Authorization": f"Basic {token}"}


def redact(url: str) -> str:
    """The URL as logs and status.json may show it: credentials and query left out."""
    parts = urllib.parse.urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport, query="", fragment=""))
