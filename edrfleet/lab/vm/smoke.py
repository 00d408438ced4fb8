"""VM smoke: build the image, boot one VM, check BCC and headers, prove BPF LSM denies with EPERM.

    python -m edrfleet.lab.vm smoke        (or scripts/vm-smoke.sh)

The proof: a BCC program in the guest attaches LSM_PROBE(bprm_check_security) returning -EPERM
for one inode only, a canary copy of /bin/true (inode passed as -DCANARY_INO=...).  bash running
the canary must print "Operation not permitted" and exit 126, /bin/true must still run, and the
canary must still exist.  The VM is stopped (by pid) whatever happens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edrfleet.lab.vm.qemu import REPO, VmError, boot, build_image, copy_to, ssh, stop

LSM_SMOKE = r'''
import json, os, shutil, subprocess, time
from bcc import BPF
PROG = """
#include <linux/fs.h>
#include <linux/binfmts.h>
#include <linux/errno.h>
LSM_PROBE(bprm_check_security, struct linux_binprm *bprm) {
    if (bprm->file->f_inode->i_ino == CANARY_INO)
        return -EPERM;
    return 0;
}
"""
canary = "/root/canary-true"
shutil.copy2("/bin/true", canary)
ino = os.stat(canary).st_ino
t = time.monotonic()
b = BPF(text=PROG, cflags=["-DCANARY_INO=%dUL" % ino])
compile_s = time.monotonic() - t
r = subprocess.run(["bash", "-c", canary], capture_output=True, text=True)
benign = subprocess.run(["bash", "-c", "/bin/true"]).returncode
b.cleanup()
after = subprocess.run(["bash", "-c", canary]).returncode
print(json.dumps({"ino": ino, "compile_s": round(compile_s, 1), "rc": r.returncode,
                  "stderr": r.stderr.strip(), "benign_rc": benign, "after_detach_rc": after,
                  "canary_exists": os.path.exists(canary)}))
'''


def smoke(workdir: Path = REPO / ".edrfleet" / "vm-smoke") -> int:
    t0 = time.monotonic()
    image = build_image()
    build = f"{image.build_seconds:.1f} s" + (" (cached; time of the original build)"
                                              if image.cached else "")
    print(f"smoke: image {image.dir} kernel {image.kernel_release}, build {build}")
    handles = boot(image, 1, workdir)
    h = handles[0]
    try:
        r = ssh(h, "set -e; uname -r; cat /sys/kernel/security/lsm; echo; "
                   "python3 -c 'import bcc; print(\"bcc\", bcc.__file__)'; "
                   "ls /lib/modules/$(uname -r)/build | head -n 5", timeout=300)
        print(r.stdout, r.stderr, sep="", end="")
        if r.returncode or "bpf" not in r.stdout.split("\n")[1].split(","):
            raise VmError(f"guest checks failed (rc {r.returncode}); LSM list must name bpf")
        copy_to(h, LSM_SMOKE, "/root/lsm_smoke.py")
        r = ssh(h, "python3 /root/lsm_smoke.py", timeout=600)
        print(r.stdout, r.stderr, sep="", end="")
        if r.returncode:
            raise VmError(f"lsm smoke failed in the guest (rc {r.returncode})")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        ok = (res["rc"] == 126 and "Operation not permitted" in res["stderr"]
              and res["benign_rc"] == 0 and res["after_detach_rc"] == 0 and res["canary_exists"])
    finally:
        stop(handles)
    print(f"smoke: image build {build}; boot to sshd {h.boot_seconds:.1f} s; "
          f"BCC compile in guest {res['compile_s']:.1f} s; total {time.monotonic() - t0:.1f} s")
    print("smoke: " + ("OK: bash printed 'Operation not permitted', exit 126; canary survived"
                       if ok else f"FAILED: {res}"))
    return 0 if ok else 1
