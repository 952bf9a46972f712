# Raspberry Pi 4 Model B (and QEMU's raspi4b). UART0 (PL011) at 0xfe20_1000, GIC-400,
# spin-table CPU start, no PSCI. QEMU needs the Pi 4 device tree from Debian's kernel package.
EARLY_UART := 0xfe201000
PI_DTB := build/debian/bcm2711-rpi-4-b.dtb
CPUS := 4
MEM := 2G
QEMU_BOARD_ARGS = -M raspi4b -dtb $(PI_DTB)
QEMU_BOARD_DEPS = $(PI_DTB)
