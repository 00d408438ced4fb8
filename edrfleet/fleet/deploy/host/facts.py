"""Facts of one host in one python3 process (runs on the host, with ``python3 -c``).

No fork per fact: ~25 ms on the host instead of ~25 processes.  Prints one ``key=value`` line
per fact; file contents are base64 (one line).  Reads only.  The paths come from the
environment (facts.sh exports them); parsed by edrfleet/fleet/deploy/facts.py.
"""

import base64
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess

E = os.environ


def out(k, v):
    print(f"{k}={v}")


def read(p, mode="r"):
    try:
        with open(p, mode) as f:
            return f.read()
    except OSError:
        return None


def b64(p):
    d = read(p, "rb")
    return base64.b64encode(d).decode() if d is not None else None


def sha(p):
    d = read(p, "rb")
    return hashlib.sha256(d).hexdigest() if d is not None else ""


def live(t):
    try:
        pid = int((t or "").strip())
        if pid <= 0:
            return ""
        os.kill(pid, 0)
        return pid
    except (ValueError, OSError):
        return ""


rel = os.uname().release
out("kernel_release", rel)
out("lsm", (read("/sys/kernel/security/lsm") or "").strip())
mounts = [line.split() for line in (read("/proc/self/mounts") or "").splitlines()]
out("cgroup2_mount", next((m[1] for m in mounts if len(m) > 2 and m[2] == "cgroup2"), ""))
if (v := b64("/etc/os-release")) is not None:
    out("os_release", v)
out("pid1", (read("/proc/1/comm") or "").strip())
out("uid", os.getuid())
if shutil.which("apt-get"):
    out("apt", 1)
out("python_version", platform.python_version())
if importlib.util.find_spec("bcc") is not None:
    out("python_bcc", 1)
if os.path.exists(f"/lib/modules/{rel}/build"):
    out("kernel_headers", 1)
FILES = E["RELEASE_FILES"].split()  # release.FILES, from the controller
cur = E["INSTALL_DIR"] + "/current"
if os.path.islink(cur):
    out("release_id", os.path.basename(os.readlink(cur)))
    for f in FILES:
        out(f"release_sha256 {f}", sha(f"{cur}/{f}"))
want = E["INSTALL_DIR"] + "/releases/" + E["WANT_RELEASE"]
if E["WANT_RELEASE"] and os.path.isdir(want):
    for f in FILES:
        out(f"wanted_release_sha256 {f}", sha(f"{want}/{f}"))
out("policy_sha256", sha(E["CONFIG_DIR"] + "/policy.json"))
out("policy_yaml_sha256", sha(E["CONFIG_DIR"] + "/policy.yaml"))
if E["WANT_YAML"] and (v := b64(E["CONFIG_DIR"] + "/policy.yaml")) is not None:
    out("policy_yaml", v)
out("unit_sha256", sha(E["UNIT_PATH"]))
if (v := b64(E["SPOOL_DIR"] + "/status.json")) is not None:
    out("status", v)
out("supervisor_pid", live(read(E["RUN_DIR"] + "/supervisor.pid")))
agent = live(read(E["RUN_DIR"] + "/agent.pid"))
if not agent and os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
    r = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", E["UNIT_NAME"]],
                       capture_output=True, text=True)
    agent = live(r.stdout)
out("agent_pid", agent)
