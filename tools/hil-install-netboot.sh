#!/usr/bin/env bash
# A hardware-in-loop `install` command for a Raspberry Pi 4 that boots from the network: writes
# the boot files for the image and boot options of the coming run into a TFTP directory.
#
# Usage (in a board configuration, see docs/rpi4.md):
#   install = tools/hil-install-netboot.sh /srv/tftp/<the Pi's serial number>
#
# The runner sets FERRITE_IMAGE (the Ferrite image) and FERRITE_BOOTARGS (Ferrite's boot
# options, which become cmdline.txt). The firmware, the device tree and config.txt come from the
# same places as for `make netboot BOARD=rpi4`, which must have run once (it fetches them).
set -euo pipefail

die() { echo "hil-install-netboot: error: $*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: $0 TFTP_DIR"
[ -n "${FERRITE_IMAGE:-}" ] || die "FERRITE_IMAGE is not set (the hil runner sets it)"
[ -n "${FERRITE_BOOTARGS+set}" ] || die "FERRITE_BOOTARGS is not set (the hil runner sets it)"

root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/tools/mk-sdcard.sh" --image "$FERRITE_IMAGE" \
    --dtb "$root/build/debian/bcm2711-rpi-4-b.dtb" --firmware "$root/build/debian/raspi-firmware" \
    --config "$root/boards/rpi4/config.txt" --bootargs "$FERRITE_BOOTARGS" netboot "$1"
