//! dom0 trees generated from the fixture machines (and, opt-in, from real blobs), read back
//! with `dt::parse` and inspected node by node.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::super::fixtures;
use super::super::tree::Tree;
use super::super::{
    Conduit, CpuInfo, DtError, EnableMethod, FdtWriter, GicInfo, MachineInfo, parse, validate,
};
use super::*;

mod robustness;
mod server_tree;
use server_tree::{server, server_cfg};

const MIB: u64 = 1 << 20;

fn r(start: u64, size: u64) -> Region {
    Region::new(start, size)
}

const HYP: HypervisorNode = HypervisorNode {
    abi_major: 1,
    abi_minor: 2,
    event_ppi: 31,
    grant_window: None,
    ctrl_page: None,
};

const QEMU_MEMORY: &[Region] = &[Region::new(0x4800_0000, 256 * MIB)];

fn qemu_v3_view(vcpus: usize) -> GicView {
    GicView::V3 {
        dist: r(0x800_0000, 0x1_0000),
        redist: r(0x80a_0000, vcpus as u64 * 0x2_0000),
    }
}

fn qemu_v2_view() -> GicView {
    GicView::V2 {
        dist: r(0x800_0000, 0x1_0000),
        cpu: r(0x801_0000, 0x1_0000),
    }
}

fn qemu_cfg(vcpus: usize, gic: GicView) -> Dom0Config<'static> {
    Dom0Config {
        memory: QEMU_MEMORY,
        bootargs: "console=ttyAMA0 earlycon",
        initrd: Some(r(0x4c00_0000, 0x40_0000)),
        vcpus,
        console: Some(r(0x900_0000, 0x1000)),
        gic,
        hypervisor: HYP,
    }
}

/// Generates, checks the blob is structurally valid, and parses it back.
fn gen_parse(host: &[u8], cfg: &Dom0Config) -> (Dom0Dt, MachineInfo) {
    let dt = generate(host, cfg).unwrap();
    validate::check(&dt.blob).expect("dom0's blob is valid");
    let m = parse(&dt.blob).unwrap();
    (dt, m)
}

/// Runs `f` on the blob's indexed tree.
fn with_tree<R>(blob: &[u8], f: impl FnOnce(&Tree<'_, '_>) -> R) -> R {
    let fdt = fdt::Fdt::new(blob).unwrap();
    let tree = Tree::new(&fdt).unwrap();
    f(&tree)
}

/// The node at exactly `path` (unit addresses included).
fn node(t: &Tree<'_, '_>, path: &str) -> Option<usize> {
    t.find_path(path).filter(|&n| t.path(n) == path)
}

fn has_node(blob: &[u8], path: &str) -> bool {
    with_tree(blob, |t| node(t, path).is_some())
}

fn prop(blob: &[u8], path: &str, name: &str) -> Option<Vec<u8>> {
    with_tree(blob, |t| {
        let n = node(t, path).unwrap_or_else(|| panic!("no node {path}"));
        t.prop(n, name).map(<[u8]>::to_vec)
    })
}

fn prop_cells(blob: &[u8], path: &str, name: &str) -> Option<Vec<u32>> {
    prop(blob, path, name).map(|v| plan::cells(&v))
}

fn prop_str(blob: &[u8], path: &str, name: &str) -> Option<String> {
    prop(blob, path, name).map(|v| {
        String::from_utf8(v)
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    })
}

fn child_names(blob: &[u8], path: &str) -> Vec<String> {
    with_tree(blob, |t| {
        let n = node(t, path).unwrap();
        t.children(n).map(|c| t.nodes[c].name.to_string()).collect()
    })
}

fn reservations(blob: &[u8]) -> Vec<Region> {
    validate::check(blob).unwrap().reservations
}

fn psci_cpus(n: u64) -> Vec<CpuInfo> {
    (0..n)
        .map(|mpidr| CpuInfo {
            mpidr,
            enable: EnableMethod::Psci,
        })
        .collect()
}

