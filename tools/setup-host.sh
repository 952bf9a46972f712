#!/usr/bin/env bash
# Make this machine able to build, run and test Ferrite.
#
# Installs only what is missing: the aarch64-unknown-none(-softfloat) Rust targets, llvm-tools (for
# llvm-objcopy), and QEMU 10 (Debian bookworm ships 7.2, which lacks raspi4b; bookworm-backports
# has 10.x). The backports apt source is derived from the machine's own Debian source, so this
# script names no mirror. Where it cannot install (not root, not Debian), it says exactly what to
# install and fails.
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
    all) rust_ready || setup_rust; setup_qemu ;;
    *) die "usage: $0 [rust|qemu|all]" ;;
esac
