//! Parsing the fixture machines, rejecting broken blobs, and surviving corrupted ones.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::fixtures::*;
use super::*;
use crate::mm::region::Region;

const GIB: u64 = 1 << 30;

fn r(start: u64, size: u64) -> Region {
    Region::new(start, size)
}

fn psci_cpus(n: u64) -> Vec<CpuInfo> {
    (0..n)
        .map(|mpidr| CpuInfo {
            mpidr,
            enable: EnableMethod::Psci,
        })
        .collect()
}

const QEMU_TIMER: TimerInfo = TimerInfo {
    sec_phys: 29,
    phys: 30,
    virt: 27,
    hyp_phys: 26,
    hyp_virt: None,
    clock_frequency: None,
};

#[test]
fn qemu_virt_gicv3() {
    let m = parse(&super::fixtures::qemu_virt_gicv3()).unwrap();
    assert_eq!(m.model, "linux,dummy-virt");
    assert_eq!(m.memory, vec![r(0x4000_0000, GIB)]);
    assert!(m.reserved.is_empty());
    assert_eq!(m.cpus, psci_cpus(4));
    assert_eq!(
        m.uart,
        Some(UartInfo {
            base: 0x900_0000,
            size: 0x1000,
            kind: UartKind::Pl011,
            path: "/pl011@9000000".into(),
            irq: Some(33),
        })
    );
    assert_eq!(
        m.gic,
        Some(GicInfo::V3 {
            dist: r(0x800_0000, 0x1_0000),
            redist: vec![r(0x80a_0000, 0xf6_0000)],
            maintenance_irq: Some(25),
        })
    );
    assert_eq!(m.timer, Some(QEMU_TIMER));
    assert_eq!(
        m.psci,
        Some(PsciInfo {
            conduit: Conduit::Smc,
            compatible: "arm,psci-1.0".into()
        })
    );
    assert_eq!(m.bootargs, "");
    assert_eq!(m.initrd, None);
    assert!(m.modules.is_empty());
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn qemu_virt_gicv2() {
    let m = parse(&super::fixtures::qemu_virt_gicv2()).unwrap();
    assert_eq!(
        m.gic,
        Some(GicInfo::V2 {
            dist: r(0x800_0000, 0x1_0000),
            cpu: r(0x801_0000, 0x1_0000),
            hyp: Some(r(0x803_0000, 0x1_0000)),
            vcpu: Some(r(0x804_0000, 0x1_0000)),
            maintenance_irq: Some(25),
        })
    );
    assert_eq!(m.timer, Some(QEMU_TIMER));
    assert_eq!(m.cpus.len(), 4);
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn two_banks_reservations_and_modules() {
    let m = parse(&two_banks()).unwrap();
    assert_eq!(
        m.memory,
        vec![r(0x4000_0000, 2 * GIB), r(0x8_8000_0000, 4 * GIB)],
        "zero-size bank dropped"
    );
    assert_eq!(
        m.reserved,
        vec![r(0x4000_0000, 0x1_0000), r(0x7e00_0000, 0x40_0000)]
    );
    assert_eq!(m.ignored_reserved, vec![String::from("linux,cma")]);
    assert_eq!(
        m.psci,
        Some(PsciInfo {
            conduit: Conduit::Hvc,
            compatible: "arm,psci-1.0".into()
        })
    );
    assert_eq!(m.cpus, psci_cpus(2));
    assert_eq!(m.uart, None);
    assert_eq!(m.gic, None);
    assert_eq!(m.bootargs, "ferrite.loglevel=debug dom0_mem=512M");
    assert_eq!(
        m.initrd,
        Some(r(0x4800_0000, 0x40_0000)),
        "u32 start, u64 end"
    );
    assert_eq!(
        m.modules,
        vec![
            BootModule {
                region: r(0x5000_0000, 0x200_0000),
                kind: ModuleKind::Kernel,
                bootargs: Some("console=hvc0 root=/dev/ram0".into()),
            },
            BootModule {
                region: r(0x5200_0000, 0x80_0000),
                kind: ModuleKind::Ramdisk,
                bootargs: None
            },
            BootModule {
                region: r(0x5300_0000, 0x1_0000),
                kind: ModuleKind::Other,
                bootargs: None
            },
        ]
    );
    assert_eq!(
        m.warnings,
        vec![String::from(
            "/chosen/module@0: skipped: module without a usable reg"
        )]
    );
}

#[test]
fn raspberry_pi_4_translation() {
    let m = parse(&rpi4(Some("serial0:115200n8"))).unwrap();
    assert_eq!(m.model, "Raspberry Pi 4 Model B Rev 1.4");
    assert_eq!(
        m.memory,
        vec![r(0, 0x3b40_0000), r(0x4000_0000, 0xbc00_0000)]
    );
    assert_eq!(m.reserved, vec![r(0, 0x1000)]);
    assert_eq!(m.ignored_reserved, vec![String::from("linux,cma")]);
    assert_eq!(
        m.uart,
        Some(UartInfo {
            base: 0xfe20_1000,
            size: 0x200,
            kind: UartKind::Pl011,
            path: "/soc/serial@7e201000".into(),
            irq: Some(153),
        })
    );
    assert_eq!(
        m.gic,
        Some(GicInfo::V2 {
            dist: r(0xff84_1000, 0x1000),
            cpu: r(0xff84_2000, 0x2000),
            hyp: Some(r(0xff84_4000, 0x2000)),
            vcpu: Some(r(0xff84_6000, 0x2000)),
            maintenance_irq: Some(25),
        })
    );
    let release = [0xd8, 0xe0, 0xe8, 0xf0];
    let cpus: Vec<CpuInfo> = (0..4)
        .map(|i| CpuInfo {
            mpidr: i as u64,
            enable: EnableMethod::SpinTable {
                release_addr: release[i],
            },
        })
        .collect();
    assert_eq!(m.cpus, cpus);
    assert_eq!(m.timer, Some(QEMU_TIMER));
    assert_eq!(m.psci, None);
    assert_eq!(m.bootargs, "coherent_pool=1M 8250.nr_uarts=1");
    // The stdout UART was found directly, so the untranslatable one was never looked at.
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn raspberry_pi_4_other_buses() {
    let blob = rpi4(None);
    let fdt = fdt::Fdt::new(&blob).unwrap();
    let tree = tree::Tree::new(&fdt).unwrap();
    let reg = |path: &str| tree.reg(tree.find_path(path).unwrap());
    assert_eq!(
        reg("/emmc2bus/mmc@7e340000"),
        Ok(vec![r(0xfe34_0000, 0x100)])
    );
    assert_eq!(reg("/scb/pcie@7d500000"), Ok(vec![r(0xfd50_0000, 0x9310)]));
    assert_eq!(
        reg("/soc/serial"),
        Ok(vec![r(0xfe20_1000, 0x200)]),
        "unit address may be left out"
    );
    assert!(matches!(
        reg("/i2c-mux/serial@50"),
        Err(ranges::TranslateError::NoRanges { .. })
    ));
    assert_eq!(
        tree.resolve_path_or_alias("serial1"),
        tree.find_path("/soc/serial@7e215040")
    );
    assert_eq!(
        tree.resolve_path_or_alias("/soc/serial@7e201000:115200"),
        tree.find_path("/soc/serial@7e201000")
    );
    assert_eq!(tree.resolve_path_or_alias("nonexistent"), None);
    assert_eq!(
        tree.path(tree.find_path("/soc/interrupt-controller").unwrap()),
        "/soc/interrupt-controller@40041000"
    );
}

#[test]
fn uart_fallback_skips_untranslatable_and_disabled() {
    for stdout in [
        None,
        Some("serial1"),
        Some("/nonexistent"),
        Some("/soc/serial@7e201400"),
    ] {
        let m = parse(&rpi4(stdout)).unwrap();
        assert_eq!(
            m.uart.as_ref().map(|u| (u.base, u.path.as_str())),
            Some((0xfe20_1000, "/soc/serial@7e201000")),
            "{stdout:?}"
        );
        assert_eq!(
            m.warnings,
            vec![
                String::from(
                    "/i2c-mux/serial@50: skipped: bus /i2c-mux has no ranges (not memory-mapped)"
                ),
                "/i2c-mux/serial@50: UART without registers".into()
            ],
            "{stdout:?}"
        );
    }
}

#[test]
fn nops_anywhere_are_tolerated() {
    for blob in [
        super::fixtures::qemu_virt_gicv3(),
        rpi4(Some("serial0")),
        two_banks(),
    ] {
        let expected = parse(&blob).unwrap();
        assert_eq!(parse(&with_nops(&blob)).unwrap(), expected);
    }
}

#[test]
fn blob_may_be_followed_by_other_data() {
    let mut blob = two_banks();
    let expected = parse(&blob).unwrap();
    blob.extend_from_slice(&[0xff; 100]);
    assert_eq!(parse(&blob).unwrap(), expected);
    assert_eq!(total_size(&blob), Ok(blob.len() - 100));
}

fn set_word(blob: &mut [u8], index: usize, value: u32) {
    blob[index * 4..index * 4 + 4].copy_from_slice(&value.to_be_bytes());
}

#[test]
fn header_errors() {
    let blob = super::fixtures::qemu_virt_gicv3();
    let len = blob.len();
    assert_eq!(parse(&blob[..10]), Err(DtError::TooShort { len: 10 }));
    assert_eq!(
        parse(&blob[..len - 1]),
        Err(DtError::Truncated {
            total_size: len,
            available: len - 1
        })
    );
    let mut bad = blob.clone();
    bad[0] = 0xd0;
    bad[3] = 0x0d;
    assert_eq!(parse(&bad), Err(DtError::BadMagic(0xd00d_fe0d)));
    let mut v16 = blob.clone();
    set_word(&mut v16, 5, 16);
    assert_eq!(
        parse(&v16),
        Err(DtError::BadVersion {
            version: 16,
            last_compatible: 16
        })
    );
    let mut huge = blob.clone();
    set_word(&mut huge, 1, 0x1000_0000);
    assert_eq!(total_size(&huge), Err(DtError::BadTotalSize(0x1000_0000)));
    let mut bad_struct = blob.clone();
    set_word(&mut bad_struct, 9, len as u32);
    assert!(matches!(parse(&bad_struct), Err(DtError::BadLayout(_))));
    assert_eq!(total_size(&blob[..40]), Ok(len));
}

#[test]
fn error_messages() {
    assert_eq!(
        DtError::BadMagic(0x1234).to_string(),
        "bad magic 0x00001234 (expected 0xd00dfeed)"
    );
    assert_eq!(
        DtError::Truncated {
            total_size: 4096,
            available: 100
        }
        .to_string(),
        "truncated: header says 4096 bytes, only 100 available"
    );
    assert_eq!(DtError::NoMemory.to_string(), "no /memory node");
    assert_eq!(
        DtError::Malformed {
            offset: 0x48,
            what: "unknown token"
        }
        .to_string(),
        "malformed at offset 0x48: unknown token"
    );
}

#[test]
fn missing_or_empty_memory() {
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.begin_node("chosen");
    w.end_node();
    w.end_node();
    assert_eq!(parse(&w.finish()), Err(DtError::NoMemory));

    let mut w = FdtWriter::new();
    w.begin_node("");
    w.begin_node("memory@0");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0, 0x4000_0000, 0]);
    w.end_node();
    w.end_node();
    assert_eq!(parse(&w.finish()), Err(DtError::EmptyMemory));
}

#[test]
fn minimal_tree_without_optional_nodes() {
    // No /cpus, /chosen, model or compatible: still a machine (with warnings), not a panic.
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.begin_node("memory");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0, 0x8000_0000, 0x1000_0000]);
    w.end_node();
    w.end_node();
    let m = parse(&w.finish()).unwrap();
    assert_eq!(m.memory, vec![r(0x8000_0000, 0x1000_0000)]);
    assert_eq!(m.model, "");
    assert!(m.cpus.is_empty());
    assert_eq!(m.warnings, vec![String::from("/cpus: missing")]);
}