fn has_note(dt: &Dom0Dt, needle: &str) -> bool {
    dt.notes.iter().any(|n| n.contains(needle))
}

fn passthrough<'d>(dt: &'d Dom0Dt, path: &str) -> Option<&'d Passthrough> {
    dt.passthrough.iter().find(|p| p.path == path)
}

#[test]
fn qemu_virt_gicv3() {
    let host = fixtures::qemu_virt_gicv3();
    let cfg = qemu_cfg(2, qemu_v3_view(2));
    let (dt, m) = gen_parse(&host, &cfg);
    let host_m = parse(&host).unwrap();

    assert_eq!(m.memory, QEMU_MEMORY);
    assert_eq!(m.cpus, psci_cpus(2));
    let psci = m.psci.unwrap();
    assert_eq!(
        (psci.conduit, psci.compatible.as_str()),
        (Conduit::Hvc, "arm,psci-1.0")
    );
    assert_eq!(
        m.gic,
        Some(GicInfo::V3 {
            dist: r(0x800_0000, 0x1_0000),
            redist: vec![r(0x80a_0000, 0x4_0000)],
            maintenance_irq: None,
        })
    );
    assert_eq!(m.bootargs, "console=ttyAMA0 earlycon");
    assert_eq!(m.initrd, Some(r(0x4c00_0000, 0x40_0000)));
    assert_eq!(m.uart, host_m.uart, "the console node stays");
    assert_eq!(m.timer, host_m.timer, "the timer node stays");
    assert_eq!(m.model, host_m.model);
    assert!(m.reserved.is_empty());
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);

    let b = &dt.blob;
    assert_eq!(child_names(b, "/cpus"), ["cpu@0", "cpu@1"], "cpu-map gone");
    assert_eq!(prop_cells(b, "/cpus", "#address-cells"), Some(vec![1]));
    assert_eq!(prop_cells(b, "/cpus", "#size-cells"), Some(vec![0]));
    assert!(!has_node(b, "/intc@8000000/its@8080000"));
    let gic = "/intc@8000000";
    assert_eq!(prop_cells(b, gic, "#redistributor-regions"), Some(vec![1]));
    assert_eq!(prop(b, gic, "interrupts"), None);
    assert_eq!(prop_cells(b, gic, "phandle"), Some(vec![0x8002]));
    assert_eq!(prop_cells(b, gic, "#interrupt-cells"), Some(vec![3]));
    assert_eq!(prop(b, gic, "interrupt-controller"), Some(vec![]));
    assert_eq!(
        prop_cells(b, "/memory@48000000", "reg"),
        Some(vec![0, 0x4800_0000, 0, 0x1000_0000])
    );
    assert!(!has_node(b, "/memory@40000000"));
    assert_eq!(
        prop_str(b, "/chosen", "stdout-path").as_deref(),
        Some("/pl011@9000000")
    );
    assert_eq!(prop(b, "/chosen", "rng-seed"), Some(vec![0x5a; 32]));
    assert_eq!(
        prop(b, "/chosen", "linux,initrd-end"),
        Some(0x4c40_0000u64.to_be_bytes().to_vec()),
        "initrd bounds are 64-bit"
    );
    assert_eq!(
        prop(b, "/psci", "compatible"),
        Some(b"arm,psci-1.0\0arm,psci-0.2\0arm,psci\0".to_vec())
    );
    assert_eq!(reservations(b), vec![]);
    // The root's own properties are the host's.
    for name in [
        "interrupt-parent",
        "compatible",
        "#address-cells",
        "#size-cells",
    ] {
        assert_eq!(prop(b, "/", name), prop(&host, "/", name), "{name}");
    }
    for note in [
        "/memory@40000000: replaced by /memory@48000000",
        "/cpus/cpu@2: dropped: dom0 has 2 vCPU(s)",
        "/cpus/cpu-map: dropped",
        "/intc@8000000/its@8080000: dropped",
        "/psci: replaced",
        "/hypervisor: added",
        "/pl011@9000000: Ferrite's console",
    ] {
        assert!(has_note(&dt, note), "{note:?} not in {:#?}", dt.notes);
    }
}

