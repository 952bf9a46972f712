//! A server-like host tree: MPIDR-numbered CPUs, topology, PMU affinity, PCIe with INTx and
//! MSIs, interrupts-extended, aliases and symbols.

use super::*;

const GIC: u32 = 0x10;
const ITS: u32 = 0x11;

/// A server-like host: MPIDR-numbered CPUs with two address cells, a topology, a shared cache
/// and idle states, a PMU with per-CPU affinity, a PCIe host bridge with INTx and MSIs, an
/// interrupt-extended device, aliases and symbols, a GIC without phandle-holding MBIs.
pub(super) fn server(gic_phandle: bool) -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.add_reservation(0x8000_0000, 0x1000);
    w.begin_node("");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 2);
    w.property_u32("interrupt-parent", GIC);
    w.property_string("model", "acme,server");

    w.begin_node("aliases");
    w.property_string("serial0", "/uart@7000000");
    w.property_string("cpu3", "/cpus/cpu@10001");
    w.property_string("cpu1", "/cpus/cpu@1");
    w.property_string("its", "/gic@2f000000/its@2f020000");
    w.end_node();

    w.begin_node("cpus");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 0);
    w.begin_node("cpu-map");
    w.begin_node("cluster0");
    w.begin_node("core0");
    w.property_u32("cpu", 0x20);
    w.end_node();
    w.end_node();
    w.end_node();
    for (i, mpidr) in [0x0u32, 0x1, 0x1_0000, 0x1_0001].into_iter().enumerate() {
        w.begin_node(&alloc::format!("cpu@{mpidr:x}"));
        w.property_string("device_type", "cpu");
        w.property_string("compatible", "arm,neoverse-n1");
        w.property_cells("reg", &[0, mpidr]);
        w.property_string("enable-method", "psci");
        w.property_u32("next-level-cache", 0x30);
        w.property_u32("cpu-idle-states", 0x31);
        w.property_u32("phandle", 0x20 + i as u32);
        w.end_node();
    }
    w.begin_node("l3-cache");
    w.property_string("compatible", "cache");
    w.property_u32("phandle", 0x30);
    w.end_node();
    w.begin_node("idle-states");
    w.begin_node("cpu-sleep");
    w.property_string("compatible", "arm,idle-state");
    w.property_u32("phandle", 0x31);
    w.end_node();
    w.end_node();
    w.begin_node("cluster1-cpus"); // made up: a /cpus child naming a CPU dom0 loses
    w.property_cells("cpus", &[0x22, 0x23]);
    w.end_node();
    w.end_node();

    w.begin_node("memory@80000000");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0, 0x8000_0000, 0, 0x8000_0000]);
    w.end_node();
    w.begin_node("memory@880000000");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0x8, 0x8000_0000, 0x1, 0x0]);
    w.end_node();

    w.begin_node("gic@2f000000");
    w.property_string("compatible", "arm,gic-v3");
    w.property_u32("#interrupt-cells", 3);
    w.property_empty("interrupt-controller");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 2);
    w.property_empty("ranges");
    w.property_u32("#redistributor-regions", 2);
    w.property_u64("redistributor-stride", 0x4_0000);
    w.property_cells(
        "reg",
        &[
            0,
            0x2f00_0000,
            0,
            0x1_0000,
            0,
            0x2f10_0000,
            0,
            0x10_0000,
            0,
            0x2f30_0000,
            0,
            0x10_0000,
        ],
    );
    w.property_cells("interrupts", &[1, 9, 4]);
    if gic_phandle {
        w.property_u32("phandle", GIC);
    }
    w.begin_node("its@2f020000");
    w.property_string("compatible", "arm,gic-v3-its");
    w.property_empty("msi-controller");
    w.property_u32("#msi-cells", 1);
    w.property_cells("reg", &[0, 0x2f02_0000, 0, 0x2_0000]);
    w.property_u32("phandle", ITS);
    w.end_node();
    w.end_node();

    w.begin_node("pmu");
    w.property_string("compatible", "arm,armv8-pmuv3");
    w.property_cells("interrupts", &[0, 7, 4, 0, 8, 4, 0, 9, 4, 0, 10, 4]);
    w.property_cells("interrupt-affinity", &[0x20, 0x21, 0x22, 0x23]);
    w.end_node();

    w.begin_node("uart@7000000");
    w.property_strings("compatible", &["arm,pl011", "arm,primecell"]);
    w.property_cells("reg", &[0, 0x700_0000, 0, 0x1000]);
    w.property_cells("interrupts", &[0, 1, 4]);
    w.end_node();

    w.begin_node("ethernet@7100000");
    w.property_cells(
        "reg",
        &[0, 0x710_0000, 0, 0x1_0000, 0, 0x710_8000, 0, 0x1000],
    );
    w.property_cells(
        "interrupts-extended",
        &[GIC, 0, 40, 4, GIC, 1, 5, 4, 0x50, 3],
    );
    w.property_u32("msi-parent", ITS);
    w.end_node();

    w.begin_node("gpio@7200000");
    w.property_cells("reg", &[0, 0x720_0000, 0, 0x1000]);
    w.property_empty("interrupt-controller");
    w.property_u32("#interrupt-cells", 1);
    w.property_u32("phandle", 0x50);
    w.property_cells("interrupts", &[0, 41, 4]);
    w.end_node();

    w.begin_node("button");
    w.property_u32("interrupt-parent", 0x50);
    w.property_cells("interrupts", &[3]); // the GPIO's: not an SPI
    w.end_node();

    w.begin_node("framebuffer@80000000");
    w.property_cells("reg", &[0, 0x8000_0000, 0, 0x80_0000]); // in dom0's RAM
    w.end_node();
    w.begin_node("framebuffer@c0000000");
    w.property_string("compatible", "simple-framebuffer");
    w.property_cells("reg", &[0, 0xc000_0000, 0, 0x80_0000]); // in the host's RAM
    w.end_node();

    w.begin_node("pcie@40000000");
    w.property_string("compatible", "pci-host-ecam-generic");
    w.property_string("device_type", "pci");
    w.property_u32("#address-cells", 3);
    w.property_u32("#size-cells", 2);
    w.property_u32("#interrupt-cells", 1);
    w.property_cells("reg", &[0x40, 0x1000_0000, 0, 0x1000_0000]);
    w.property_cells(
        "ranges",
        &[
            0x0100_0000,
            0,
            0,
            0,
            0x3eff_0000,
            0,
            0x1_0000, // I/O
            0x0200_0000,
            0,
            0x1000_0000,
            0,
            0x1000_0000,
            0,
            0x2eff_0000, // 32-bit memory
            0x0300_0000,
            0x80,
            0,
            0x80,
            0,
            0x80,
            0, // 64-bit memory
        ],
    );
    w.property_cells("interrupt-map-mask", &[0x1800, 0, 0, 7]);
    let mut map = Vec::new();
    for pin in 1..=4u32 {
        map.extend([0, 0, 0, pin, GIC, 0, 0, 0, 2 + pin, 4]);
    }
    w.property_cells("interrupt-map", &map);
    w.property_cells("msi-map", &[0, ITS, 0, 0x1_0000]);
    w.property_u32("msi-map-mask", 0xffff);
    w.begin_node("pci@0,0");
    w.property_cells("reg", &[0, 0, 0, 0, 0]);
    w.end_node();
    w.end_node();

    w.begin_node("hypervisor");
    w.property_string("compatible", "xen,xen");
    w.end_node();

    w.begin_node("psci");
    w.property_string("compatible", "arm,psci-1.0");
    w.property_string("method", "smc");
    w.begin_node("power-domain-cpu0");
    w.property_u32("#power-domain-cells", 0);
    w.end_node();
    w.end_node();

    w.begin_node("__symbols__");
    w.property_string("cpu0", "/cpus/cpu@0");
    w.property_string("cpu2", "/cpus/cpu@10000");
    w.property_string("pmu", "/pmu");
    w.end_node();

    w.begin_node("chosen");
    w.property_string("stdout-path", "serial0:115200n8");
    w.property_u64("kaslr-seed", 0x1234_5678_9abc_def0);
    w.end_node();
    w.end_node();
    w.finish()
}

