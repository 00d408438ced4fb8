# shellcheck shell=sh
# Runs in the VM guest before the LSM smoke: kernel, active LSMs (line 2 must name bpf), bcc,
# and the kernel header tree BCC compiles against.
set -e
uname -r
cat /sys/kernel/security/lsm; echo
python3 -c 'import bcc; print("bcc", bcc.__file__)'
# shellcheck disable=SC2012  # a listing for the reader, not parsed
ls "/lib/modules/$(uname -r)/build" | head -n 5
