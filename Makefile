# Ferrite: build, run, test.
#
#   make run                 boot Ferrite and its dom0 in QEMU virt (4 CPUs, GICv3); Ctrl-A X quits
#   make run GIC=2 CPUS=2 MEM=2G    other virt shapes;  make run BOARD=rpi4   QEMU raspi4b
#   make run DOM0=none       Ferrite alone
#   make run DOMAINS=FILE    start FILE's domUs at boot (default boards/<board>/domains.toml)
#   make build               build/<board>/ferrite.bin (Ferrite alone, and ferrite.elf for gdb)
#                            and build/<board>/ferrite-dom0.bin (Ferrite with dom0 packed in)
#   make debug               QEMU waiting for gdb on :1234
#   make test                host unit tests + system tests booting the image in QEMU
#   make sdcard BOARD=rpi4   build/rpi4/sdcard.img: a bootable Raspberry Pi 4 SD card (docs/rpi4.md)
#   make netboot BOARD=rpi4 DIR=/srv/tftp    the same boot files in a TFTP directory
#   make hil [HIL_ARGS=...]  the hardware-in-loop scenarios, on QEMU through a pty or on a board
#
# A fresh Debian machine needs nothing else: missing tools are installed by tools/setup-host.sh.

BOARD ?= qemu-virt
BOARDS := qemu-virt rpi4
ifeq ($(filter $(BOARD),$(BOARDS)),)
$(error unknown BOARD '$(BOARD)': choose one of $(BOARDS))
endif
include boards/$(BOARD)/board.mk

PROFILE ?= release
BOOTARGS ?= loglevel=info
# dom0: `ferrite` (guest/dom0, packed into the image), `linux` (Debian's arm64 kernel and a
# busybox initramfs, loaded beside Ferrite by QEMU's guest-loader as U-Boot would) or `none`.
DOM0 ?= ferrite
DOM0_CMDLINE ?= loglevel=info
# The PV domUs the firmware with dom0 starts at boot (docs/domains.md): checked by build.rs and
# packed in; `domu=` options in BOOTARGS replace them. Empty: none.
DOMAINS ?= $(wildcard boards/$(BOARD)/domains.toml)
LINUX_CMDLINE ?= console=ttyAMA0
# Ferrite is built soft-float: EL2 code must never touch the FP/SIMD registers, which hold the
# interrupted guest's state (they are not saved on exits). Guests use the ordinary target.
TARGET := aarch64-unknown-none-softfloat
GUEST_TARGET := aarch64-unknown-none
HOST := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
BUILD := build/$(BOARD)
IMAGE := $(BUILD)/ferrite.bin
ELF := $(BUILD)/ferrite.elf
DOM0_IMAGE := build/guest/dom0.bin
DOMU_IMAGE := build/guest/domu.elf
FIRMWARE_DOM0 := $(BUILD)/ferrite-dom0.bin
DISK := $(BUILD)/disk.img
RUN_IMAGE := $(if $(filter none linux,$(DOM0)),$(IMAGE),$(FIRMWARE_DOM0))
LINUX_KERNEL := build/debian/vmlinuz
LINUX_INITRAMFS := build/linux/initramfs.cpio
comma := ,
# QEMU's option parser wants a literal comma doubled.
LINUX_LOADERS = -device guest-loader,addr=0x50000000,kernel=$(LINUX_KERNEL),bootargs="$(subst $(comma),$(comma)$(comma),$(LINUX_CMDLINE))" \
	-device guest-loader,addr=0x54000000,initrd=$(LINUX_INITRAMFS)
# One cargo target directory per board: each board's image differs only in its early console
# (FERRITE_EARLY_UART), and separate directories keep switching boards from rebuilding.
CARGO_TARGET := target/boards/$(BOARD)
# The firmware with dom0 differs from Ferrite alone in what is packed into it (its own directory
# keeps each from rebuilding the other; tests/tests/bootcfg.rs gives it another one again).
CARGO_TARGET_DOM0 := $(CARGO_TARGET)-dom0
CARGO_PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)
OBJCOPY = $(shell rustc --print sysroot)/lib/rustlib/$(HOST)/bin/llvm-objcopy
QEMU := qemu-system-aarch64
QEMU_ARGS = $(QEMU_BOARD_ARGS) -nographic -no-reboot -semihosting-config enable=on,target=native \
	-kernel $(RUN_IMAGE) -append "$(BOOTARGS)" $(QEMU_DEVICES) \
	$(if $(filter linux,$(DOM0)),$(LINUX_LOADERS)) $(QEMU_EXTRA)

.PHONY: all build bootcfg-test-image dom0-guest domu-guest linux-dom0 run debug test unit-test system-test bench setup setup-rust setup-qemu \
	clippy fmt clean FORCE sdcard netboot hil
