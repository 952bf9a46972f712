#!/usr/bin/env bash
# Write the Raspberry Pi 4 boot files for Ferrite: an SD-card image, or a TFTP directory.
#
# Usage:
#   tools/mk-sdcard.sh [INPUTS] sdcard OUT.img    a whole-card image: an MBR with one bootable
#                                                 FAT32 (LBA, type 0x0c) partition holding the files
#   tools/mk-sdcard.sh [INPUTS] netboot DIR       the same files in DIR, for the Pi 4's network boot
# Inputs (all required):
#   --image FILE      the Ferrite image (build/rpi4/ferrite-dom0.bin: Ferrite with its boot domains)
#   --dtb FILE        bcm2711-rpi-4-b.dtb (tools/fetch-debian.sh)
#   --firmware DIR    start4.elf, fixup4.dat, LICENCE.broadcom (tools/fetch-rpi-firmware.sh)
#   --config FILE     the config.txt template (boards/rpi4/config.txt; @KERNEL@ becomes the image name)
#   --bootargs TEXT   Ferrite's boot options, written to cmdline.txt
# Optional: --size MIB (the card image's size, default 64; the partition starts at 1 MiB).
#
# The files: start4.elf fixup4.dat LICENCE.broadcom bcm2711-rpi-4-b.dtb config.txt cmdline.txt
# and the image under its own name. No root and no loop device: the partition table is written
# with sfdisk into the image file and the file system with mtools at the partition's offset
# (tools/setup-host.sh sdcard installs both).
set -euo pipefail

say() { echo "sdcard: $*" >&2; }
die() { echo "sdcard: error: $*" >&2; exit 1; }
usage() { die "usage: $0 --image F --dtb F --firmware DIR --config F --bootargs TEXT [--size MIB] {sdcard OUT.img | netboot DIR}"; }

image= dtb= firmware= config= bootargs= have_bootargs= size_mib=64
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image=${2-}; shift 2 || usage ;;
        --dtb) dtb=${2-}; shift 2 || usage ;;
        --firmware) firmware=${2-}; shift 2 || usage ;;
        --config) config=${2-}; shift 2 || usage ;;
        --bootargs) bootargs=${2-}; have_bootargs=1; shift 2 || usage ;;
        --size) size_mib=${2-}; shift 2 || usage ;;
        --*) die "unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -eq 2 ] || usage
mode=$1 dest=$2
case "$mode" in sdcard | netboot) ;; *) usage ;; esac
[ -n "$dest" ] || usage
[ -n "$have_bootargs" ] || die "--bootargs is required (it becomes cmdline.txt; it may be empty)"
[[ "$size_mib" =~ ^[0-9]+$ ]] && [ "$size_mib" -ge 40 ] ||
    die "--size $size_mib: a whole number of MiB, at least 40 (FAT32 needs 65525 clusters)"

# Every input, checked up front with what makes it.
need_file() {
    [ -n "$2" ] || die "$1 is required"
    [ -s "$2" ] || die "$1 $2 is missing or empty ($3)"
}
need_file --image "$image" "run make build BOARD=rpi4"
need_file --dtb "$dtb" "run tools/fetch-debian.sh build/debian"
need_file --config "$config" "the template is boards/rpi4/config.txt"
[ -n "$firmware" ] || die "--firmware is required"
for f in start4.elf fixup4.dat LICENCE.broadcom; do
    need_file "--firmware" "$firmware/$f" "run tools/fetch-rpi-firmware.sh build/debian"
done
[ "$(basename "$dtb")" = bcm2711-rpi-4-b.dtb ] ||
    die "--dtb must be named bcm2711-rpi-4-b.dtb (config.txt names it), not $(basename "$dtb")"
case "$bootargs" in *$'\n'*) die "--bootargs must be one line (cmdline.txt is one line)" ;; esac

kernel=$(basename "$image")
case "$kernel" in
    config.txt | cmdline.txt | start4.elf | fixup4.dat | LICENCE.broadcom | bcm2711-rpi-4-b.dtb)
        die "the image may not be called $kernel (a boot file has that name)" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mk-sdcard.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The boot files, staged with their final names.
stage="$tmp/boot"
mkdir "$stage"
cp "$firmware/start4.elf" "$firmware/fixup4.dat" "$firmware/LICENCE.broadcom" "$stage/"
cp "$dtb" "$stage/bcm2711-rpi-4-b.dtb"
cp "$image" "$stage/$kernel"
grep -q '@KERNEL@' "$config" || die "$config has no kernel=@KERNEL@ line"
sed "s/@KERNEL@/$kernel/g" "$config" >"$stage/config.txt"
printf '%s\n' "$bootargs" >"$stage/cmdline.txt"
files=(start4.elf fixup4.dat LICENCE.broadcom bcm2711-rpi-4-b.dtb config.txt cmdline.txt "$kernel")

if [ "$mode" = netboot ]; then
    mkdir -p "$dest"
    for f in "${files[@]}"; do
        cp "$stage/$f" "$dest/.$f.tmp"
        mv -f "$dest/.$f.tmp" "$dest/$f"
    done
    say "wrote ${files[*]} to $dest/ (serve it over TFTP; see docs/rpi4.md)"
    exit 0
fi

for tool in sfdisk mformat mcopy mdir; do
    command -v "$tool" >/dev/null || die "$tool not found: run tools/setup-host.sh sdcard (installs mtools and fdisk)"
done

# One partition from 1 MiB (the usual alignment for SD cards' erase blocks) to the end.
sector=512
start=2048
total=$((size_mib * 1024 * 1024 / sector))
sectors=$((total - start))
img="$tmp/card.img"
truncate -s "${size_mib}M" "$img"
# A fixed disk identifier ("FERR"), so two builds of the same files differ only in file times.
sfdisk --quiet --no-reread --no-tell-kernel "$img" >/dev/null <<TABLE ||
label: dos
label-id: 0x46455252
unit: sectors

start=$start, size=$sectors, type=c, bootable
TABLE
    die "sfdisk could not write the partition table"

# FAT32 needs at least 65525 clusters: one sector per cluster keeps a small card FAT32.
# -h/-s only describe a geometry for the BPB; -H is the partition's start (hidden sectors).
export MTOOLS_SKIP_CHECK=1
part="$img@@$((start * sector))"
mformat -i "$part" -F -c 1 -T "$sectors" -H "$start" -h 64 -s 32 -N 46455252 -v FERRITE :: ||
    die "mformat could not make the FAT32 file system"
for f in "${files[@]}"; do
    mcopy -i "$part" -m "$stage/$f" "::$f" || die "mcopy could not copy $f"
done
say "$(mdir -i "$part" -b :: | wc -l) files on the card: ${files[*]}"

mkdir -p "$(dirname "$dest")"
mv -f "$img" "$dest"
say "wrote $dest (${size_mib} MiB; flash it with dd or bmaptool, see docs/rpi4.md)"