#[test]
fn qemu_virt_gicv2() {
    let host = fixtures::qemu_virt_gicv2();
    let (dt, m) = gen_parse(&host, &qemu_cfg(4, qemu_v2_view()));
    assert_eq!(
        m.gic,
        Some(GicInfo::V2 {
            dist: r(0x800_0000, 0x1_0000),
            cpu: r(0x801_0000, 0x1_0000),
            hyp: None,
            vcpu: None,
            maintenance_irq: None,
        })
    );
    assert_eq!(m.cpus, psci_cpus(4));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let b = &dt.blob;
    assert_eq!(
        prop_cells(b, "/hypervisor", "interrupts"),
        Some(vec![1, 15, 0xf04]),
        "GICv2: CPU mask for 4 vCPUs, level-high"
    );
    assert_eq!(prop(b, "/intc@8000000", "#redistributor-regions"), None);
    assert_eq!(
        child_names(b, "/cpus"),
        ["cpu@0", "cpu@1", "cpu@2", "cpu@3"]
    );

    let (dt, _) = gen_parse(&host, &qemu_cfg(2, qemu_v2_view()));
    assert_eq!(
        prop_cells(&dt.blob, "/hypervisor", "interrupts"),
        Some(vec![1, 15, 0x304]),
        "the CPU mask follows the vCPU count"
    );

    // A GICv3 host whose dom0 sees a GICv2 (through the v3 CPU interface's legacy support).
    let (dt, m) = gen_parse(&fixtures::qemu_virt_gicv3(), &qemu_cfg(2, qemu_v2_view()));
    assert!(matches!(m.gic, Some(GicInfo::V2 { hyp: None, .. })));
    assert_eq!(
        prop(&dt.blob, "/intc@8000000", "#redistributor-regions"),
        None
    );
    assert!(has_note(
        &dt,
        "/intc@8000000: compatible now arm,cortex-a15-gic"
    ));
}

#[test]
fn hypervisor_node() {
    let host = fixtures::qemu_virt_gicv3();
    let (dt, _) = gen_parse(&host, &qemu_cfg(2, qemu_v3_view(2)));
    let b = &dt.blob;
    let h = "/hypervisor";
    assert_eq!(
        prop_str(b, h, "compatible").as_deref(),
        Some("ferrite,hypervisor")
    );
    assert_eq!(prop_cells(b, h, "ferrite,abi-version"), Some(vec![1, 2]));
    assert_eq!(prop_str(b, h, "ferrite,conduit").as_deref(), Some("hvc"));
    assert_eq!(prop_cells(b, h, "interrupts"), Some(vec![1, 15, 4]));
    assert_eq!(prop_cells(b, h, "interrupt-parent"), Some(vec![0x8002]));
    assert_eq!(
        prop(b, h, "ferrite,grant-window"),
        None,
        "no window configured"
    );

    // A grant window: address and size, two cells each.
    let mut cfg = qemu_cfg(2, qemu_v3_view(2));
    cfg.hypervisor.grant_window = Some(Region::new(0x1_7f00_0000, 16 << 20));
    let (dt, _) = gen_parse(&host, &cfg);
    assert_eq!(
        prop_cells(&dt.blob, h, "ferrite,grant-window"),
        Some(vec![1, 0x7f00_0000, 0, 0x0100_0000])
    );

    // A control page: a root node, `reg` in the root's cells (2 and 2 on QEMU virt), found by
    // its compatible, not passed through.
    let ctrl = "/ferrite-ctrl@5ee00000";
    assert!(
        with_tree(&dt.blob, |t| node(t, ctrl).is_none()),
        "no control page configured"
    );
    let mut cfg = qemu_cfg(2, qemu_v3_view(2));
    cfg.hypervisor.ctrl_page = Some(Region::new(0x5ee0_0000, 0x1000));
    let (dt, _) = gen_parse(&host, &cfg);
    assert_eq!(
        prop(&dt.blob, ctrl, "compatible"),
        Some(b"ferrite,ctrl\0generic-uio\0".to_vec())
    );
    assert_eq!(
        prop_cells(&dt.blob, ctrl, "reg"),
        Some(vec![0, 0x5ee0_0000, 0, 0x1000])
    );
    assert_eq!(prop(&dt.blob, ctrl, "interrupts"), None);
    assert!(has_note(
        &dt,
        "/ferrite-ctrl@5ee00000: added: dom0's control page"
    ));
    assert!(
        dt.passthrough
            .iter()
            .all(|p| !p.path.contains("ferrite-ctrl"))
    );

    // A PPI out of range leaves the interrupt out, with a note.
    let mut cfg = qemu_cfg(2, qemu_v3_view(2));
    cfg.hypervisor.event_ppi = 40;
    let (dt, _) = gen_parse(&host, &cfg);
    assert_eq!(prop(&dt.blob, h, "interrupts"), None);
    assert!(has_note(
        &dt,
        "/hypervisor: no event interrupt: INTID 40 is not a PPI"
    ));
}