#[test]
fn odd_cpus_and_interrupts() {
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.begin_node("memory@0");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0, 0, 0x1000_0000]);
    w.end_node();
    w.begin_node("cpus");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 0);
    for (name, status, method) in [
        ("cpu@0", None, None),
        ("cpu@100", Some("disabled"), Some("psci")),
        ("cpu@200", Some("fail"), Some("psci")),
        ("cpu@300", Some("okay"), Some("spin-table")), // no release address
        ("cpu@400", None, Some("acme,mailbox")),
    ] {
        w.begin_node(name);
        w.property_cells("reg", &[0x1, u32::from_str_radix(&name[4..], 16).unwrap()]);
        if let Some(s) = status {
            w.property_string("status", s);
        }
        if let Some(m) = method {
            w.property_string("enable-method", m);
        }
        w.end_node();
    }
    w.end_node();
    w.begin_node("timer");
    w.property_string("compatible", "arm,armv7-timer");
    w.property_cells(
        "interrupts",
        &[1, 13, 0, 1, 14, 0, 1, 11, 0, 1, 10, 0, 1, 12, 0],
    );
    w.property_u32("clock-frequency", 62_500_000);
    w.end_node();
    w.begin_node("psci");
    w.property_string("compatible", "arm,psci");
    w.property_string("method", "magic");
    w.end_node();
    w.end_node();
    let m = parse(&w.finish()).unwrap();
    assert_eq!(
        m.cpus,
        vec![
            CpuInfo {
                mpidr: 0x1_0000_0000,
                enable: EnableMethod::Other(String::new())
            },
            CpuInfo {
                mpidr: 0x1_0000_0400,
                enable: EnableMethod::Other("acme,mailbox".into())
            },
        ]
    );
    assert_eq!(
        m.timer,
        Some(TimerInfo {
            hyp_virt: Some(28),
            clock_frequency: Some(62_500_000),
            ..QEMU_TIMER
        }),
        "no interrupt parent: 3 cells assumed"
    );
    assert_eq!(m.psci, None);
    assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
}