pub(super) fn server_cfg(vcpus: usize) -> Dom0Config<'static> {
    const MEMORY: &[Region] = &[Region::new(0x8000_0000, 0x4000_0000)];
    Dom0Config {
        memory: MEMORY,
        bootargs: "",
        initrd: None,
        vcpus,
        console: Some(r(0x700_0000, 0x1000)),
        gic: GicView::V3 {
            dist: r(0x2f00_0000, 0x1_0000),
            redist: r(0x2f10_0000, vcpus as u64 * 0x2_0000),
        },
        hypervisor: HYP,
    }
}

#[test]
fn server_cpus_and_references() {
    let host = server(true);
    let (dt, m) = gen_parse(&host, &server_cfg(3));
    assert_eq!(m.cpus, psci_cpus(3), "MPIDRs renumbered 0..n");
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let b = &dt.blob;
    assert_eq!(
        child_names(b, "/cpus"),
        ["cpu@0", "cpu@1", "cpu@2", "l3-cache", "idle-states"],
        "cpu-map and the child naming cpu@10001 dropped"
    );
    assert_eq!(prop_cells(b, "/cpus/cpu@2", "reg"), Some(vec![2]));
    assert_eq!(
        prop_cells(b, "/cpus/cpu@2", "phandle"),
        Some(vec![0x22]),
        "phandles kept"
    );
    assert_eq!(
        prop_cells(b, "/cpus/cpu@2", "next-level-cache"),
        Some(vec![0x30])
    );
    assert_eq!(prop_cells(b, "/cpus", "#address-cells"), Some(vec![1]));
    assert!(has_note(&dt, "/cpus/cpu@10000: renamed cpu@2 (vCPU 2)"));
    assert!(has_note(
        &dt,
        "/cpus/cpu@10001: dropped: dom0 has 3 vCPU(s)"
    ));
    assert!(has_note(
        &dt,
        "/cpus/cluster1-cpus: dropped: refers to a CPU"
    ));
    assert!(has_note(
        &dt,
        "/pmu: interrupt-affinity refers to /cpus/cpu@10001, which dom0's tree does not have"
    ));
    assert_eq!(
        prop_cells(b, "/pmu", "interrupt-affinity"),
        Some(vec![0x20, 0x21, 0x22, 0x23]),
        "noted, not changed"
    );

    // Aliases and symbols follow renamed nodes and lose dropped ones.
    assert_eq!(
        prop_str(b, "/aliases", "cpu1").as_deref(),
        Some("/cpus/cpu@1")
    );
    assert_eq!(prop(b, "/aliases", "cpu3"), None);
    assert_eq!(prop(b, "/aliases", "its"), None);
    assert_eq!(
        prop_str(b, "/aliases", "serial0").as_deref(),
        Some("/uart@7000000")
    );
    assert_eq!(
        prop_str(b, "/__symbols__", "cpu2").as_deref(),
        Some("/cpus/cpu@2")
    );
    assert_eq!(prop_str(b, "/__symbols__", "pmu").as_deref(), Some("/pmu"));
    assert!(has_note(&dt, "/__symbols__: cpu2 now /cpus/cpu@2"));
    assert_eq!(
        prop_str(b, "/chosen", "stdout-path").as_deref(),
        Some("serial0:115200n8")
    );
    assert_eq!(
        prop(b, "/chosen", "kaslr-seed"),
        Some(0x1234_5678_9abc_def0u64.to_be_bytes().to_vec())
    );

    // The host's /hypervisor is replaced by Ferrite's.
    assert_eq!(
        prop_str(b, "/hypervisor", "compatible").as_deref(),
        Some("ferrite,hypervisor")
    );
    assert!(has_note(&dt, "/hypervisor: dropped: replaced"));
    assert_eq!(child_names(b, "/psci"), Vec::<String>::new());
    assert_eq!(prop_str(b, "/psci", "method").as_deref(), Some("hvc"));
    assert!(has_note(
        &dt,
        "/psci/power-domain-cpu0: dropped: Ferrite's PSCI node has no children"
    ));
    assert_eq!(reservations(b), vec![r(0x8000_0000, 0x1000)]);
}

