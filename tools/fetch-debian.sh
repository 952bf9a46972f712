#!/usr/bin/env bash
# Fetch guest software and board files from Debian's arm64 archive, for QEMU runs and tests.
#
# Usage: tools/fetch-debian.sh OUTDIR
#
# Ensures, in OUTDIR (normally build/debian, which git ignores; nothing here is ever committed):
#   bcm2711-rpi-4-b.dtb  the Raspberry Pi 4 B device tree QEMU's raspi4b needs (-dtb), from the
#                        kernel package that linux-image-arm64:arm64 depends on
#   vmlinuz              the arm64 kernel Image from that same package (uncompressed on arm64)
#   busybox              a static arm64 busybox, from busybox-static:arm64
# Downloaded packages are kept in OUTDIR/debs/. When all outputs exist it does nothing.
#
# Method: `dpkg --add-architecture arm64` (if needed), `apt-get update` (only if a package cannot
# be found), `apt-get download PKG:arm64`, then extract only the needed files. Adding the
# architecture and updating need root (or password-less sudo); where that is missing, or on a
# non-Debian host, it says exactly what to run and fails. It names no mirror: apt uses the
# machine's own sources.
set -euo pipefail

say() { echo "fetch: $*" >&2; }
die() { echo "fetch: error: $*" >&2; exit 1; }

# Is output NAME still to be made?
need() { [ ! -s "$out/$1" ]; }

# Print the first existing path among the arguments (globs expanded by the caller), if any.
first() {
    local p
    for p in "$@"; do
        [ -e "$p" ] && { echo "$p"; return 0; }
    done
    return 0
}