all: build

setup: setup-rust setup-qemu
setup-rust:
	@tools/setup-host.sh rust
setup-qemu:
	@tools/setup-host.sh qemu

build: setup-rust
	@mkdir -p $(BUILD)
	FERRITE_EARLY_UART=$(EARLY_UART) cargo build -p ferrite --target $(TARGET) \
		$(CARGO_PROFILE_FLAG) --target-dir $(CARGO_TARGET)
	cp $(CARGO_TARGET)/$(TARGET)/$(PROFILE)/ferrite $(ELF)
	$(OBJCOPY) -O binary $(ELF) $(IMAGE)
	@echo "built $(IMAGE) ($$(stat -c %s $(IMAGE)) bytes)"
	$(MAKE) --no-print-directory domu-guest
	$(MAKE) --no-print-directory dom0-guest
	FERRITE_EARLY_UART=$(EARLY_UART) FERRITE_DOM0_KERNEL=$(abspath $(DOM0_IMAGE)) \
		FERRITE_DOMU_IMAGE=$(abspath $(DOMU_IMAGE)) FERRITE_DOMAINS="$(DOMAINS)" \
		FERRITE_DOM0_CMDLINE="$(DOM0_CMDLINE)" cargo build -p ferrite --target $(TARGET) \
		$(CARGO_PROFILE_FLAG) --target-dir $(CARGO_TARGET_DOM0)
	$(OBJCOPY) -O binary $(CARGO_TARGET_DOM0)/$(TARGET)/$(PROFILE)/ferrite $(FIRMWARE_DOM0)
	@echo "built $(FIRMWARE_DOM0) ($$(stat -c %s $(FIRMWARE_DOM0)) bytes, dom0 and the PV domU packed in, boot domains from $(or $(DOMAINS),nowhere))"

# Ferrite's own dom0 (guest/dom0): one image for every board. Its toolstack builds domains from
# the PV domU image, packed into dom0 (guest/dom0/build.rs), so the domU is built first.
dom0-guest: setup-rust domu-guest
	@mkdir -p build/guest
	FERRITE_DOMU_IMAGE=$(abspath $(DOMU_IMAGE)) cargo build -p ferrite-dom0 --target $(GUEST_TARGET) --release --target-dir target/guest
	$(OBJCOPY) -O binary target/guest/$(GUEST_TARGET)/release/ferrite-dom0 $(DOM0_IMAGE)

# Ferrite's test PV domU (guest/domu): an ELF, loaded as it is by Ferrite's domain builder.
domu-guest: setup-rust
	@mkdir -p build/guest
	cargo build -p ferrite-domu --target $(GUEST_TARGET) --release --target-dir target/guest
	$(OBJCOPY) --strip-all target/guest/$(GUEST_TARGET)/release/ferrite-domu $(DOMU_IMAGE)

# Linux dom0: Debian's kernel and a busybox initramfs with the virtio modules (never committed),
# ferrite-ctl (guest/linux/ctl: a static aarch64 Linux binary, linked by rust-lld with the musl
# target's own C runtime) and the test PV domU as /domu.elf.
LINUX_TARGET := aarch64-unknown-linux-musl
LINUX_CTL := build/linux/ferrite-ctl
linux-dom0: setup-rust domu-guest
	@rustup target list --installed | grep -qx $(LINUX_TARGET) || { \
		echo "setup: adding Rust target $(LINUX_TARGET) (rustup target add)" >&2; \
		rustup target add $(LINUX_TARGET); }
	tools/fetch-debian.sh build/debian
	@mkdir -p build/linux
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
		CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-self-contained=yes -C target-feature=+crt-static" \
		cargo build -p ferrite-ctl --target $(LINUX_TARGET) --release --target-dir target/linux
	$(OBJCOPY) --strip-all target/linux/$(LINUX_TARGET)/release/ferrite-ctl $(LINUX_CTL)
	FERRITE_CTL=$(LINUX_CTL) FERRITE_DOMU=$(DOMU_IMAGE) \
		tools/mk-linux-initramfs.sh build/debian $(LINUX_INITRAMFS)

# dom0's disk: a file QEMU gives it as a virtio-mmio block device.
$(DISK):
	@mkdir -p $(BUILD)
	truncate -s 16M $@

build/debian/%: FORCE
	@tools/fetch-debian.sh build/debian

run: build setup-qemu $(QEMU_BOARD_DEPS) $(if $(filter linux,$(DOM0)),linux-dom0) $(if $(filter none,$(DOM0)),,$(DISK))
	$(QEMU) $(QEMU_ARGS)

