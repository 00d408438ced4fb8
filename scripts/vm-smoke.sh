#!/usr/bin/env bash
# VM smoke (issue 5 groundwork): build the cached Debian 12 image if its recipe changed, boot one
# qemu VM (-accel tcg), check BCC + headers in the guest, prove BPF LSM denies a canary with EPERM
# (bash: "Operation not permitted", exit 126), stop the VM by pid.  Prints the timings.
# Needs root, qemu-system-x86, qemu-utils, debootstrap (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m edrfleet.lab.vm smoke "$@"