#[test]
fn qemu_passthrough() {
    let host = fixtures::qemu_virt_gicv3();
    let (dt, _) = gen_parse(&host, &qemu_cfg(2, qemu_v3_view(2)));
    assert_eq!(
        dt.passthrough,
        vec![
            Passthrough {
                path: "/virtio_mmio@a000000".into(),
                regions: vec![r(0xa00_0000, 0x200)],
                spis: vec![48],
            },
            Passthrough {
                path: "/virtio_mmio@a000200".into(),
                regions: vec![r(0xa00_0200, 0x200)],
                spis: vec![49],
            },
        ],
        "neither the console, nor the GIC and its ITS, nor memory"
    );
}

fn rpi4_cfg(memory: &[Region]) -> Dom0Config<'_> {
    Dom0Config {
        memory,
        bootargs: "console=ttyAMA0,115200",
        initrd: None,
        vcpus: 4,
        console: Some(r(0xfe20_1000, 0x200)),
        gic: GicView::V2 {
            dist: r(0xff84_1000, 0x1000),
            cpu: r(0xff84_2000, 0x2000),
        },
        hypervisor: HYP,
    }
}

#[test]
fn raspberry_pi_4() {
    let host = fixtures::rpi4(Some("serial0:115200n8"));
    let memory = [r(0x1000_0000, 0x2000_0000), r(0x4000_0000, 0x4000_0000)];
    let (dt, m) = gen_parse(&host, &rpi4_cfg(&memory));
    assert_eq!(m.memory, memory);
    assert_eq!(
        m.cpus,
        psci_cpus(4),
        "spin-table CPUs are PSCI CPUs for dom0"
    );
    assert_eq!(m.psci.map(|p| p.conduit), Some(Conduit::Hvc), "created");
    assert_eq!(
        m.gic,
        Some(GicInfo::V2 {
            dist: r(0xff84_1000, 0x1000),
            cpu: r(0xff84_2000, 0x2000),
            hyp: None,
            vcpu: None,
            maintenance_irq: None,
        })
    );
    assert_eq!(m.uart.map(|u| u.base), Some(0xfe20_1000));
    assert_eq!(
        m.ignored_reserved,
        Vec::<String>::new(),
        "/reserved-memory gone"
    );
    assert_eq!(m.reserved, vec![], "memreserve at 0 is outside dom0's RAM");

    let b = &dt.blob;
    let gic = "/soc/interrupt-controller@40041000";
    assert_eq!(
        prop_cells(b, gic, "reg"),
        Some(vec![0x4004_1000, 0x1000, 0x4004_2000, 0x2000]),
        "written back in /soc's bus addresses"
    );
    assert_eq!(prop_cells(b, gic, "phandle"), Some(vec![1]));
    assert_eq!(prop(b, "/cpus/cpu@0", "cpu-release-addr"), None);
    assert_eq!(
        prop_str(b, "/cpus/cpu@3", "enable-method").as_deref(),
        Some("psci")
    );
    assert!(!has_node(b, "/reserved-memory"));
    assert_eq!(
        prop_cells(b, "/memory@10000000", "reg"),
        Some(vec![
            0,
            0x1000_0000,
            0x2000_0000,
            0,
            0x4000_0000,
            0x4000_0000
        ]),
        "root #size-cells is 1"
    );
    assert_eq!(
        prop_cells(b, "/hypervisor", "interrupt-parent"),
        Some(vec![1])
    );
    assert_eq!(
        prop_str(b, "/soc/serial@7e201400", "status").as_deref(),
        Some("disabled"),
        "disabled nodes are copied"
    );
    assert_eq!(
        prop(b, "/soc", "ranges"),
        prop(&host, "/soc", "ranges"),
        "buses are copied"
    );

    let paths: Vec<&str> = dt.passthrough.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/soc/serial@7e215040",
            "/emmc2bus/mmc@7e340000",
            "/scb/pcie@7d500000"
        ],
        "not the console, the disabled UART, the GIC or the I2C device"
    );
    assert_eq!(
        passthrough(&dt, "/soc/serial@7e215040").unwrap().regions,
        vec![r(0xfe21_5040, 0x40)]
    );
    assert_eq!(
        passthrough(&dt, "/emmc2bus/mmc@7e340000").unwrap().regions,
        vec![r(0xfe34_0000, 0x100)]
    );
    assert!(has_note(
        &dt,
        "/i2c-mux/serial@50: not passed through: bus /i2c-mux has no ranges"
    ));
    assert!(has_note(&dt, "/psci: added"));
    assert!(has_note(
        &dt,
        "/cpus/cpu@0: enable-method spin-table replaced by psci"
    ));
    assert!(has_note(&dt, "/memreserve/ 0x0-0xfff (4 KiB): dropped"));
}