/// The same blob with a NOP before every token and after the root.
fn with_nops(blob: &[u8]) -> Vec<u8> {
    let word = |at: usize| u32::from_be_bytes(blob[at..at + 4].try_into().unwrap());
    let (off_struct, size_struct) = (word(8) as usize, word(36) as usize);
    let structure = &blob[off_struct..off_struct + size_struct];
    let sword = |at: usize| u32::from_be_bytes(structure[at..at + 4].try_into().unwrap());
    let nop = 4u32.to_be_bytes();
    let mut out_struct = Vec::new();
    let mut at = 0;
    while at < structure.len() {
        let next = match sword(at) {
            1 => (at + 4 + structure[at + 4..].iter().position(|&b| b == 0).unwrap() + 1)
                .next_multiple_of(4),
            3 => (at + 12 + sword(at + 4) as usize).next_multiple_of(4),
            _ => at + 4,
        };
        out_struct.extend_from_slice(&nop);
        out_struct.extend_from_slice(&structure[at..next]);
        at = next;
    }
    let mut out = blob[..off_struct].to_vec();
    out.extend_from_slice(&out_struct);
    let off_strings = out.len();
    out.extend_from_slice(&blob[word(12) as usize..word(12) as usize + word(32) as usize]);
    let total = out.len() as u32;
    set_word(&mut out, 1, total);
    set_word(&mut out, 3, off_strings as u32);
    set_word(&mut out, 9, out_struct.len() as u32);
    out
}