#[test]
fn server_gic_and_msi() {
    let host = server(true);
    let (dt, m) = gen_parse(&host, &server_cfg(2));
    assert_eq!(
        m.gic,
        Some(GicInfo::V3 {
            dist: r(0x2f00_0000, 0x1_0000),
            redist: vec![r(0x2f10_0000, 0x4_0000)],
            maintenance_irq: None,
        })
    );
    let b = &dt.blob;
    let gic = "/gic@2f000000";
    assert_eq!(prop(b, gic, "redistributor-stride"), None);
    assert_eq!(prop_cells(b, gic, "#redistributor-regions"), Some(vec![1]));
    assert!(!has_node(b, "/gic@2f000000/its@2f020000"));
    for (node, name) in [
        ("/pcie@40000000", "msi-map"),
        ("/pcie@40000000", "msi-map-mask"),
        ("/ethernet@7100000", "msi-parent"),
    ] {
        assert_eq!(prop(b, node, name), None, "{node} {name}");
    }
    assert!(has_note(&dt, "/pcie@40000000: msi-parent/msi-map removed"));
    assert!(has_note(
        &dt,
        "/ethernet@7100000: msi-parent/msi-map removed"
    ));
    assert_eq!(
        prop(b, "/pcie@40000000", "interrupt-map"),
        prop(&host, "/pcie@40000000", "interrupt-map")
    );
}

