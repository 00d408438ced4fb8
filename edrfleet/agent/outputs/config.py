"""The outputs file: which syslog and webhook outputs the agent runs, re-read on SIGHUP.

``agent run --outputs FILE`` (what deploy and the role put in the unit:
``<config_dir>/outputs.json``, written from the inventory's ``edrfleet_syslog`` /
``edrfleet_webhook``) names a JSON object::

    {"syslog": {"address": "tcp://logs.example:601", "ca_file": null},
     "webhook": {"url": "https://siem.example/hec", "format": "splunk-hec",
                 "ca_file": "/etc/ssl/siem-ca.pem",
                 "header_file": "/etc/edrfleet/webhook.header"}}

Either key may be missing or null (no such output); ``{}`` runs none, and so does a missing
file (deploy writes it only for a host with outputs, and removes it when they go).  The values
are data the agent hands to its sinks, never a command line: a credential stays in the header
file (0600), out of ``ps`` and out of the unit.  :func:`check_config` is the one validation,
used by the agent on the file and by deploy on the inventory's values before it writes them.

On SIGHUP, :meth:`ConfiguredOutputs.reload` reads the file again: unchanged, the sinks re-read
their credentials; changed, the old outputs are closed and the new ones started, each from its
persisted spool cursor (an output whose target changed goes on from the same cursor: the spool
is the queue); a file that does not parse keeps the outputs running as they are and says why.
"""

from __future__ import annotations

import json
import os
from typing import Any

from edrfleet.agent.outputs import Outputs
from edrfleet.agent.outputs.rfc5424 import parse_syslog_address
from edrfleet.agent.outputs.shipper import Sink
from edrfleet.agent.outputs.syslog import SyslogSink
from edrfleet.agent.outputs.webhook import WebhookSink

FORMATS = ("json", "es-bulk", "splunk-hec")
_KEYS = {"syslog": {"address", "ca_file"},
         "webhook": {"url", "format", "ca_file", "header_file"}}
MAX_FILE = 64 * 1024


def _plain(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: must be a non-empty string")
    if any(ord(c) < 0x20 or ord(c) == 0x7f or c.isspace() for c in value):
        raise ValueError(f"{where}: holds whitespace or control characters (fix: write it "
                         "without them; credentials go in a header file)")
    return value


def _file(where: str, value: Any) -> str | None:
    if value is None:
        return None
    path = _plain(where, value)
    if not path.startswith("/") or ".." in path.split("/"):
        raise ValueError(f"{where}: {path!r} must be an absolute path without '..'")
    return path


def check_config(data: Any, where: str = "outputs") -> dict[str, Any]:
    """The outputs config normalized (every key present, null where unset).

    Raises:
        ValueError: one line naming the key, what is wrong and the fix.
    """
    if not isinstance(data, dict) or set(data) - set(_KEYS):
        raise ValueError(f"{where}: must be an object with keys syslog and webhook only")
    out: dict[str, Any] = {"syslog": None, "webhook": None}
    syslog = data.get("syslog")
    if syslog is not None:
        if not isinstance(syslog, dict) or set(syslog) - _KEYS["syslog"]:
            raise ValueError(f"{where}.syslog: must be an object with keys "
                             f"{', '.join(sorted(_KEYS['syslog']))}")
        address = _plain(f"{where}.syslog.address", syslog.get("address"))
        transport, _ = parse_syslog_address(address)  # ValueError names the address
        ca = _file(f"{where}.syslog.ca_file", syslog.get("ca_file"))
        if ca and transport != "tls":
            raise ValueError(f"{where}.syslog.ca_file: only for a tls:// address")
        out["syslog"] = {"address": address, "ca_file": ca}
    webhook = data.get("webhook")
    if webhook is not None:
        if not isinstance(webhook, dict) or set(webhook) - _KEYS["webhook"]:
            raise ValueError(f"{where}.webhook: must be an object with keys "
                             f"{', '.join(sorted(_KEYS['webhook']))}")
        url = _plain(f"{where}.webhook.url", webhook.get("url"))
        scheme, sep, rest = url.partition("://")
        if scheme not in ("http", "https") or not sep or not rest.split("/")[0]:
            raise ValueError(f"{where}.webhook.url: must be http://HOST… or https://HOST…")
        if "@" in rest.partition("/")[0]:
            raise ValueError(f"{where}.webhook.url: carries credentials (user:pass@) (fix: "
                             "give an Authorization header: header or header_file)")
        fmt = webhook.get("format", "json")
        if fmt not in FORMATS:
            raise ValueError(f"{where}.webhook.format: {fmt!r} (fix: one of "
                             f"{', '.join(FORMATS)})")
        ca = _file(f"{where}.webhook.ca_file", webhook.get("ca_file"))
        if ca and scheme != "https":
            raise ValueError(f"{where}.webhook.ca_file: only for an https:// url")
        out["webhook"] = {"url": url, "format": fmt, "ca_file": ca,
                          "header_file": _file(f"{where}.webhook.header_file",
                                               webhook.get("header_file"))}
    return out


def read_config(path: str) -> tuple[str, dict[str, Any]]:
    """(the file's text, its config); ("", no outputs) when there is no file.  Raises
    OSError, ValueError naming the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return "", check_config({})
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_FILE + 1)
    if len(raw) > MAX_FILE:
        raise ValueError(f"{path}: larger than {MAX_FILE} bytes, not an outputs file")
    text = raw.decode("utf-8")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    return text, check_config(data, path)


def sinks(config: dict[str, Any], host_name: str | None) -> list[Sink]:
    out: list[Sink] = []
    s, w = config.get("syslog"), config.get("webhook")
    try:
        if s:
            out.append(SyslogSink(s["address"], hostname=host_name, ca_file=s["ca_file"]))
        if w:
            out.append(WebhookSink(w["url"], fmt=w["format"], ca_file=w["ca_file"],
                                   header_file=w["header_file"]))
    except BaseException:
        for sink in out:
            sink.close()
        raise
    return out


class ConfiguredOutputs:
    """The outputs an outputs file names, replaced when the file changes (SIGHUP).

    Raises (at start): OSError, ValueError: the file cannot be read or is not valid.
    """

    def __init__(self, spool_dir: str, path: str, host_name: str | None,
                 start: bool = True) -> None:
        self.spool_dir, self.path, self.host_name = spool_dir, path, host_name
        self.text, config = read_config(path)
        made = sinks(config, host_name)
        self.outputs: Outputs | None = Outputs(spool_dir, made, start) if made else None

    def start(self) -> None:
        if self.outputs:
            self.outputs.start()

    def wake(self) -> None:
        if self.outputs:
            self.outputs.wake()

    def carry(self, previous: dict) -> None:
        if self.outputs:
            self.outputs.carry(previous)

    def reload(self) -> list[str]:
        """Read the file again; returns the errors (outputs kept as they were then)."""
        try:
            text, config = read_config(self.path)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            return [f"outputs file kept as loaded: {e}"]
        if text == self.text:
            return self.outputs.reload() if self.outputs else []
        try:
            made = sinks(config, self.host_name)
        except (OSError, ValueError) as e:
            return [f"outputs file kept as loaded: {self.path}: {e}"]
        if self.outputs:
            self.outputs.close(deadline=2.0)  # what does not go now goes from the cursor
        self.outputs = Outputs(self.spool_dir, made) if made else None
        self.text = text
        return []

    def close(self, deadline: float = 5.0) -> None:
        if self.outputs:
            self.outputs.close(deadline)

    def stats(self) -> dict[str, dict[str, Any]]:
        return self.outputs.stats() if self.outputs else {}
