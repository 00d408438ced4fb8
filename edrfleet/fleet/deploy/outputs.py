"""The agent's outputs from the inventory: ``edrfleet_syslog`` and ``edrfleet_webhook`` rendered
into ``<config_dir>/outputs.json`` (and a credential into ``<config_dir>/webhook.header``).

Inventory shapes (both optional; docs/events.md "Outputs from the inventory")::

    edrfleet_syslog: tcp://logs.example:601          # or {address: …, ca_file: /etc/…/ca.pem}
    edrfleet_webhook:
      url: https://siem.example:8088/services/collector/event
      format: splunk-hec                               # json | es-bulk | splunk-hec
      ca_file: /etc/ssl/siem-ca.pem                    # on the host
      header: "Authorization: Splunk 1c0f…"            # vault-encrypt it; or:
      header_file: /etc/siem/hec.header                # 'Name: value' lines, on the host

The files are data (JSON, header lines), never a command line or a unit: the unit names only
``--outputs <config_dir>/outputs.json``.  Values are checked here with the agent's own
:func:`edrfleet.agent.outputs.config.check_config`, so deploy refuses what the agent would, with
the variable's name; a header must be one ``Name: value`` line.  A host without outputs has
neither file (deploy removes them when the variables go), and the agent runs none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from edrfleet.agent.outputs.config import check_config
from edrfleet.fleet.deploy.hostvars import HostVarError

OUTPUTS_FILE = "outputs.json"
HEADER_FILE = "webhook.header"
FILES = (OUTPUTS_FILE, HEADER_FILE)
# RFC 9110 field name (a token), then a value of visible ASCII and spaces: one header line.
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[!-~]([ !-~]*[!-~])?\Z")


def _syslog(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"address": value}
    if isinstance(value, Mapping):
        out = dict(value)
        if "url" in out and "address" not in out:  # url: is what the webhook calls it
            out["address"] = out.pop("url")
        return out
    raise HostVarError(f"edrfleet_syslog is {value!r}: not an address or a mapping (fix: "
                       "tcp://HOST:PORT, or {address: tls://HOST:PORT, ca_file: /path})")


def _webhook(value: Any, config_dir: str) -> tuple[dict[str, Any] | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, Mapping):
        raise HostVarError(f"edrfleet_webhook is {value!r}: not a mapping (fix: {{url: "
                           "https://…, format: json}})")
    out = dict(value)
    header = out.pop("header", None)
    if "token_file" in out:  # the name the docs of other shippers use for the same file
        if "header_file" in out:
            raise HostVarError("edrfleet_webhook: token_file and header_file name the same "
                               "thing (fix: keep one)")
        out["header_file"] = out.pop("token_file")
    if header is None:
        return out, None
    if "header_file" in out:
        raise HostVarError("edrfleet_webhook: both header and header_file (fix: keep one)")
    if not isinstance(header, str) or not _HEADER.match(header):
        raise HostVarError("edrfleet_webhook.header: not one 'Name: value' line of printable "
                           "ASCII (fix: e.g. 'Authorization: Splunk <token>'; the value is "
                           "not shown here)")
    out["header_file"] = f"{config_dir}/{HEADER_FILE}"
    return out, header + "\n"


def output_files(hv: Mapping[str, Any], config_dir: str) -> dict[str, bytes]:
    """{file name in config_dir: bytes} for the host's outputs; {} when it has none.

    Raises:
        HostVarError: a value the agent would refuse, naming the variable and the fix.
    """
    syslog = _syslog(hv.get("edrfleet_syslog"))
    webhook, header = _webhook(hv.get("edrfleet_webhook"), config_dir)
    if syslog is None and webhook is None:
        return {}
    try:
        config = check_config({"syslog": syslog, "webhook": webhook}, "outputs")
    except ValueError as e:
        raise HostVarError(str(e).replace("outputs.syslog", "edrfleet_syslog", 1)
                           .replace("outputs.webhook", "edrfleet_webhook", 1)) from None
    files = {OUTPUTS_FILE: (json.dumps(config, sort_keys=True, indent=1) + "\n").encode()}
    if header is not None:
        files[HEADER_FILE] = header.encode()
    return files


def main(argv: list[str] | None = None) -> int:
    """``python -m edrfleet.fleet.deploy.outputs --config-dir D --out DIR``: the Ansible role's
    way to the same files.  Reads ``{"edrfleet_syslog": …, "edrfleet_webhook": …}`` (JSON,
    vault values already decrypted by Ansible) on stdin, writes the files into DIR (0600) and
    prints their names, one a line (none: the host has no outputs)."""
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser(prog="python -m edrfleet.fleet.deploy.outputs")
    ap.add_argument("--config-dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        hv = json.loads(sys.stdin.read() or "{}")
        if not isinstance(hv, dict):
            raise HostVarError("stdin: not a JSON object of edrfleet_syslog, edrfleet_webhook")
        files = output_files({k: v for k, v in hv.items() if v is not None}, a.config_dir)
    except (HostVarError, ValueError) as e:
        print(f"edrfleet outputs: {e}", file=sys.stderr)
        return 1
    for name, data in files.items():
        fd = os.open(os.path.join(a.out, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        print(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