debug: build setup-qemu $(QEMU_BOARD_DEPS) $(if $(filter none,$(DOM0)),,$(DISK))
	@echo "QEMU is waiting for gdb. In another terminal:"
	@echo "  gdb-multiarch $(ELF) -ex 'target remote :1234'"
	@echo "(Ferrite relocates itself: for symbols, add-symbol-file $(ELF) -o <load address>;"
	@echo " the load address is printed on the console, 0x40080000 on virt, 0x80000 on rpi4)"
	$(QEMU) $(QEMU_ARGS) -S -gdb tcp::1234

unit-test: setup-rust
	cargo test -p ferrite -p ferrite-abi -p ferrite-dom0 -p ferrite-pv --target $(HOST)

system-test: setup
	$(MAKE) --no-print-directory build BOARD=qemu-virt
	$(MAKE) --no-print-directory build BOARD=rpi4
	$(MAKE) --no-print-directory bootcfg-test-image
	$(MAKE) --no-print-directory linux-dom0
	cargo test -p ferrite-systests --target $(HOST) -- --test-threads=2

test: unit-test system-test

# tests/tests/bootcfg.rs's firmware: qemu-virt's, with tests/fixtures/domains.toml packed in, in
# its own directories (build/bootcfg, target/boards/bootcfg-dom0) so the others are untouched.
bootcfg-test-image:
	$(MAKE) --no-print-directory build BOARD=qemu-virt BUILD=build/bootcfg \
		CARGO_TARGET_DOM0=target/boards/bootcfg-dom0 DOMAINS=tests/fixtures/domains.toml

# Benchmarks: deterministic under -icount, a table in build/bench/results.txt. Not tests.
bench: setup
	$(MAKE) --no-print-directory build BOARD=qemu-virt
	$(MAKE) --no-print-directory linux-dom0
	cargo run -q -p ferrite-systests --target $(HOST) --release --bin bench

# Raspberry Pi 4 boot files (docs/rpi4.md): the Pi firmware from Debian's raspi-firmware, the
# Pi 4 device tree, boards/rpi4/config.txt, cmdline.txt with BOOTARGS, and the image `make run`
# would boot (Ferrite with its boot domains; DOM0=none: Ferrite alone).
SDCARD ?= $(BUILD)/sdcard.img
SDCARD_MIB ?= 64
RPI_FIRMWARE := build/debian/raspi-firmware
ifneq ($(filter sdcard netboot,$(MAKECMDGOALS)),)
ifneq ($(BOARD),rpi4)
$(error make $(filter sdcard netboot,$(MAKECMDGOALS)) writes Raspberry Pi 4 boot files: add BOARD=rpi4)
endif
ifeq ($(DOM0),linux)
$(error DOM0=linux needs QEMU's guest-loader; the Pi firmware loads only Ferrite's image)
endif
endif
MK_SDCARD = tools/mk-sdcard.sh --image $(RUN_IMAGE) --dtb $(PI_DTB) --firmware $(RPI_FIRMWARE) \
	--config boards/rpi4/config.txt --bootargs "$(BOOTARGS)"

sdcard: build
	@tools/setup-host.sh sdcard $(RPI_FIRMWARE)
	@tools/fetch-debian.sh build/debian
	@tools/fetch-rpi-firmware.sh build/debian
	$(MK_SDCARD) --size $(SDCARD_MIB) sdcard $(SDCARD)

netboot: build
	@[ -n "$(DIR)" ] || { echo "make netboot: say where, e.g. DIR=/srv/tftp (see docs/rpi4.md)" >&2; exit 1; }
	@tools/setup-host.sh sdcard $(RPI_FIRMWARE)
	@tools/fetch-debian.sh build/debian
	@tools/fetch-rpi-firmware.sh build/debian
	$(MK_SDCARD) netboot $(DIR)

# The hardware-in-loop scenarios (tests/src/scenarios.rs) against a target: by default QEMU
# (this BOARD) with the console on a pty; HIL_ARGS="--target serial --config FILE" for a board.
HIL_ARGS ?= --target qemu-pty --board $(BOARD)
hil: build setup-qemu $(QEMU_BOARD_DEPS)
	cargo run -q -p ferrite-systests --target $(HOST) --bin hil -- $(HIL_ARGS)

clippy: setup-rust
	cargo clippy -p ferrite --target $(TARGET) --release -- -D warnings
	cargo clippy -p ferrite --target $(HOST) --tests -- -D warnings
	cargo clippy -p ferrite-systests --target $(HOST) --tests -- -D warnings
	cargo clippy -p ferrite-dom0 -p ferrite-domu --target $(GUEST_TARGET) --release -- -D warnings
	cargo clippy -p ferrite-ctl --target $(HOST) -- -D warnings

fmt:
	cargo fmt --all

clean:
	rm -rf build target
