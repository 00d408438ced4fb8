"""A VM that does not boot is reported with the tail of its console, and nothing is left running."""

from __future__ import annotations

import subprocess

import pytest

from edrfleet.lab.vm import fleet as vm_lab
from edrfleet.lab.vm import qemu as vm


def test_a_guest_without_a_root_filesystem_is_reported_with_its_console_tail(tmp_path):
    image = vm.build_image()
    broken = tmp_path / "image"
    broken.mkdir()
    for name in ("vmlinuz", "initrd.img", "id_ed25519", "ssh_host_ed25519_key.pub"):
        (broken / name).symlink_to(image.dir / name)
    # a blank disk: the kernel boots, the initramfs finds no root filesystem and panics (panic=-1,
    # -no-reboot: qemu exits at once instead of the boot wait running out)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(broken / "rootfs.qcow2"),
                    "1G"], check=True)
    bad = vm.ImageInfo(broken, image.recipe, image.kernel_release, 0.0, True)
    workdir = tmp_path / "lab"
    with pytest.raises(vm.VmError) as err:
        vm.boot(bad, 1, workdir, timeout=120, log=lambda _m: None)
    msg = str(err.value)
    assert msg.startswith("vm0: qemu exited"), msg
    assert "--- console tail" in msg and "/dev/vda does not exist" in msg, msg
    (h,) = vm.load_handles(workdir)
    assert not vm._is_our_qemu(h)  # boot stopped it
    vm_lab.down(workdir)
