"""VM smoke: build the image, boot one VM, check BCC and headers, prove BPF LSM denies with EPERM.

    python -m edrfleet.lab.vm smoke        (or scripts/vm-smoke.sh)

The proof (guest/lsm_smoke.py, after the checks of guest/checks.sh): a BCC program in the guest
attaches LSM_PROBE(bprm_check_security) returning -EPERM for one inode only, a canary copy of
/bin/true (inode passed as -DCANARY_INO=...).  bash running the canary must print "Operation not
permitted" and exit 126, /bin/true must still run, and the canary must still exist.  The VM is
stopped (by pid) whatever happens.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from edrfleet import paths
from edrfleet.lab.vm.qemu import VmError, boot, build_image, copy_to, ssh, stop

GUEST = resources.files(__package__).joinpath("guest")  # files that run in the guest


def guest_file(name: str) -> str:
    """``guest/checks.sh`` (kernel, LSMs, bcc, headers) or ``guest/lsm_smoke.py``."""
    return GUEST.joinpath(name).read_text(encoding="utf-8")


def smoke(workdir: Path = paths.STATE / "vm-smoke") -> int:
    t0 = time.monotonic()
    image = build_image()
    build = f"{image.build_seconds:.1f} s" + (" (cached; time of the original build)"
                                              if image.cached else "")
    print(f"smoke: image {image.dir} kernel {image.kernel_release}, build {build}")
    handles = boot(image, 1, workdir)
    h = handles[0]
    try:
        r = ssh(h, guest_file("checks.sh"), timeout=300)
        print(r.stdout, r.stderr, sep="", end="")
        if r.returncode or "bpf" not in r.stdout.split("\n")[1].split(","):
            raise VmError(f"guest checks failed (rc {r.returncode}); LSM list must name bpf")
        copy_to(h, guest_file("lsm_smoke.py"), "/root/lsm_smoke.py")
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