if [ $# -ne 1 ] || [ -z "$1" ]; then
    die "usage: $0 OUTDIR   (e.g. $0 build/debian)"
fi
out=$1

dtb_name=bcm2711-rpi-4-b.dtb
outputs=("$dtb_name" vmlinuz busybox)

missing=()
for f in "${outputs[@]}"; do
    [ -s "$out/$f" ] || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then
    say "up to date: $out/{$(IFS=,; echo "${outputs[*]}")}"
    exit 0
fi
say "missing in $out: ${missing[*]}"

# --- host checks -----------------------------------------------------------------------------

manual_hint="on a Debian-based machine run: tools/fetch-debian.sh $out
fetch:   or by hand: get the arm64 packages linux-image-arm64 (its linux-image-<version>-arm64
fetch:   dependency) and busybox-static from Debian, and copy
fetch:   usr/lib/linux-image-*/broadcom/$dtb_name -> $out/$dtb_name,
fetch:   boot/vmlinuz-* -> $out/vmlinuz, bin/busybox -> $out/busybox"
for tool in apt-get apt-cache dpkg dpkg-deb tar; do
    command -v "$tool" >/dev/null || die "'$tool' not found: this is not a Debian system.
fetch:   $manual_hint"
done

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
    else return 1
    fi
}
can_root() { [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; }

if ! { [ "$(dpkg --print-architecture)" = arm64 ] || dpkg --print-foreign-architectures | grep -qx arm64; }; then
    can_root || die "the arm64 architecture is not enabled in dpkg and this is not root.
fetch:   as root run: dpkg --add-architecture arm64 && apt-get update
fetch:   then re-run: $0 $out"
    say "dpkg --add-architecture arm64"
    as_root dpkg --add-architecture arm64
    need_update=1
else
    need_update=
fi

updated=
apt_update() {
    [ -n "$updated" ] && return 0
    can_root || die "apt has no arm64 package lists (or they are stale) and this is not root.
fetch:   as root run: apt-get update
fetch:   then re-run: $0 $out"
    say "apt-get update"
    # A third-party source that cannot be reached must not stop us: the result is checked by
    # looking the packages up again.
    as_root apt-get update -qq >&2 || say "apt-get update reported errors; trying anyway"
    updated=1
}
[ -n "$need_update" ] && apt_update

# Does apt know PKG (e.g. busybox-static:arm64) with a downloadable candidate?
known() {
    local cand
    cand=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}
ensure_known() {
    known "$1" && return 0
    apt_update
    known "$1" || die "package $1 not found even after apt-get update; is Debian's main archive in
fetch:   the apt sources? ($manual_hint)"
}

# --- download --------------------------------------------------------------------------------

debs="$out/debs"
mkdir -p "$debs"

# Print the path of the cached .deb of PKG (name without :arch; call ensure_known first, in this
# shell), downloading it if needed.
deb_of() {
    local pkg=$1 cand ver deb
    cand=$(apt-cache policy "$pkg:arm64" | sed -n 's/^ *Candidate: *//p')
    ver=${cand//:/%3a} # apt-get download escapes an epoch's colon like this
    deb="$debs/${pkg}_${ver}_arm64.deb"
    if [ ! -s "$deb" ]; then
        say "apt-get download $pkg:arm64 ($cand) into $debs/"
        local sandbox=()
        [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
        (cd "$debs" && apt-get download -qq "${sandbox[@]}" "$pkg:arm64" >&2) ||
            die "apt-get download $pkg:arm64 failed"
        [ -s "$deb" ] || deb=$(first "$debs/${pkg}"_*_arm64.deb)
        if [ -z "$deb" ] || [ ! -s "$deb" ]; then
            die "apt-get download $pkg:arm64 left no .deb in $debs/"
        fi
    else
        say "using cached $deb"
    fi
    echo "$deb"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fetch-debian.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Extract the members of DEB matching the given tar patterns into DIR (not the whole package:
# a kernel package is mostly modules, hundreds of MiB unpacked).
extract() {
    local deb=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    say "extracting from $(basename "$deb"): $*"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@" ||
        die "could not extract $* from $deb"
}

# Copy SRC to OUT/NAME atomically.
install_file() {
    local src=$1 name=$2
    cp "$src" "$out/.$name.tmp"
    mv -f "$out/.$name.tmp" "$out/$name"
    say "wrote $out/$name ($(stat -c %s "$out/$name") bytes)"
}

if need "$dtb_name" || need vmlinuz; then
    ensure_known linux-image-arm64:arm64
    # The meta package depends on the real one: linux-image-6.1.0-NN-arm64 (or -unsigned).
    kpkg=$(apt-cache depends linux-image-arm64:arm64 |
        sed -n 's/^ *|\{0,1\}Depends: *<\{0,1\}\(linux-image-[0-9][^ :>]*\).*/\1/p' | head -n1)
    [ -n "$kpkg" ] || die "cannot resolve linux-image-arm64:arm64 to a kernel package
fetch:   (apt-cache depends linux-image-arm64:arm64 shows no linux-image-<version> dependency)"
    say "linux-image-arm64:arm64 depends on $kpkg"
    ensure_known "$kpkg:arm64"
    kdeb=$(deb_of "$kpkg")
    kdir="$tmp/kernel"
    extract "$kdeb" "$kdir" './boot/vmlinuz-*' "./usr/lib/linux-image-*/broadcom/$dtb_name"

    if need "$dtb_name"; then
        dtb=$(first "$kdir"/usr/lib/linux-image-*/broadcom/"$dtb_name")
        [ -n "$dtb" ] || die "$kdeb has no usr/lib/linux-image-*/broadcom/$dtb_name"
        install_file "$dtb" "$dtb_name"
    fi
    if need vmlinuz; then
        img=$(first "$kdir"/boot/vmlinuz-*)
        [ -n "$img" ] || die "$kdeb has no boot/vmlinuz-*"
        # On arm64 this is an uncompressed Image (magic "ARM\x64" at offset 0x38); decompress
        # it should a future package ship it gzipped.
        if gzip -t "$img" 2>/dev/null; then
            say "$(basename "$img") is gzip-compressed; decompressing"
            gzip -dc "$img" >"$tmp/Image"
            img="$tmp/Image"
        fi
        [ "$(od -An -tx1 -j56 -N4 "$img" | tr -d ' \n')" = 41524d64 ] ||
            die "$(basename "$img") is not an arm64 kernel Image (no ARM\\x64 magic at 0x38)"
        command -v file >/dev/null && say "vmlinuz: $(file -b "$img")"
        install_file "$img" vmlinuz
    fi
fi

if need busybox; then
    ensure_known busybox-static:arm64
    bdeb=$(deb_of busybox-static)
    bdir="$tmp/busybox"
    extract "$bdeb" "$bdir" './*bin/busybox'
    bb=$(first "$bdir"/bin/busybox "$bdir"/usr/bin/busybox)
    [ -n "$bb" ] || die "$bdeb has no bin/busybox or usr/bin/busybox"
    command -v file >/dev/null && say "busybox: $(file -b "$bb")"
    install_file "$bb" busybox
    chmod +x "$out/busybox"
fi

for f in "${outputs[@]}"; do
    [ -s "$out/$f" ] || die "$out/$f still missing"
done
say "done: $out/{$(IFS=,; echo "${outputs[*]}")}"
