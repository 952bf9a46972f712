#!/usr/bin/env bash
# Fetch the Raspberry Pi 4 boot firmware from Debian's raspi-firmware package.
#
# Usage: tools/fetch-rpi-firmware.sh OUTDIR
#
# Ensures, in OUTDIR/raspi-firmware/ (normally build/debian/raspi-firmware, which git ignores;
# nothing here is ever committed):
#   start4.elf, fixup4.dat  the Pi 4's VideoCore firmware, which reads config.txt and starts
#                           the kernel (the Pi 4's first stage is in its EEPROM)
#   LICENCE.broadcom        the package's copyright file: the terms under which the firmware
#                           may be redistributed, copied onto every card beside it
# The .deb is kept in OUTDIR/debs/. When all outputs exist it does nothing.
#
# raspi-firmware (architecture `all`) is in Debian's non-free-firmware component;
# `tools/setup-host.sh sdcard` makes it known to apt. Method: `apt-get download raspi-firmware`,
# then extract only the files above. It names no mirror: apt uses the machine's own sources.
set -euo pipefail

say() { echo "fetch: $*" >&2; }
die() { echo "fetch: error: $*" >&2; exit 1; }

if [ $# -ne 1 ] || [ -z "$1" ]; then
    die "usage: $0 OUTDIR   (e.g. $0 build/debian)"
fi
out=$1
fw="$out/raspi-firmware"
outputs=(start4.elf fixup4.dat LICENCE.broadcom)

missing=()
for f in "${outputs[@]}"; do
    [ -s "$fw/$f" ] || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then
    say "up to date: $fw/{$(IFS=,; echo "${outputs[*]}")}"
    exit 0
fi
say "missing in $fw: ${missing[*]}"

for tool in apt-get apt-cache dpkg-deb tar; do
    command -v "$tool" >/dev/null || die "'$tool' not found: this is not a Debian system.
fetch:   get Debian's raspi-firmware package (non-free-firmware) by hand and copy
fetch:   usr/lib/raspi-firmware/{start4.elf,fixup4.dat} and usr/share/doc/raspi-firmware/copyright
fetch:   (as LICENCE.broadcom) into $fw/"
done

cand=$(apt-cache policy raspi-firmware 2>/dev/null | sed -n 's/^ *Candidate: *//p')
if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    die "apt does not know raspi-firmware (Debian's non-free-firmware component).
fetch:   run tools/setup-host.sh sdcard (as root) first, then re-run: $0 $out"
fi

debs="$out/debs"
mkdir -p "$debs" "$fw"
ver=${cand//:/%3a} # apt-get download escapes an epoch's colon like this
deb="$debs/raspi-firmware_${ver}_all.deb"
if [ ! -s "$deb" ]; then
    say "apt-get download raspi-firmware ($cand) into $debs/"
    sandbox=()
    [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
    (cd "$debs" && apt-get download -qq "${sandbox[@]}" raspi-firmware >&2) ||
        die "apt-get download raspi-firmware failed"
    [ -s "$deb" ] || die "apt-get download raspi-firmware left no $deb"
else
    say "using cached $deb"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fetch-rpi-firmware.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say "extracting from $(basename "$deb"): start4.elf fixup4.dat copyright"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" \
    ./usr/lib/raspi-firmware/start4.elf ./usr/lib/raspi-firmware/fixup4.dat \
    ./usr/share/doc/raspi-firmware/copyright ||
    die "could not extract the Pi 4 firmware from $deb"

# Copy SRC to FW/NAME atomically.
install_file() {
    cp "$1" "$fw/.$2.tmp"
    mv -f "$fw/.$2.tmp" "$fw/$2"
    say "wrote $fw/$2 ($(stat -c %s "$fw/$2") bytes)"
}
install_file "$tmp/usr/lib/raspi-firmware/start4.elf" start4.elf
install_file "$tmp/usr/lib/raspi-firmware/fixup4.dat" fixup4.dat
install_file "$tmp/usr/share/doc/raspi-firmware/copyright" LICENCE.broadcom

for f in "${outputs[@]}"; do
    [ -s "$fw/$f" ] || die "$fw/$f still missing"
done
say "done: $fw/{$(IFS=,; echo "${outputs[*]}")}"