#[test]
fn two_banks_memory_chosen_and_memreserve() {
    let host = fixtures::two_banks();
    // The host reserves 0x4000_0000 +64 KiB by memreserve: inside dom0's first bank.
    let memory = [r(0x4000_0000, 0x2000_0000), r(0x8_8000_0000, 0x4000_0000)];
    let cfg = Dom0Config {
        memory: &memory,
        bootargs: "root=/dev/vda",
        initrd: None,
        vcpus: 1,
        console: None,
        gic: qemu_v2_view(),
        hypervisor: HYP,
    };
    let (dt, m) = gen_parse(&host, &cfg);
    assert_eq!(m.memory, memory);
    assert_eq!(
        m.reserved,
        vec![r(0x4000_0000, 0x1_0000)],
        "memreserve kept"
    );
    assert!(m.modules.is_empty());
    assert_eq!(m.initrd, None, "the host's initrd is not dom0's");
    assert_eq!(m.bootargs, "root=/dev/vda");
    assert_eq!(m.cpus, psci_cpus(1));
    assert_eq!(m.psci.map(|p| p.conduit), Some(Conduit::Hvc));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let b = &dt.blob;
    assert_eq!(
        child_names(b, "/chosen"),
        Vec::<String>::new(),
        "modules gone"
    );
    assert_eq!(prop(b, "/chosen", "linux,initrd-start"), None);
    assert!(!has_node(b, "/reserved-memory"));
    assert!(!has_node(b, "/memory@880000000"));
    assert!(has_node(b, "/memory@40000000"));
    assert_eq!(
        prop_cells(b, "/hypervisor", "ferrite,abi-version"),
        Some(vec![1, 2])
    );
    assert_eq!(
        prop(b, "/hypervisor", "interrupts"),
        None,
        "no GIC: no event interrupt"
    );
    assert!(has_note(&dt, "/chosen/module@50000000: dropped"));
    assert!(has_note(&dt, "/reserved-memory: dropped"));
    assert!(has_note(
        &dt,
        "/memory@40000000, /memory@880000000: replaced by /memory@40000000: dom0's 2 bank(s)"
    ));
    assert!(dt.passthrough.is_empty());

    // The same reservation is dropped when dom0's RAM does not cover it.
    let memory = [r(0x6000_0000, 0x1000_0000)];
    let cfg = Dom0Config {
        memory: &memory,
        ..cfg
    };
    let (dt, m) = gen_parse(&host, &cfg);
    assert_eq!(m.reserved, vec![]);
    assert!(has_note(
        &dt,
        "/memreserve/ 0x40000000-0x4000ffff (64 KiB): dropped: not inside dom0's RAM"
    ));
}

