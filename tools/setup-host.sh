#!/usr/bin/env bash
# Make this machine able to build, run and test Ferrite.
#
# Installs only what is missing: the aarch64-unknown-none(-softfloat) Rust targets, llvm-tools (for
# llvm-objcopy), and QEMU 10 (Debian bookworm ships 7.2, which lacks raspi4b; bookworm-backports
# has 10.x). The backports apt source is derived from the machine's own Debian source, so this
# script names no mirror. Where it cannot install (not root, not Debian), it says exactly what to
# install and fails.
#
# `setup-host.sh sdcard [FIRMWARE_DIR]` (for `make sdcard` / `make netboot`) installs mtools and
# fdisk (sfdisk), which build a FAT image without root or loop devices, and makes Debian's
# `raspi-firmware` package (the Pi's boot firmware, in the non-free-firmware component) known to
# apt, adding a non-free-firmware source derived from the machine's own Debian source when there
# is none; not when FIRMWARE_DIR already holds the firmware (tools/fetch-rpi-firmware.sh).
set -euo pipefail

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

need_qemu_major=10

rust_ready() {
    rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-none &&
        rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-none-softfloat &&
        rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'
}

setup_rust() {
    command -v rustup >/dev/null || die "rustup not found; install Rust from rustup, then re-run"
    for t in aarch64-unknown-none aarch64-unknown-none-softfloat; do
        if ! rustup target list --installed | grep -qx "$t"; then
            say "adding Rust target $t (rustup target add)"
            rustup target add "$t"
        fi
    done
    if ! rustup component list --installed | grep -q '^llvm-tools'; then
        say "adding rustup component llvm-tools (for llvm-objcopy)"
        rustup component add llvm-tools
    fi
}

qemu_major() {
    local v
    v=$(qemu-system-aarch64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p')
    echo "${v:-0}"
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
    else return 1
    fi
}

# Debian's apt source for bookworm, as deb822 or one-line; prints the URIs of the main archive.
debian_uris() {
    local f=/etc/apt/sources.list.d/debian.sources
    if [ -f "$f" ]; then
        awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ && !/bookworm-security/ {
                 if (match($0, /URIs:[^\n]*/)) { s=substr($0, RSTART+5, RLENGTH-5); print s; exit } }' "$f" |
            xargs
    elif [ -f /etc/apt/sources.list ]; then
        awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list
    fi
}

apt_updated=
apt_update() {
    [ -n "$apt_updated" ] && return 0
    say "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
}

add_backports() {
    local src=/etc/apt/sources.list.d/ferrite-bookworm-backports.sources uris
    [ -f "$src" ] && return 0
    grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
    uris=$(debian_uris)
    [ -n "$uris" ] || die "cannot find the Debian bookworm apt source to derive bookworm-backports from"
    say "adding apt source bookworm-backports (same archive as bookworm: $uris) at $src"
    as_root tee "$src" >/dev/null <<SRC
Types: deb
URIs: $uris
Suites: bookworm-backports
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_updated=
}

# Is PKG known to apt with a downloadable candidate?
apt_known() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

# The Raspberry Pi boot firmware is in non-free-firmware, which a minimal Debian source lacks.
add_non_free_firmware() {
    local src=/etc/apt/sources.list.d/ferrite-non-free-firmware.sources uris suite
    [ -f "$src" ] && return 0
    . /etc/os-release
    suite=${VERSION_CODENAME:-}
    [ "$suite" = bookworm ] || die "raspi-firmware is not known to apt; enable the non-free-firmware
setup:   component of Debian $suite in the apt sources, apt-get update, and re-run"
    uris=$(debian_uris)
    [ -n "$uris" ] || die "cannot find the Debian bookworm apt source to add non-free-firmware to"
    say "adding apt source bookworm non-free-firmware (same archive as bookworm: $uris) at $src"
    as_root tee "$src" >/dev/null <<SRC
Types: deb
URIs: $uris
Suites: bookworm bookworm-updates
Components: non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_updated=
}

# mtools and sfdisk to build the SD-card image; raspi-firmware known to apt for its download
# unless the firmware is in $1 already.
setup_sdcard() {
    local missing=() tool need_firmware=1
    for tool in mformat:mtools mcopy:mtools mdir:mtools mtype:mtools sfdisk:fdisk; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    if [ -n "${1:-}" ] && [ -s "$1/start4.elf" ] && [ -s "$1/fixup4.dat" ]; then
        need_firmware=
    fi
    [ ${#missing[@]} -eq 0 ] && [ -z "$need_firmware" ] && return 0
    if [ ${#missing[@]} -gt 0 ] || ! apt_known raspi-firmware; then
        command -v apt-get >/dev/null ||
            die "this is not a Debian system; install mtools and sfdisk, and fetch the Raspberry Pi
setup:   firmware (start4.elf, fixup4.dat) by hand into build/rpi4/firmware/"
        as_root true || die "not root and no sudo; as root run: apt-get install mtools fdisk, and
setup:   enable Debian's non-free-firmware component (for raspi-firmware), then apt-get update"
    fi
    if [ -n "$need_firmware" ] && ! apt_known raspi-firmware; then
        # The lists may just be stale: update before adding a source.
        apt_update
        apt_known raspi-firmware || { add_non_free_firmware; apt_update; }
        apt_known raspi-firmware || die "raspi-firmware is still unknown to apt after adding the
setup:   non-free-firmware component; check the apt sources"
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        apt_update
        say "installing ${missing[*]} (to build the SD-card image without root)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
        for tool in mformat mcopy mdir mtype sfdisk; do
            command -v "$tool" >/dev/null || die "$tool still missing after installing ${missing[*]}"
        done
    fi
}

setup_qemu() {
    [ "$(qemu_major)" -ge "$need_qemu_major" ] && return 0
    local hint="QEMU >= $need_qemu_major with qemu-system-aarch64 (Debian: qemu-system-arm from bookworm-backports)"
    if ! command -v apt-get >/dev/null; then
        die "this is not a Debian system; install $hint by hand"
    fi
    if ! as_root true; then
        die "not root and no sudo; as root run: apt-get install -t bookworm-backports qemu-system-arm"
    fi
    . /etc/os-release
    if [ "${VERSION_CODENAME:-}" = bookworm ]; then
        add_backports
        apt_update
        say "installing qemu-system-arm from bookworm-backports"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -t bookworm-backports qemu-system-arm ipxe-qemu >/dev/null
    else
        apt_update
        say "installing qemu-system-arm"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            qemu-system-arm >/dev/null
    fi
    [ "$(qemu_major)" -ge "$need_qemu_major" ] || die "installed QEMU is $(qemu_major).x; need $hint"
}

what=${1:-all}
case "$what" in
    rust) rust_ready || setup_rust ;;
    qemu) setup_qemu ;;
    sdcard) setup_sdcard "${2:-}" ;;
    all) rust_ready || setup_rust; setup_qemu ;;
    *) die "usage: $0 [rust|qemu|sdcard [FIRMWARE_DIR]|all]" ;;
esac
