# QEMU's `virt` machine: the development board. PL011 at 0x0900_0000, GICv2 or v3, PSCI via SMC.
EARLY_UART := 0x09000000
CPU ?= cortex-a72
GIC ?= 3
CPUS ?= 4
MEM ?= 1G
QEMU_BOARD_ARGS = -M virt,virtualization=on,gic-version=$(GIC) -cpu $(CPU) -smp $(CPUS) -m $(MEM)
# dom0's devices: a virtio-mmio disk (build/qemu-virt/disk.img) and NIC (QEMU user networking).
QEMU_DEVICES = $(if $(filter none,$(DOM0)),,-drive file=$(DISK),if=none,format=raw,id=d0 \
	-device virtio-blk-device,drive=d0 -netdev user,id=n0 -device virtio-net-device,netdev=n0)
