//! Device trees shaped like real machines', built with [`FdtWriter`] so that no binary blobs are
//! needed: QEMU virt (GICv3 and GICv2), a two-bank machine with reservations and boot modules,
//! and a Raspberry Pi 4 whose devices sit behind translating buses.

use alloc::vec::Vec;

use super::FdtWriter;

const GIC_PHANDLE: u32 = 0x8002;

fn root(w: &mut FdtWriter, model: &str) {
    w.begin_node("");
    w.property_u32("interrupt-parent", GIC_PHANDLE);
    w.property_string("model", model);
    w.property_u32("#size-cells", 2);
    w.property_u32("#address-cells", 2);
    w.property_strings("compatible", &["linux,dummy-virt"]);
}

fn psci(w: &mut FdtWriter, method: &str) {
    w.begin_node("psci");
    w.property_u32("migrate", 0xc400_0005);
    w.property_u32("cpu_on", 0xc400_0003);
    w.property_string("method", method);
    w.property_strings("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
    w.end_node();
}

fn cpus(w: &mut FdtWriter, count: u32, method: &str) {
    w.begin_node("cpus");
    w.property_u32("#size-cells", 0);
    w.property_u32("#address-cells", 1);
    w.begin_node("cpu-map");
    w.begin_node("socket0");
    w.end_node();
    w.end_node();
    for i in 0..count {
        w.begin_node(&alloc::format!("cpu@{i}"));
        w.property_u32("reg", i);
        w.property_string("enable-method", method);
        w.property_string("compatible", "arm,cortex-a72");
        w.property_string("device_type", "cpu");
        w.end_node();
    }
    w.end_node();
}

fn timer(w: &mut FdtWriter, flags: u32) {
    w.begin_node("timer");
    w.property_cells(
        "interrupts",
        &[1, 13, flags, 1, 14, flags, 1, 11, flags, 1, 10, flags],
    );
    w.property_empty("always-on");
    w.property_strings("compatible", &["arm,armv8-timer", "arm,armv7-timer"]);
    w.end_node();
}

fn pl011(w: &mut FdtWriter, name: &str, reg: &[u32], interrupts: &[u32]) {
    w.begin_node(name);
    w.property_cells("interrupts", interrupts);
    w.property_cells("reg", reg);
    w.property_strings("compatible", &["arm,pl011", "arm,primecell"]);
    w.end_node();
}

fn qemu_common(w: &mut FdtWriter) {
    psci(w, "smc");
    w.begin_node("memory@40000000");
    w.property_cells("reg", &[0x0, 0x4000_0000, 0x0, 0x4000_0000]);
    w.property_string("device_type", "memory");
    w.end_node();
    pl011(
        w,
        "pl011@9000000",
        &[0x0, 0x0900_0000, 0x0, 0x1000],
        &[0, 1, 4],
    );
    for (i, spi) in [(0u32, 16u32), (1, 17)] {
        w.begin_node(&alloc::format!("virtio_mmio@{:x}", 0x0a00_0000 + i * 0x200));
        w.property_empty("dma-coherent");
        w.property_cells("interrupts", &[0, spi, 1]);
        w.property_cells("reg", &[0x0, 0x0a00_0000 + i * 0x200, 0x0, 0x200]);
        w.property_string("compatible", "virtio,mmio");
        w.end_node();
    }
}

fn qemu_tail(w: &mut FdtWriter) {
    cpus(w, 4, "psci");
    timer(w, 4);
    w.begin_node("aliases");
    w.property_string("serial0", "/pl011@9000000");
    w.end_node();
    w.begin_node("chosen");
    w.property_string("stdout-path", "/pl011@9000000");
    w.property("rng-seed", &[0x5a; 32]);
    w.end_node();
    w.end_node();
}

/// `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -smp 4 -m 1G`.
pub fn qemu_virt_gicv3() -> Vec<u8> {
    let mut w = FdtWriter::new();
    root(&mut w, "linux,dummy-virt");
    qemu_common(&mut w);
    w.begin_node("intc@8000000");
    w.property_u32("phandle", GIC_PHANDLE);
    w.property_cells(
        "reg",
        &[
            0x0,
            0x0800_0000,
            0x0,
            0x1_0000,
            0x0,
            0x080a_0000,
            0x0,
            0x00f6_0000,
        ],
    );
    w.property_u32("#redistributor-regions", 1);
    w.property_string("compatible", "arm,gic-v3");
    w.property_empty("ranges");
    w.property_u32("#size-cells", 2);
    w.property_u32("#address-cells", 2);
    w.property_empty("interrupt-controller");
    w.property_u32("#interrupt-cells", 3);
    w.property_cells("interrupts", &[1, 9, 4]);
    w.begin_node("its@8080000");
    w.property_cells("reg", &[0x0, 0x0808_0000, 0x0, 0x2_0000]);
    w.property_string("compatible", "arm,gic-v3-its");
    w.end_node();
    w.end_node();
    qemu_tail(&mut w);
    w.finish()
}

/// As [`qemu_virt_gicv3`] with `gic-version=2`: a GICv2 with its virtualization extensions.
pub fn qemu_virt_gicv2() -> Vec<u8> {
    let mut w = FdtWriter::new();
    root(&mut w, "linux,dummy-virt");
    qemu_common(&mut w);
    w.begin_node("intc@8000000");
    w.property_u32("phandle", GIC_PHANDLE);
    w.property_cells(
        "reg",
        &[
            0x0,
            0x0800_0000,
            0x0,
            0x1_0000,
            0x0,
            0x0801_0000,
            0x0,
            0x1_0000, //
            0x0,
            0x0803_0000,
            0x0,
            0x1_0000,
            0x0,
            0x0804_0000,
            0x0,
            0x1_0000,
        ],
    );
    w.property_string("compatible", "arm,cortex-a15-gic");
    w.property_empty("interrupt-controller");
    w.property_u32("#interrupt-cells", 3);
    w.property_cells("interrupts", &[1, 9, 0xf04]);
    w.end_node();
    qemu_tail(&mut w);
    w.finish()
}

/// A server-like layout: RAM below and above 4 GiB, firmware reservations of every kind, an
/// initrd and multiboot modules, PSCI over HVC.
pub fn two_banks() -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.add_reservation(0x4000_0000, 0x1_0000);
    w.add_reservation(0x8_8000_0000, 0); // empty: dropped
    root(&mut w, "acme,two-bank");
    psci(&mut w, "hvc");
    w.begin_node("memory@40000000");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0x0, 0x4000_0000, 0x0, 0x8000_0000]);
    w.end_node();
    w.begin_node("memory@880000000");
    w.property_string("device_type", "memory");
    w.property_cells(
        "reg",
        &[0x8, 0x8000_0000, 0x1, 0x0, 0x9, 0x8000_0000, 0x0, 0x0],
    );
    w.end_node();
    w.begin_node("reserved-memory");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 2);
    w.property_empty("ranges");
    w.begin_node("tfa@7e000000");
    w.property_cells("reg", &[0x0, 0x7e00_0000, 0x0, 0x20_0000]);
    w.property_empty("no-map");
    w.end_node();
    w.begin_node("optee@7e200000"); // adjacent to the previous one: merged
    w.property_cells("reg", &[0x0, 0x7e20_0000, 0x0, 0x20_0000]);
    w.end_node();
    w.begin_node("linux,cma");
    w.property_string("compatible", "shared-dma-pool");
    w.property_cells("size", &[0x0, 0x400_0000]);
    w.property_cells("alloc-ranges", &[0x0, 0x4000_0000, 0x0, 0x4000_0000]);
    w.property_empty("reusable");
    w.end_node();
    w.begin_node("disabled@7f000000");
    w.property_cells("reg", &[0x0, 0x7f00_0000, 0x0, 0x1000]);
    w.property_string("status", "disabled");
    w.end_node();
    w.end_node();
    cpus(&mut w, 2, "psci");
    w.begin_node("chosen");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 2);
    w.property_string("bootargs", "ferrite.loglevel=debug dom0_mem=512M");
    w.property_u32("linux,initrd-start", 0x4800_0000);
    w.property_u64("linux,initrd-end", 0x4840_0000);
    w.begin_node("module@50000000");
    w.property_strings("compatible", &["multiboot,kernel", "multiboot,module"]);
    w.property_cells("reg", &[0x0, 0x5000_0000, 0x0, 0x200_0000]);
    w.property_string("bootargs", "console=hvc0 root=/dev/ram0");
    w.end_node();
    w.begin_node("module@52000000");
    w.property_strings("compatible", &["multiboot,ramdisk", "multiboot,module"]);
    w.property_cells("reg", &[0x0, 0x5200_0000, 0x0, 0x80_0000]);
    w.end_node();
    w.begin_node("module@53000000");
    w.property_strings("compatible", &["multiboot,device-tree", "multiboot,module"]);
    w.property_cells("reg", &[0x0, 0x5300_0000, 0x0, 0x1_0000]);
    w.end_node();
    w.begin_node("module@0");
    w.property_strings("compatible", &["multiboot,module"]);
    w.property_cells("reg", &[0x0, 0x0, 0x0, 0x0]); // empty: skipped with a warning
    w.end_node();
    w.end_node();
    w.end_node();
    w.finish()
}