#[test]
fn gic_without_phandle_gets_one() {
    let host = server(false);
    let (dt, m) = gen_parse(&host, &server_cfg(2));
    assert!(m.gic.is_some());
    let highest = 0x50; // the GPIO's
    let b = &dt.blob;
    assert_eq!(
        prop_cells(b, "/gic@2f000000", "phandle"),
        Some(vec![highest + 1])
    );
    assert_eq!(
        prop_cells(b, "/hypervisor", "interrupt-parent"),
        Some(vec![highest + 1])
    );
}

#[test]
fn more_vcpus_than_host_cpus_and_no_cpus_node() {
    let host = fixtures::two_banks(); // 2 CPUs
    let memory = [r(0x4000_0000, 0x1000_0000)];
    let cfg = Dom0Config {
        memory: &memory,
        bootargs: "",
        initrd: None,
        vcpus: 3,
        console: None,
        gic: qemu_v2_view(),
        hypervisor: HYP,
    };
    let (dt, m) = gen_parse(&host, &cfg);
    assert_eq!(m.cpus, psci_cpus(3));
    assert_eq!(
        prop_str(&dt.blob, "/cpus/cpu@2", "compatible").as_deref(),
        Some("arm,cortex-a72"),
        "made-up CPUs borrow the first kept one's compatible"
    );
    assert!(has_note(&dt, "vCPU(s) 2..2 made up"));

    // No /cpus, /chosen or /psci at all: all created.
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.begin_node("memory@0");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0, 0, 0x1000_0000]);
    w.end_node();
    w.end_node();
    let (dt, m) = gen_parse(&w.finish(), &cfg);
    assert_eq!(m.cpus, psci_cpus(3));
    assert_eq!(m.memory, memory);
    assert_eq!(m.psci.map(|p| p.conduit), Some(Conduit::Hvc));
    assert_eq!(
        prop_str(&dt.blob, "/cpus/cpu@0", "compatible").as_deref(),
        Some("arm,armv8")
    );
    assert_eq!(
        child_names(&dt.blob, "/"),
        ["memory@40000000", "chosen", "cpus", "psci", "hypervisor"]
    );
}

#[test]
fn memory_cells() {
    // Root #size-cells = 1: a 6 GiB bank takes several entries; #address-cells = 1 cannot say
    // an address above 4 GiB.
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.property_u32("#address-cells", 1);
    w.property_u32("#size-cells", 1);
    w.begin_node("memory@0");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0, 0x1000_0000]);
    w.end_node();
    w.end_node();
    let host = w.finish();
    let memory = [r(0x1000_0000, 0x1_8000_0000), r(0x2_0000_0000, 0x1000)];
    let cfg = Dom0Config {
        memory: &memory,
        bootargs: "",
        initrd: None,
        vcpus: 1,
        console: None,
        gic: qemu_v2_view(),
        hypervisor: HYP,
    };
    let dt = generate(&host, &cfg).unwrap();
    assert_eq!(
        prop_cells(&dt.blob, "/memory@10000000", "reg"),
        Some(vec![0x1000_0000, 0x8000_0000, 0x9000_0000, 0x8000_0000])
    );
    assert!(has_note(
        &dt,
        "dom0 RAM 0x110000000-0x18fffffff (2048 MiB): left out"
    ));
    assert!(has_note(
        &dt,
        "dom0 RAM 0x200000000-0x200000fff (4 KiB): left out"
    ));
}
