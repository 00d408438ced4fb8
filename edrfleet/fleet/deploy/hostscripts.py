"""The shell scripts deploy runs on a host, and the payload it sends with them.

Each script is a generated preamble of quoted variables (nothing from the inventory reaches the
shell unquoted) followed by a fixed body.  One apply = one SSH round trip: the payload
(tar.gz on stdin) is unpacked, verified, swapped into place, the service is started, restarted
or reloaded, and the script itself waits on the host until status.json shows the new policy
in force (or a failure, or the timeout), then prints ``key=value`` lines:

    old_release=<id or empty>   result=ok|failed|timeout   status=<status.json, base64>
    error=<one line>            (on failure)
    touched_release=1, touched_policy=1, touched_unit=1, touched_service=1   (for rollback)

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
from edrfleet.fleet.deploy.operations import Desired, Plan
from edrfleet.policy import compile_policy, dump_bundle, load_policy_text

# Runs on the host's python3: waits until status.json shows what the action should produce.
# argv: spool want_sha action t0 old_pid timeout
WAIT_PY = r'''
import base64, json, sys, time
spool, want, action, t0, old_pid, timeout = sys.argv[1:7]
t0, old_pid, deadline = float(t0), int(old_pid or 0), time.monotonic() + float(timeout)
last, result, error = None, "timeout", ""
while True:
    try:
        with open(spool + "/status.json", "rb") as f:
            st = json.loads(f.read())
    except (OSError, ValueError):
        st = None
    if isinstance(st, dict):
        last = st
        reload = st.get("last_reload") or {}
        if action == "reload":
            fresh = reload.get("at", 0) >= t0
        else:
            fresh = st.get("pid") != old_pid and st.get("started_at", 0) >= t0 - 1
        if fresh and action == "reload" and not reload.get("ok", True):
            result, error = "failed", "reload refused: " + str(reload.get("error", ""))
            break
        if fresh and st.get("state") in ("enforcing", "monitoring") and \
                (not want or st.get("policy_sha256") == want):
            result = "ok"
            break
        if fresh and st.get("state") in ("failed", "stopped"):
            result, error = "failed", st.get("last_error") or "agent " + st.get("state")
            break
    if time.monotonic() > deadline:
        state = (last or {}).get("state", "no status.json")
        error = "agent not enforcing after %ss (state %s): %s" % (
            timeout, state, (last or {}).get("last_error", ""))
        break
    time.sleep(0.1)
print("result=" + result)
print("error=" + " ".join(error.split())[:500])
print("status=" + base64.b64encode(json.dumps(last).encode()).decode())
'''

# Shell functions every script shares: start/stop/reload the agent under either manager.
COMMON = r'''
set -eu
umask 077
fail() { echo "result=failed"; echo "error=$*"; exit 1; }
sup_pid() {
    p=$(cat "$RUN_DIR/supervisor.pid" 2>/dev/null || true)
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p" || true
}
quiesce_agent() {  # systemd: a policy without rules first, so self-protection lets us stop it
    p=$(systemctl show -p MainPID --value "$UNIT_NAME" 2>/dev/null || echo 0)
    [ -n "$p" ] && [ "$p" -gt 0 ] && [ -d "$CONFIG_DIR" ] || return 0
    printf '%s\n' "$NO_RULES_BUNDLE" > "$CONFIG_DIR/.policy.json.tmp"
    mv -f "$CONFIG_DIR/.policy.json.tmp" "$CONFIG_DIR/policy.json"
    t0=$(date +%s.%N)
    kill -HUP "$p"  # the shell's kill: no exec for the agent's rules to judge
    wait_agent reload "$NO_RULES_SHA" "$t0" "$p" >/dev/null || true
}
stop_agent() {
    if [ "$MANAGER" = systemd ]; then
        systemctl is-active --quiet "$UNIT_NAME" 2>/dev/null || return 0
        quiesce_agent
        systemctl stop "$UNIT_NAME" || fail "systemctl stop $UNIT_NAME failed"
        return
    fi
    p=$(sup_pid)
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null || true
    i=0
    while kill -0 "$p" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 300 ] && fail "supervisor $p did not stop in 30 s"
        sleep 0.1
    done
}
start_agent() {
    if [ "$MANAGER" = systemd ]; then
        systemctl enable --quiet "$UNIT_NAME" && systemctl restart "$UNIT_NAME" \
            || fail "systemctl restart $UNIT_NAME failed"
        return
    fi
    stop_agent
    mkdir -p "$RUN_DIR" && chmod 700 "$RUN_DIR"
    # 9>&-: the daemon must not inherit (and hold forever) the deploy lock
    "$PYTHON" "$INSTALL_DIR/current/agent.pyz" supervise --pidfile "$RUN_DIR/supervisor.pid" \
        --agent-pidfile "$RUN_DIR/agent.pid" --log "$SPOOL_DIR/agent.log" \
        -- run --policy "$CONFIG_DIR/policy.json" --spool "$SPOOL_DIR" \
        --bpf-dir "$INSTALL_DIR/current/bpf" --host-name "$HOST_NAME" 9>&- \
        || fail "the supervisor did not start (see $SPOOL_DIR/agent.log)"
}
reload_agent() {
    if [ "$MANAGER" = systemd ]; then
        systemctl reload "$UNIT_NAME" || fail "systemctl reload $UNIT_NAME failed"
        return
    fi
    p=$(sup_pid)
    [ -n "$p" ] || fail "no supervisor running to reload"
    kill -HUP "$p"
}
agent_pid() {
    if [ "$MANAGER" = systemd ]; then
        systemctl show -p MainPID --value "$UNIT_NAME" 2>/dev/null || echo 0
    else
        cat "$RUN_DIR/agent.pid" 2>/dev/null || echo 0
    fi
}
wait_agent() {  # action want_sha t0 old_pid
    "$PYTHON" -c "$WAIT_PY" "$SPOOL_DIR" "$2" "$1" "$3" "$4" "$START_TIMEOUT"
}
'''

APPLY_BODY = r'''
mkdir -p "$INSTALL_DIR/releases" "$CONFIG_DIR" "$SPOOL_DIR" "$RUN_DIR"
chmod 700 "$INSTALL_DIR" "$INSTALL_DIR/releases" "$CONFIG_DIR" "$SPOOL_DIR" "$RUN_DIR"
exec 9>"$INSTALL_DIR/.deploy.lock"
flock -n 9 || fail "another deploy is running on this host ($INSTALL_DIR/.deploy.lock)"
OLD_RELEASE=""
[ -L "$INSTALL_DIR/current" ] && OLD_RELEASE=$(basename "$(readlink "$INSTALL_DIR/current")")
echo "old_release=$OLD_RELEASE"
install_packages
STAGE=$(mktemp -d "$INSTALL_DIR/.stage-XXXXXXXX")
trap 'rm -rf "$STAGE"' EXIT
if [ "$PAYLOAD" = 1 ]; then
    tar -xzf - -C "$STAGE" --no-same-owner --no-same-permissions || fail "payload did not unpack"
    (cd "$STAGE" && sha256sum -c --quiet manifest.sha256 >/dev/null 2>&1) \
        || fail "payload sha256 mismatch after transfer"
fi
if [ "$PUSH_RELEASE" = 1 ]; then
    tmp="$INSTALL_DIR/releases/$WANT_RELEASE.tmp-$RAND"
    mv "$STAGE/release" "$tmp"
    (cd "$tmp" && sha256sum -c --quiet "$STAGE/release.sha256" >/dev/null 2>&1) \
        || fail "release $WANT_RELEASE sha256 mismatch in $tmp"
    chmod -R go= "$tmp"
    rm -rf "$INSTALL_DIR/releases/$WANT_RELEASE"
    mv "$tmp" "$INSTALL_DIR/releases/$WANT_RELEASE"
fi
if [ "$SWAP_RELEASE" = 1 ]; then
    [ -f "$INSTALL_DIR/releases/$WANT_RELEASE/agent.pyz" ] || fail "release $WANT_RELEASE missing"
    ln -sfn "releases/$WANT_RELEASE" "$INSTALL_DIR/.current.tmp"
    mv -T "$INSTALL_DIR/.current.tmp" "$INSTALL_DIR/current"
    echo "touched_release=1"
fi
if [ "$WRITE_POLICY" = 1 ]; then
    echo "touched_policy=1"
    for f in policy.json policy.yaml; do
        if [ -f "$CONFIG_DIR/$f" ]; then cp -p "$CONFIG_DIR/$f" "$CONFIG_DIR/$f.prev"
        else rm -f "$CONFIG_DIR/$f.prev"; fi
        cp "$STAGE/$f" "$CONFIG_DIR/.$f.tmp" && chmod 600 "$CONFIG_DIR/.$f.tmp"
        mv -f "$CONFIG_DIR/.$f.tmp" "$CONFIG_DIR/$f"
    done
fi
if [ "$WRITE_UNIT" = 1 ]; then
    echo "touched_unit=1"
    if [ -f "$UNIT_PATH" ]; then cp -p "$UNIT_PATH" "$CONFIG_DIR/unit.prev"
    else rm -f "$CONFIG_DIR/unit.prev"; fi
    cp "$STAGE/unit" "$UNIT_PATH.tmp" && chmod 644 "$UNIT_PATH.tmp"
    mv -f "$UNIT_PATH.tmp" "$UNIT_PATH"
    systemctl daemon-reload
fi
OLD_PID=$(agent_pid)
T0=$(date +%s.%N)
[ "$SERVICE" = none ] || echo "touched_service=1"
case "$SERVICE" in
    start|restart) start_agent ;;
    reload) reload_agent ;;
esac
if [ "$SERVICE" != none ]; then
    OUT=$(wait_agent "$SERVICE" "$WANT_SHA" "$T0" "$OLD_PID")
    echo "$OUT"
    case "$OUT" in result=ok*) ;; *) exit 1 ;; esac
else
    echo "result=ok"
fi
# keep the release in force and the one before it (for rollback); drop older ones
cur=$(basename "$(readlink "$INSTALL_DIR/current")")
for d in "$INSTALL_DIR"/releases/*; do
    [ -d "$d" ] || continue
    b=$(basename "$d")
    [ "$b" = "$cur" ] || [ "$b" = "$OLD_RELEASE" ] || rm -rf "$d"
done
'''

# Put back the release and policy that ran before this deploy, restart, wait.  After a first
# install there is nothing to go back to: the agent is stopped and the new files removed.
ROLLBACK_BODY = r'''
exec 9>"$INSTALL_DIR/.deploy.lock"
flock -w 30 9 || fail "another deploy holds $INSTALL_DIR/.deploy.lock"
if [ -z "$OLD_RELEASE" ] || [ ! -d "$INSTALL_DIR/releases/$OLD_RELEASE" ]; then
    stop_agent
    [ "$MANAGER" = systemd ] && systemctl disable --quiet "$UNIT_NAME" 2>/dev/null || true
    rm -f "$INSTALL_DIR/current"
    echo "result=stopped"
    exit 0
fi
ln -sfn "releases/$OLD_RELEASE" "$INSTALL_DIR/.current.tmp"
mv -T "$INSTALL_DIR/.current.tmp" "$INSTALL_DIR/current"
if [ "$RESTORE_POLICY" = 1 ]; then
    for f in policy.json policy.yaml; do
        if [ -f "$CONFIG_DIR/$f.prev" ]; then mv -f "$CONFIG_DIR/$f.prev" "$CONFIG_DIR/$f"; fi
    done
fi
if [ "$RESTORE_UNIT" = 1 ] && [ -f "$CONFIG_DIR/unit.prev" ]; then
    cp "$CONFIG_DIR/unit.prev" "$UNIT_PATH.tmp" && chmod 644 "$UNIT_PATH.tmp"
    mv -f "$UNIT_PATH.tmp" "$UNIT_PATH"
    systemctl daemon-reload
fi
if [ "$RESTART" = 0 ]; then  # a refused reload: the agent still enforces the old policy
    echo "result=ok"
    exit 0
fi
OLD_PID=$(agent_pid)
T0=$(date +%s.%N)
start_agent
wait_agent restart "" "$T0" "$OLD_PID"
'''

# Uninstall: whichever manager runs it (a host may have moved from one to the other).
STOP_BODY = r'''
stop_agent
if [ -f "$UNIT_PATH" ]; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        MANAGER=systemd stop_agent
        systemctl disable --quiet "$UNIT_NAME" || fail "systemctl disable $UNIT_NAME failed"
    fi
    rm -f "$UNIT_PATH"
    command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] && systemctl daemon-reload
fi
rm -rf "$INSTALL_DIR" "$CONFIG_DIR" "$RUN_DIR"
[ "$PURGE" = 1 ] && rm -rf "$SPOOL_DIR"
echo "result=ok"
'''


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
              "WAIT_PY": WAIT_PY, "NO_RULES_BUNDLE": text, "NO_RULES_SHA": sha, **extra}
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
        "SERVICE": plan.service,
    }
    return (_preamble(desired.paths, desired.name, desired.manager, extra,
                      desired.start_timeout) + COMMON + install + APPLY_BODY)


def rollback_script(desired: Desired, old_release: str, restore_policy: bool,
                    restart: bool, restore_unit: bool = False) -> str:
    extra = {"OLD_RELEASE": old_release, "RESTORE_POLICY": _flag(restore_policy),
             "RESTART": _flag(restart), "RESTORE_UNIT": _flag(restore_unit)}
    return (_preamble(desired.paths, desired.name, desired.manager, extra,
                      desired.start_timeout) + COMMON + ROLLBACK_BODY)


def uninstall_script(paths: HostPaths, name: str, purge: bool) -> str:
    for p in (paths.install_dir, paths.config_dir, paths.run_dir, paths.spool_dir):
        check_removable(p)
    return (_preamble(paths, name, "supervisor", {"PURGE": _flag(purge)}, 30) + COMMON
            + STOP_BODY)


# Directories uninstall must never remove whole, whatever the inventory says.
_SYSTEM_DIRS = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc",
                "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib",
                "/var/log", "/var/run", "/usr/local", "/usr/lib", "/mnt", "/media"}


def check_removable(path: str) -> None:
    norm = "/" + "/".join(p for p in path.split("/") if p not in ("", "."))
    if not path.startswith("/") or ".." in path.split("/") or norm in _SYSTEM_DIRS:
        raise ValueError(f"refusing to remove {path!r}: edrfleet_*_dir must be an absolute "
                         "directory of its own (fix: e.g. /opt/edrfleet, /etc/edrfleet)")


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
