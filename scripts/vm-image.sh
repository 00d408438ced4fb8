#!/usr/bin/env bash
# Build the Debian 12 VM image for the edrfleet VM lab (issue 5).  Called by
# edrfleet/lab/vm/qemu.py:build_image(), which caches the result under
# <repo>/.edrfleet/vm/<recipe-sha256[:16]>/ keyed by this file's text + the package list.
#
#   scripts/vm-image.sh OUT_DIR PKG[,PKG...]
#
# Writes into OUT_DIR (which must be empty):
#   rootfs.qcow2                 ext4 root filesystem (no partition table, no bootloader)
#   vmlinuz, initrd.img          taken out of the tree; qemu boots them with -kernel/-initrd
#   id_ed25519[.pub]             the lab's client key (root's authorized_keys in the guest)
#   ssh_host_ed25519_key.pub     the guest's host key, generated here, for the lab known_hosts
#   kernel-release               e.g. 6.1.0-35-amd64
# Needs root (debootstrap, chroot, file ownership in the tree), debootstrap, mkfs.ext4 >= 1.43
# (-d), qemu-img.  The mirror is the one this machine's apt already uses (override:
# EDRFLEET_DEBIAN_MIRROR).  No loop mounts.
set -euo pipefail

out=${1:?usage: vm-image.sh OUT_DIR PKG[,PKG...]}
pkgs=${2:?usage: vm-image.sh OUT_DIR PKG[,PKG...]}
suite=bookworm

log() { printf 'vm-image: %s\n' "$*"; }
now() { date +%s.%N; }
t0=$(now); tp=$t0
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%6.1f", a - b }'; }
phase() { local t; t=$(now); printf 'vm-image: phase %-12s %s s\n' "$1" "$(secs "$t" "$tp")"; tp=$t; }

[ "$(id -u)" = 0 ] || { echo "vm-image: must run as root" >&2; exit 1; }
for tool in debootstrap mkfs.ext4 qemu-img ssh-keygen; do
  command -v "$tool" >/dev/null || { echo "vm-image: $tool not found" >&2; exit 1; }
done

# The Debian mirror from this machine's apt sources (deb822 "URIs:" or one-line "deb URL").
mirror=${EDRFLEET_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
             2>/dev/null | grep -v '^\s*#' \
           | grep -oE '(https?://[^ ]*/debian)/?( |$)' | grep -v -- '-security' | head -n 1 \
           | tr -d ' ' | sed 's:/$::' || true)
fi
[ -n "$mirror" ] || { echo "vm-image: no Debian mirror in /etc/apt/sources.list*" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -z "$(ls -A "$out")" ] || { echo "vm-image: $out is not empty" >&2; exit 1; }
tree=$out/tree

cleanup() {
  # debootstrap may leave proc/sys mounted in the tree when it fails; unmount only those.
  if [ -d "$tree" ]; then
    awk -v t="$tree" 'index($2, t "/") == 1 {print $2}' /proc/mounts | sort -r \
      | while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$tree"
  fi
}
trap cleanup EXIT

log "mirror $mirror, suite $suite"
log "packages $pkgs"

# --- 1. debootstrap -------------------------------------------------------------------------
debootstrap --variant=minbase --include="$pkgs" "$suite" "$tree" "$mirror" >"$out/debootstrap.log" 2>&1 \
  || { tail -n 40 "$out/debootstrap.log" >&2; echo "vm-image: debootstrap failed" >&2; exit 1; }
phase debootstrap

# --- 2. configure ---------------------------------------------------------------------------
echo edrfleet-vm >"$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tedrfleet-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
  >"$tree/etc/hosts"
printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t0\n' >"$tree/etc/fstab"   # no fsck in minbase
printf 'deb %s %s main\n' "$mirror" "$suite" >"$tree/etc/apt/sources.list"
# qemu user networking: DHCP from slirp, DNS at 10.0.2.3 (no resolved in minbase).
mkdir -p "$tree/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n' >"$tree/etc/systemd/network/20-dhcp.network"
echo 'nameserver 10.0.2.3' >"$tree/etc/resolv.conf"
chroot "$tree" systemctl enable systemd-networkd.service >/dev/null 2>&1
# Nothing in the lab waits for "network online"; timers only cost time under emulation.
for u in systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
         e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer; do
  ln -sfn /dev/null "$tree/etc/systemd/system/$u"
done

# Root: no password (locked), key login only.
chroot "$tree" usermod -p '!' root
ssh-keygen -q -t ed25519 -N '' -C edrfleet-vm-lab -f "$out/id_ed25519"
install -d -m 700 "$tree/root/.ssh"
install -m 600 "$out/id_ed25519.pub" "$tree/root/.ssh/authorized_keys"

# Host key generated here (not at first boot) so the lab can write known_hosts beforehand.
rm -f "$tree"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C root@edrfleet-vm -f "$tree/etc/ssh/ssh_host_ed25519_key"
cp "$tree/etc/ssh/ssh_host_ed25519_key.pub" "$out/ssh_host_ed25519_key.pub"
cat >"$tree/etc/ssh/sshd_config.d/edrfleet.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
# Keep the key we generated: don't let any first-boot helper regenerate it.
rm -f "$tree/etc/systemd/system/multi-user.target.wants/regenerate_ssh_host_keys.service"
phase configure

# --- 3. kernel + initrd out of the tree -----------------------------------------------------
# shellcheck disable=SC2012  # kernel release names: no blanks or newlines to trip ls
kver=$(ls "$tree/lib/modules" | sort -V | tail -n 1)
if [ ! -f "$tree/boot/vmlinuz-$kver" ] || [ ! -f "$tree/boot/initrd.img-$kver" ]; then
  echo "vm-image: no kernel/initrd for $kver in the tree" >&2; exit 1
fi
# build is a symlink (absolute, into /usr/src): resolve it inside the tree, not on this host.
build=$(readlink "$tree/lib/modules/$kver/build" || true)
case $build in /*) build=$tree$build ;; *) build=$tree/lib/modules/$kver/$build ;; esac
[ -f "$build/Makefile" ] \
  || { echo "vm-image: no headers at /lib/modules/$kver/build in the tree" >&2; exit 1; }
cp "$tree/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$tree/boot/initrd.img-$kver" "$out/initrd.img"
echo "$kver" >"$out/kernel-release"
log "kernel $kver"

# --- 4. ext4 image from the tree, then qcow2 ------------------------------------------------
rm -f "$tree"/var/cache/apt/archives/*.deb   # apt lists stay: the guest is offline
used_mb=$(du -sm --one-file-system "$tree" | cut -f1)
size_mb=$(( used_mb * 5 / 4 + 2048 ))     # headroom for the agent, logs, later packages
mkfs.ext4 -q -F -L edrfleet-root -d "$tree" "$out/rootfs.raw" "${size_mb}M"
qemu-img convert -f raw -O qcow2 "$out/rootfs.raw" "$out/rootfs.qcow2"
rm -f "$out/rootfs.raw"
chmod 0444 "$out/rootfs.qcow2"
log "tree ${used_mb} MiB, filesystem ${size_mb} MiB, qcow2 $(du -m "$out/rootfs.qcow2" | cut -f1) MiB"
phase image
printf 'vm-image: phase %-12s %s s\n' total "$(secs "$(now)" "$t0")"