#[test]
fn server_passthrough() {
    let host = server(true);
    let (dt, _) = gen_parse(&host, &server_cfg(2));
    assert_eq!(
        dt.passthrough,
        vec![
            Passthrough {
                path: "/pmu".into(),
                regions: vec![],
                spis: vec![39, 40, 41, 42],
            },
            Passthrough {
                path: "/ethernet@7100000".into(),
                regions: vec![r(0x710_0000, 0x1_0000)],
                spis: vec![72],
            },
            Passthrough {
                path: "/gpio@7200000".into(),
                regions: vec![r(0x720_0000, 0x1000)],
                spis: vec![73],
            },
            Passthrough {
                path: "/framebuffer@c0000000".into(),
                regions: vec![r(0xc000_0000, 0x80_0000)],
                spis: vec![],
            },
            Passthrough {
                path: "/pcie@40000000".into(),
                regions: vec![
                    r(0x1000_0000, 0x2f00_0000), // 32-bit memory and I/O windows
                    r(0x40_1000_0000, 0x1000_0000),
                    r(0x80_0000_0000, 0x80_0000_0000),
                ],
                spis: vec![35, 36, 37, 38],
            },
        ],
        "PMU SPIs, interrupts-extended, overlapping regs merged, PCI windows and INTx; \
         not the console, the button (GPIO interrupt), RAM, or the bridge's children"
    );
    assert!(has_note(&dt, "/uart@7000000: Ferrite's console"));
    assert!(has_note(
        &dt,
        "/framebuffer@80000000: the part of its reg inside dom0's RAM is not mapped as MMIO"
    ));
    assert!(has_note(
        &dt,
        "/framebuffer@c0000000: 0xc0000000-0xc07fffff (8 MiB) overlaps host RAM \
         0x80000000-0xffffffff (2048 MiB), which is not dom0's"
    ));
}
