#!/usr/bin/env bash
# Builds Linux dom0's initramfs: Debian's static busybox, guest/linux/init, and the kernel
# modules dom0 needs on QEMU virt (virtio-mmio disk and NIC, ext2/4), taken from the same
# Debian kernel package as the kernel (tools/fetch-debian.sh). Never committed: made at build.
# With FERRITE_CTL and FERRITE_DOMU set, also /bin/ferrite-ctl and /domu.elf.
#
#   [FERRITE_CTL=ferrite-ctl FERRITE_DOMU=domu.elf] tools/mk-linux-initramfs.sh DEBIAN_DIR OUT.cpio
set -euo pipefail
debian=${1:?usage: $0 DEBIAN_DIR OUT.cpio}
out=${2:?usage: $0 DEBIAN_DIR OUT.cpio}
here=$(cd "$(dirname "$0")/.." && pwd)

deb=$(ls "$debian"/debs/linux-image-*-arm64*_arm64.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "mk-linux-initramfs: no kernel package in $debian/debs (run tools/fetch-debian.sh $debian)" >&2; exit 1; }
[ -x "$debian/busybox" ] || { echo "mk-linux-initramfs: no $debian/busybox" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,lib/modules,proc,sys,dev,mnt,tmp,root}
cp "$debian/busybox" "$root/bin/busybox"
cp "$here/guest/linux/init" "$root/init"
# The toolstack (make linux-dom0 builds it) and a PV domU image for it to start.
[ -z "${FERRITE_CTL:-}" ] || cp "$FERRITE_CTL" "$root/bin/ferrite-ctl"
[ -z "${FERRITE_DOMU:-}" ] || cp "$FERRITE_DOMU" "$root/domu.elf"
chmod 755 "$root/init" "$root/bin/busybox"

mods="drivers/virtio/virtio_mmio drivers/block/virtio_blk net/core/failover drivers/net/net_failover
      drivers/net/virtio_net lib/crc16 fs/mbcache fs/jbd2/jbd2 crypto/crc32c_generic fs/ext4/ext4"
want=()
for m in $mods; do want+=("./lib/modules/*/kernel/$m.ko"); done
tmp=$(mktemp -d)
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards "${want[@]}"
for m in $mods; do
    f=$(ls "$tmp"/lib/modules/*/kernel/"$m".ko)
    cp "$f" "$root/lib/modules/$(basename "$f")"
done
rm -rf "$tmp"

cd "$here"
cargo run -q -p ferrite-systests --target "$(rustc -vV | sed -n 's/^host: //p')" --bin mkcpio -- "$root" "$out"
echo "mk-linux-initramfs: $out ($(stat -c %s "$out") bytes)" >&2
