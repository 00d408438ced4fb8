"""Runs in the VM guest (python3 with bcc): proves BPF LSM denies an exec with EPERM.

LSM_PROBE(bprm_check_security) returns -EPERM for one inode only, a canary copy of /bin/true.
Prints one JSON line for edrfleet/lab/vm/smoke.py to judge.
"""

import json
import os
import shutil
import subprocess
import time

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
b = BPF(text=PROG, cflags=[f"-DCANARY_INO={ino}UL"])
compile_s = time.monotonic() - t
r = subprocess.run(["bash", "-c", canary], capture_output=True, text=True)
benign = subprocess.run(["bash", "-c", "/bin/true"]).returncode
b.cleanup()
after = subprocess.run(["bash", "-c", canary]).returncode
print(json.dumps({"ino": ino, "compile_s": round(compile_s, 1), "rc": r.returncode,
                  "stderr": r.stderr.strip(), "benign_rc": benign, "after_detach_rc": after,
                  "canary_exists": os.path.exists(canary)}))
