#!/usr/bin/env bash
# Builds dom0 and boots it on bare QEMU virt (entered at EL1, PSCI through hvc), with a
# virtio-blk disk and a virtio-net NIC on QEMU user networking. See docs/dom0.md.
#
#   guest/dom0/run-qemu.sh [GIC=2|3] [CPUS=n] [CPU=cortex-a72|cortex-a53|max] [MEM=512M] [--] [bootargs]
#   e.g. guest/dom0/run-qemu.sh GIC=2 CPUS=1 poweroff
#
# TIMEOUT (seconds, default 30) bounds the run: QEMU is always killed by then.
set -euo pipefail
cd "$(dirname "$0")/../.."

GIC=3 CPUS=4 CPU=cortex-a72 MEM=512M
while [ $# -gt 0 ]; do
    case "$1" in
        GIC=*|CPUS=*|CPU=*|MEM=*) declare "$1"; shift ;;
        --) shift; break ;;
        *) break ;;
    esac
done
BOOTARGS="${*:-poweroff}"
OUT=target/guest/dom0
mkdir -p "$OUT"
cargo build -q -p ferrite-dom0 --target aarch64-unknown-none --release --target-dir target/guest
OBJCOPY="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy"
"$OBJCOPY" -O binary target/guest/aarch64-unknown-none/release/ferrite-dom0 "$OUT/dom0.bin"
[ -f "$OUT/disk.img" ] || qemu-img create -q -f raw "$OUT/disk.img" 8M
exec timeout --foreground "${TIMEOUT:-30}" qemu-system-aarch64 \
    -M "virt,gic-version=$GIC" -cpu "$CPU" -smp "$CPUS" -m "$MEM" -nographic -no-reboot \
    -kernel "$OUT/dom0.bin" -append "$BOOTARGS" \
    -drive "file=$OUT/disk.img,if=none,format=raw,id=d0" -device virtio-blk-device,drive=d0 \
    -netdev user,id=n0 -device virtio-net-device,netdev=n0