/// Shaped like the Raspberry Pi 4's tree (bcm2711-rpi-4-b.dts as the firmware passes it on):
/// peripherals at VideoCore bus addresses behind `/soc`, `/emmc2bus` and `/scb` ranges.
/// `stdout` is the `stdout-path` to use, if any.
pub fn rpi4(stdout: Option<&str>) -> Vec<u8> {
    const GIC: u32 = 1;
    let mut w = FdtWriter::new();
    w.add_reservation(0x0, 0x1000);
    w.begin_node("");
    w.property_strings("compatible", &["raspberrypi,4-model-b", "brcm,bcm2711"]);
    w.property_string("model", "Raspberry Pi 4 Model B Rev 1.4");
    w.property_u32("interrupt-parent", GIC);
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 1);

    w.begin_node("aliases");
    w.property_string("serial0", "/soc/serial@7e201000");
    w.property_string("serial1", "/soc/serial@7e215040");
    w.end_node();

    w.begin_node("chosen");
    if let Some(path) = stdout {
        w.property_string("stdout-path", path);
    }
    w.property_string("bootargs", "coherent_pool=1M 8250.nr_uarts=1");
    w.end_node();

    w.begin_node("reserved-memory");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 1);
    w.property_empty("ranges");
    w.begin_node("linux,cma");
    w.property_string("compatible", "shared-dma-pool");
    w.property_u32("size", 0x400_0000);
    w.property_empty("reusable");
    w.end_node();
    w.end_node();

    // Not a memory-mapped bus: nothing below it can be located.
    w.begin_node("i2c-mux");
    w.property_u32("#address-cells", 1);
    w.property_u32("#size-cells", 0);
    pl011(&mut w, "serial@50", &[0x50], &[0, 99, 4]);
    w.end_node();

    w.begin_node("soc");
    w.property_string("compatible", "simple-bus");
    w.property_u32("#address-cells", 1);
    w.property_u32("#size-cells", 1);
    w.property_cells(
        "ranges",
        &[
            0x7e00_0000,
            0x0,
            0xfe00_0000,
            0x0180_0000, //
            0x7c00_0000,
            0x0,
            0xfc00_0000,
            0x0200_0000, //
            0x4000_0000,
            0x0,
            0xff80_0000,
            0x0080_0000,
        ],
    );
    w.property_cells("dma-ranges", &[0xc000_0000, 0x0, 0x0, 0x4000_0000]);
    w.begin_node("serial@7e201000");
    w.property_strings("compatible", &["arm,pl011", "arm,primecell"]);
    w.property_cells("reg", &[0x7e20_1000, 0x200]);
    w.property_cells("interrupts", &[0, 121, 4]);
    w.property_string("status", "okay");
    w.end_node();
    w.begin_node("serial@7e201400");
    w.property_strings("compatible", &["arm,pl011", "arm,primecell"]);
    w.property_cells("reg", &[0x7e20_1400, 0x200]);
    w.property_string("status", "disabled");
    w.end_node();
    w.begin_node("serial@7e215040");
    w.property_string("compatible", "brcm,bcm2835-aux-uart");
    w.property_cells("reg", &[0x7e21_5040, 0x40]);
    w.end_node();
    w.begin_node("interrupt-controller@40041000");
    w.property_empty("interrupt-controller");
    w.property_u32("#interrupt-cells", 3);
    w.property_string("compatible", "arm,gic-400");
    w.property_cells(
        "reg",
        &[
            0x4004_1000,
            0x1000,
            0x4004_2000,
            0x2000,
            0x4004_4000,
            0x2000,
            0x4004_6000,
            0x2000,
        ],
    );
    w.property_cells("interrupts", &[1, 9, 0xf04]);
    w.property_u32("phandle", GIC);
    w.end_node();
    w.end_node();

    w.begin_node("emmc2bus");
    w.property_string("compatible", "simple-bus");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 1);
    w.property_cells("ranges", &[0x0, 0x7e00_0000, 0x0, 0xfe00_0000, 0x0180_0000]);
    w.begin_node("mmc@7e340000");
    w.property_cells("reg", &[0x0, 0x7e34_0000, 0x100]);
    w.end_node();
    w.end_node();

    w.begin_node("scb");
    w.property_string("compatible", "simple-bus");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 1);
    w.property_cells(
        "ranges",
        &[
            0x0,
            0x7c00_0000,
            0x0,
            0xfc00_0000,
            0x0380_0000, //
            0x6,
            0x0,
            0x6,
            0x0,
            0x4000_0000,
        ],
    );
    w.begin_node("pcie@7d500000");
    w.property_cells("reg", &[0x0, 0x7d50_0000, 0x9310]);
    w.end_node();
    w.end_node();

    w.begin_node("cpus");
    w.property_u32("#address-cells", 1);
    w.property_u32("#size-cells", 0);
    for (i, release) in [0xd8u32, 0xe0, 0xe8, 0xf0].into_iter().enumerate() {
        w.begin_node(&alloc::format!("cpu@{i}"));
        w.property_string("device_type", "cpu");
        w.property_string("compatible", "arm,cortex-a72");
        w.property_u32("reg", i as u32);
        w.property_string("enable-method", "spin-table");
        w.property_cells("cpu-release-addr", &[0x0, release]);
        w.end_node();
    }
    w.end_node();

    w.begin_node("timer");
    w.property_string("compatible", "arm,armv8-timer");
    w.property_cells(
        "interrupts",
        &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08],
    );
    w.property_empty("arm,cpu-registers-not-fw-configured");
    w.end_node();

    w.begin_node("memory@0");
    w.property_string("device_type", "memory");
    w.property_cells(
        "reg",
        &[0x0, 0x0, 0x3b40_0000, 0x0, 0x4000_0000, 0xbc00_0000],
    );
    w.end_node();

    w.end_node();
    w.finish()
}
