#!/usr/bin/env bash
# A QEMU raspi4b standing in for a Raspberry Pi 4 on the bench: the `power_cycle` and
# `power_off` commands of a hardware-in-loop board configuration, to try a rig's set-up without
# the hardware (and to test the runner's serial-board path end to end).
#
# Usage:
#   tools/hil-qemu-board.sh on DIR TTY   power-cycle: switch off, then boot what DIR holds with
#                                        the console on the terminal device TTY
#   tools/hil-qemu-board.sh off DIR      switch off
#
# DIR holds what `make netboot BOARD=rpi4 DIR=...` (or tools/hil-install-netboot.sh DIR) writes;
# "booting" it is what the Pi's firmware does with it, as far as QEMU goes: the kernel that
# config.txt's kernel= line names, bcm2711-rpi-4-b.dtb, and cmdline.txt as /chosen/bootargs.
# QEMU runs in the background, its pid in DIR/qemu.pid and its messages in DIR/qemu.log, for at
# most FERRITE_HIL_QEMU_LIFETIME seconds (default 600): a harness killed before it could switch
# the stand-in off does not leave it running for long. FERRITE_HIL_QEMU_ICOUNT=1 adds
# `-icount shift=5,sleep=off` (guest time by instruction count, for tests on a loaded machine).
set -euo pipefail

die() { echo "hil-qemu-board: error: $*" >&2; exit 1; }
usage() { die "usage: $0 on DIR TTY | off DIR"; }

[ $# -ge 2 ] || usage
what=$1 dir=$2
pidfile="$dir/qemu.pid"

switch_off() {
    [ -f "$pidfile" ] || return 0
    local pid
    pid=$(cat "$pidfile")
    rm -f "$pidfile"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    # The pid is timeout(1)'s, which leads QEMU's process group.
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

case "$what" in
    off)
        [ $# -eq 2 ] || usage
        switch_off
        ;;
    on)
        [ $# -eq 3 ] || usage
        tty=$3
        [ -c "$tty" ] || die "$tty is not a terminal device"
        switch_off
        kernel=$(sed -n 's/^kernel=//p' "$dir/config.txt" 2>/dev/null | head -n1)
        [ -n "$kernel" ] || die "$dir/config.txt has no kernel= line (install the boot files first)"
        for f in "$kernel" bcm2711-rpi-4-b.dtb cmdline.txt; do
            [ -s "$dir/$f" ] || die "$dir/$f is missing (install the boot files first)"
        done
        # FERRITE_HIL_QEMU_ICOUNT=1: guest time follows instructions, not the host's clock, so
        # that timing checks (dom0's timer self-check) hold on a busy host.
        icount=
        [ "${FERRITE_HIL_QEMU_ICOUNT:-0}" = 1 ] && icount="-icount shift=5,sleep=off"
        # setsid: QEMU and timeout(1) in a session of their own, away from the caller's group.
        setsid timeout -s KILL "${FERRITE_HIL_QEMU_LIFETIME:-600}" \
            "${FERRITE_QEMU:-qemu-system-aarch64}" -M raspi4b -dtb "$dir/bcm2711-rpi-4-b.dtb" \
            -kernel "$dir/$kernel" -append "$(head -n1 "$dir/cmdline.txt")" \
            -display none -monitor none -serial "$tty" -no-reboot $icount \
            </dev/null >"$dir/qemu.log" 2>&1 &
        echo $! >"$pidfile"
        # A QEMU that cannot start says why at once.
        sleep 0.3
        kill -0 "$(cat "$pidfile")" 2>/dev/null || {
            rm -f "$pidfile"
            die "QEMU did not start: $(cat "$dir/qemu.log")"
        }
        ;;
    *) usage ;;
esac