/// Feeds `parse` damaged copies of `blob`; it must return, whatever it returns. Offsets are
/// limited to the bytes the header says are in use (QEMU pads its blobs to 1 MiB), sampled
/// every `stride` bytes.
fn fuzz_blob(blob: &[u8], stride: usize) {
    let word = |i: usize| u32::from_be_bytes(blob[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
    let used = (word(3) + word(8)).max(word(2) + word(9)).min(blob.len());
    // Truncation: the header's totalsize no longer fits, or (with it patched) blocks are cut.
    for len in (0..used).step_by(stride) {
        let _ = parse(&blob[..len]);
        if len >= 8 {
            let mut cut = blob[..len].to_vec();
            set_word(&mut cut, 1, len as u32);
            let _ = parse(&cut);
        }
    }
    let mut b = blob.to_vec();
    let mut damaged = |at: usize, bytes: &[u8]| {
        let saved: Vec<u8> = b[at..at + bytes.len()].to_vec();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        let _ = parse(&b);
        b[at..at + bytes.len()].copy_from_slice(&saved);
    };
    // Single-byte and whole-word corruption.
    for at in (0..used).step_by(stride) {
        for x in [0x01, 0x80, 0xff] {
            damaged(at, &[blob[at] ^ x]);
        }
    }
    for at in (0..used.saturating_sub(3)).step_by(4 * stride) {
        for v in [0u32, 1, 2, 3, 4, 9, 0x7fff_ffff, 0xffff_fffc] {
            damaged(at, &v.to_be_bytes());
        }
    }
    // Random multi-byte damage.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ blob.len() as u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..1000 {
        let mut b = blob[..used].to_vec();
        for _ in 0..1 + rand() % 8 {
            let at = rand() as usize % b.len();
            b[at] = rand() as u8;
        }
        let _ = parse(&b);
    }
}

// One test per fixture, so that they run in parallel.
#[test]
fn never_panics_on_damaged_qemu_gicv3() {
    fuzz_blob(&super::fixtures::qemu_virt_gicv3(), 1);
}

#[test]
fn never_panics_on_damaged_qemu_gicv2() {
    fuzz_blob(&super::fixtures::qemu_virt_gicv2(), 3);
}

#[test]
fn never_panics_on_damaged_two_banks() {
    fuzz_blob(&two_banks(), 2);
}

#[test]
fn never_panics_on_damaged_rpi4() {
    fuzz_blob(&rpi4(Some("serial0:115200n8")), 1);
}

#[test]
fn never_panics_on_damaged_blob_with_nops() {
    fuzz_blob(&with_nops(&rpi4(None)), 3);
}

/// Real blobs, e.g. from `qemu-system-aarch64 -M virt,dumpdtb=...`: every `*.dtb` in the
/// directory named by `FERRITE_DTB_DIR` must parse, and survive the same damage.
#[test]
fn external_blobs() {
    let Ok(dir) = std::env::var("FERRITE_DTB_DIR") else {
        return;
    };
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "dtb") {
            let blob = std::fs::read(&path).unwrap();
            let m = parse(&blob).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            std::println!("{}: {m:x?}", path.display());
            fuzz_blob(&blob, 7);
        }
    }
}

/// QEMU's guest-loader writes `/chosen/module@...` with the root's cell sizes (2/2) and gives
/// /chosen no `#address-cells`: the module must still be found.
#[test]
fn modules_use_the_root_cell_sizes_when_chosen_has_none() {
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.property_u32("#address-cells", 2);
    w.property_u32("#size-cells", 2);
    w.begin_node("memory@40000000");
    w.property_string("device_type", "memory");
    w.property_cells("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
    w.end_node();
    w.begin_node("chosen");
    w.begin_node("module@50000000");
    w.property_strings("compatible", &["multiboot,kernel", "multiboot,module"]);
    w.property_cells("reg", &[0, 0x5000_0000, 0, 0x1_b000]);
    w.property_string("bootargs", "poweroff");
    w.end_node();
    w.end_node();
    w.end_node();
    let m = parse(&w.finish()).unwrap();
    assert_eq!(m.modules.len(), 1, "{:?}", m.warnings);
    assert_eq!(m.modules[0].region, r(0x5000_0000, 0x1_b000));
    assert_eq!(m.modules[0].bootargs.as_deref(), Some("poweroff"));
}
