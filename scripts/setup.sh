#!/usr/bin/env bash
# Idempotent machine setup for edrfleet on Debian 12, as root: packages, a kernel header tree
# for BCC, the kernel filesystems BPF needs, and the project venv.  Safe to run again.
#   --test   also the tools only tests and lint use (shellcheck; rsyslog, which the syslog
#            output's test starts; chromium, which renders the HTML report headless in its
#            test); `make test` and `make lint`
set -euo pipefail
cd "$(dirname "$0")/.."
with_test=0
case "${1:-}" in
  --test) with_test=1 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

log() { printf 'setup: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "setup: run as root (BPF, mounts and apt need it)" >&2; exit 1; }

# --- packages ------------------------------------------------------------------------------
# python3-bpfcc is BCC for the system python.  (PyPI's "bcc" is an unrelated package.)
PKGS=(python3-bpfcc bpfcc-tools bpftool linux-headers-amd64 python3-venv python3-yaml iproute2 sudo
      openssh-server openssh-client qemu-system-x86 qemu-utils debootstrap e2fsprogs
      gcc libc6-dev)  # gcc -static: helpers the kernel and VM tests build (the guest has no compiler)
# Test-only tools, never installed by plain setup or make demo: shellcheck (make lint, the
# unit test of the host scripts), rsyslog (tests/kernel/test_syslog_rsyslog.py starts its own
# rsyslogd) and chromium (the HTML report's headless rendering test).
[ "$with_test" = 0 ] || PKGS+=(shellcheck rsyslog chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [[ " ${missing[*]} " == *" rsyslog "* ]] && [ -d /run/systemd/system ]; then
    # Installed as a test tool only: do not leave it running as this machine's syslog daemon.
    systemctl disable --now rsyslog.service >/dev/null 2>&1 || true
  fi
fi

# --- kernel headers for BCC -----------------------------------------------------------------
# BCC wants /lib/modules/$(uname -r)/build.  When the running kernel has no header package,
# link the installed Debian headers: BCC only needs them to compile; struct offsets come from
# BTF at agent start, never from these headers.
kver=$(uname -r)
mod=/lib/modules/$kver
if [ ! -e "$mod/build/include/linux/kconfig.h" ] && [ ! -e "$mod/source/include/linux/kconfig.h" ]; then
  # shellcheck disable=SC2012  # Debian's header directories: no blanks or newlines to trip ls
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$hdr" ] || { echo "setup: no /usr/src/linux-headers-*-amd64 tree after install" >&2; exit 1; }
  common=${hdr%-amd64}-common
  mkdir -p "$mod"
  ln -sfn "$hdr" "$mod/build"
  [ -d "$common" ] && ln -sfn "$common" "$mod/source"
  log "linked $mod/build -> $hdr"
fi

# --- kernel filesystems ---------------------------------------------------------------------
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/kernel/security || mount -t securityfs securityfs /sys/kernel/security || true
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug || true
if ! awk '$3 == "cgroup2" {found=1} END {exit !found}' /proc/self/mounts; then
  mkdir -p /sys/fs/cgroup/unified
  mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
  log "mounted cgroup2 at /sys/fs/cgroup/unified"
fi

# --- venv -----------------------------------------------------------------------------------
# From the system python, with its site-packages, so `import bcc` works in the venv.
stamp=.venv/.edrfleet-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  [ -x .venv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
  log "venv ready (.venv)"
fi
.venv/bin/python -c 'import bcc' || { echo "setup: the venv cannot import bcc" >&2; exit 1; }
log "ok"
