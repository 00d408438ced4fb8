"""The shell scripts deploy runs on a host, and the payload it sends with them.

Each script is a generated preamble of quoted variables (nothing from the inventory reaches the
shell unquoted) followed by fixed bodies, shipped as files: ``host/common.sh`` then
``host/apply.sh``, ``host/rollback.sh`` or ``host/uninstall.sh`` (hostfiles.py).  They
start, stop, reload and wait for the agent with the release's own ``agent.pyz service`` and
``agent.pyz wait``, the commands the Ansible role runs too.

One apply = one SSH round trip: the payload (tar.gz on stdin) is unpacked, verified, swapped
into place, the service is started, restarted or reloaded, and the script itself waits on the
host until status.json shows the new policy in force (or a failure, or the timeout), then
prints ``key=value`` lines:

    old_release=<id or empty>   result=ok|failed|timeout   status=<status.json, base64>
    error=<one line>            (on failure)
    touched_release=1, touched_policy=1, touched_unit=1, touched_service=1   (for rollback)
    touched_outputs=1

Host layout: docs/fleet.md.  The supervised agent logs to <spool_dir>/agent.log.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import secrets
import shlex
import tarfile
from dataclasses import dataclass
from typing import Any

from edrfleet.fleet.deploy.facts import HostPaths
from edrfleet.fleet.deploy.hostfiles import host_file
from edrfleet.fleet.deploy.hostvars import HostVarError, check_managed_dir
from edrfleet.fleet.deploy.operations import Desired, Plan
from edrfleet.policy import compile_policy, dump_bundle, load_policy_text


@functools.lru_cache(maxsize=1)
def no_rules_bundle() -> tuple[str, str]:
    """(canonical text, sha256) of a monitor-mode policy with no rules: what the agent is
    reloaded with before systemd stops it (the default policy forbids `systemctl stop
    edrfleet-agent`, and rightly so for anyone but the deployer)."""
    bundle = compile_policy(load_policy_text("version: 1\nmode: monitor\nrules: []\n",
                                             "stop.yaml"))
    return dump_bundle(bundle).strip(), bundle["sha256"]


def _preamble(paths: HostPaths, name: str, manager: str, extra: dict[str, str],
              start_timeout: float) -> str:
    text, sha = no_rules_bundle()
    values = {"HOST_NAME": name, "MANAGER": manager, "START_TIMEOUT": f"{start_timeout:g}",
              "NO_RULES_BUNDLE": text, "NO_RULES_SHA": sha, **extra}
    return paths.shell_vars() + "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def _flag(value: bool) -> str:
    return "1" if value else "0"


def apply_script(desired: Desired, plan: Plan, payload: bool) -> str:
    install = "install_packages() { :; }\n"
    if plan.packages:
        apt = f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q -- {shlex.join(plan.packages)}"
        install = (  # a fresh host may have no package lists yet: update once and retry
            f"install_packages() {{\n    {apt} >&2 || {{ apt-get update -q >&2 && {apt} >&2; }} "
            f"|| fail \"apt-get install {' '.join(plan.packages)} failed\"\n}}\n")
    extra = {
        "WANT_RELEASE": desired.release.id, "WANT_SHA": desired.policy.sha256,
        "RAND": secrets.token_hex(4), "PAYLOAD": _flag(payload),
        "PUSH_RELEASE": _flag(plan.push_release), "SWAP_RELEASE": _flag(plan.swap_release),
        "WRITE_POLICY": _flag(plan.write_policy), "WRITE_UNIT": _flag(plan.write_unit),
        "WRITE_OUTPUTS": _flag(plan.write_outputs),
        "SERVICE": plan.service,
    }
    return (_preamble(desired.paths, desired.name, desired.manager, extra,
                      desired.start_timeout) + host_file("common.sh") + host_file("dirs.sh")
            + install + host_file("apply.sh"))


def rollback_script(desired: Desired, old_release: str, restore_policy: bool,
                    restart: bool, restore_unit: bool = False) -> str:
    extra = {"WANT_RELEASE": desired.release.id, "OLD_RELEASE": old_release,
             "RESTORE_POLICY": _flag(restore_policy), "RESTART": _flag(restart),
             "RESTORE_UNIT": _flag(restore_unit)}
    return (_preamble(desired.paths, desired.name, desired.manager, extra,
                      desired.start_timeout) + host_file("common.sh") + host_file("rollback.sh"))


def uninstall_script(paths: HostPaths, name: str, purge: bool) -> str:
    for p in (paths.install_dir, paths.config_dir, paths.run_dir, paths.spool_dir):
        check_removable(p)
    return (_preamble(paths, name, "supervisor", {"PURGE": _flag(purge)}, 30)
            + host_file("common.sh") + host_file("uninstall.sh"))


def check_removable(path: str) -> None:
    """Uninstall removes ``path`` whole: refused unless it is a plain directory of our own."""
    try:
        check_managed_dir("edrfleet_*_dir", path)
    except HostVarError as exc:
        raise HostVarError(f"refusing to remove {path!r}: {exc}") from None


@dataclass(frozen=True)
class Payload:
    data: bytes        # tar.gz
    files: list[str]   # what it carries


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o600) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tf.addfile(info, io.BytesIO(data))


def build_payload(desired: Desired, plan: Plan) -> Payload | None:
    """The files the plan needs, with sha256 manifests the host checks before using them."""
    files: dict[str, bytes] = {}
    if plan.push_release:
        for name, data in desired.release.files.items():
            files[f"release/{name}"] = data
    if plan.write_policy:
        files["policy.json"] = desired.policy.bundle_json.encode()
        files["policy.yaml"] = desired.policy.yaml_text.encode()
    if plan.write_unit and desired.unit:
        files["unit"] = desired.unit.encode()
    if plan.write_outputs:  # a file left out is removed on the host
        for name, data in desired.outputs.items():
            files[f"outputs/{name}"] = data
    if not files:
        return None
    manifest = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items())
    release_manifest = "".join(f"{desired.release.sha256(n)}  {n}\n"
                               for n in desired.release.files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        for name, data in files.items():
            _tar_add(tf, name, data)
        _tar_add(tf, "manifest.sha256", manifest.encode())
        _tar_add(tf, "release.sha256", release_manifest.encode())
    return Payload(buf.getvalue(), sorted(files))


def parse_output(stdout: bytes) -> dict[str, Any]:
    """``key=value`` lines -> dict; ``status`` decoded from base64 JSON (None when absent)."""
    out: dict[str, Any] = {}
    for line in stdout.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            out[key] = value
    raw = out.get("status")
    try:
        out["status"] = json.loads(base64.b64decode(raw)) if raw else None
    except ValueError:
        out["status"] = None
    return out
