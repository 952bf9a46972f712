//! Damaged and unusual input: errors, padded blobs, random damage, real blobs (opt-in).

use super::*;

#[test]
fn errors() {
    let host = fixtures::qemu_virt_gicv3();
    let mut cfg = qemu_cfg(1, qemu_v3_view(1));
    assert_eq!(
        generate(&host[..10], &cfg).unwrap_err(),
        DtError::TooShort { len: 10 }
    );
    let mut bad = host.clone();
    bad[0] = 0;
    assert!(matches!(generate(&bad, &cfg), Err(DtError::BadMagic(_))));
    cfg.memory = &[];
    assert_eq!(generate(&host, &cfg).unwrap_err(), DtError::EmptyMemory);
}

#[test]
fn blob_with_nops_and_trailing_bytes() {
    let host = fixtures::rpi4(Some("serial0"));
    let memory = [r(0x1000_0000, 0x1000_0000)];
    let expected = generate(&host, &rpi4_cfg(&memory)).unwrap();
    let mut longer = host.clone();
    longer.extend_from_slice(&[0xff; 64]);
    assert_eq!(generate(&longer, &rpi4_cfg(&memory)).unwrap(), expected);

    // A NOP before the root node, as a bootloader that deleted something leaves it.
    let word = |i: usize| u32::from_be_bytes(host[i * 4..i * 4 + 4].try_into().unwrap());
    let off_struct = word(2) as usize;
    let mut nops = host[..off_struct].to_vec();
    nops.extend_from_slice(&4u32.to_be_bytes());
    nops.extend_from_slice(&host[off_struct..]);
    for (i, grow) in [(1, 4), (3, 4), (9, 4)] {
        let v = word(i) + grow;
        nops[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    assert!(validate::check(&nops).unwrap().has_nops);
    assert_eq!(generate(&nops, &rpi4_cfg(&memory)).unwrap(), expected);
}

/// Damaged host blobs: `generate` returns, whatever it returns, and what it returns parses.
#[test]
fn never_panics_on_damaged_blobs() {
    let memory = [r(0x1000_0000, 0x1000_0000)];
    for (blob, cfg) in [
        (fixtures::qemu_virt_gicv3(), qemu_cfg(2, qemu_v3_view(2))),
        (fixtures::rpi4(Some("serial0")), rpi4_cfg(&memory)),
        (server(true), server_cfg(3)),
    ] {
        let mut seed = 0x2545_f491_4f6c_dd1du64 ^ blob.len() as u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..1500 {
            let mut b = blob.clone();
            for _ in 0..1 + rand() % 4 {
                let at = rand() as usize % b.len();
                b[at] = rand() as u8;
            }
            if let Ok(dt) = generate(&b, &cfg) {
                validate::check(&dt.blob).expect("generated blob is valid");
            }
        }
    }
}

/// Real blobs, e.g. `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3,dumpdtb=...`:
/// every `*.dtb` in the directory named by `FERRITE_DTB_DIR` gets a dom0 tree, which must
/// parse with the expected shape and, if `dtc` is installed, decompile.
#[test]
fn external_blobs() {
    let Ok(dir) = std::env::var("FERRITE_DTB_DIR") else {
        return;
    };
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "dtb") {
            continue;
        }
        let blob = std::fs::read(&path).unwrap();
        let host = parse(&blob).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // dom0 gets half of the first bank's upper half, up to 512 MiB, and two vCPUs.
        let bank = host.memory[0];
        let size = (bank.size / 4).min(512 * MIB) & !(2 * MIB - 1);
        let memory = [r(bank.start + bank.size / 2, size)];
        let vcpus = host.cpus.len().min(2);
        let gic = match host.gic.clone().expect("a GIC") {
            GicInfo::V2 { dist, cpu, .. } => GicView::V2 { dist, cpu },
            GicInfo::V3 { dist, redist, .. } => GicView::V3 {
                dist,
                redist: r(redist[0].start, vcpus as u64 * 0x2_0000),
            },
        };
        let cfg = Dom0Config {
            memory: &memory,
            bootargs: "console=ttyAMA0 earlycon",
            initrd: Some(r(memory[0].start + 0x100_0000, 0x10_0000)),
            vcpus,
            console: host.uart.as_ref().map(|u| r(u.base, u.size)),
            gic,
            hypervisor: HYP,
        };
        let (dt, m) = gen_parse(&blob, &cfg);
        assert_eq!(m.memory, memory, "{}", path.display());
        assert_eq!(m.cpus, psci_cpus(vcpus as u64));
        assert_eq!(m.psci.as_ref().map(|p| p.conduit), Some(Conduit::Hvc));
        assert_eq!(m.uart, host.uart);
        assert_eq!(m.timer, host.timer);
        assert_eq!(m.initrd, cfg.initrd);
        assert!(m.warnings.len() <= host.warnings.len(), "{:?}", m.warnings);
        match (&m.gic, gic) {
            (Some(GicInfo::V2 { dist, cpu, hyp, .. }), GicView::V2 { dist: d, cpu: c }) => {
                assert_eq!((*dist, *cpu, *hyp), (d, c, None));
            }
            (
                Some(GicInfo::V3 { dist, redist, .. }),
                GicView::V3 {
                    dist: d,
                    redist: rd,
                },
            ) => {
                assert_eq!((*dist, redist.as_slice()), (d, &[rd][..]));
            }
            other => panic!("{}: GIC {other:?}", path.display()),
        }
        let console = host.uart.as_ref().map(|u| u.path.as_str());
        assert!(
            dt.passthrough
                .iter()
                .all(|p| Some(p.path.as_str()) != console
                    && !p.regions.iter().any(|r| { memory[0].overlaps(r) })),
            "{:#x?}",
            dt.passthrough
        );
        std::println!("{}:", path.display());
        for note in &dt.notes {
            std::println!("  note: {note}");
        }
        for p in &dt.passthrough {
            std::println!(
                "  passthrough {} {:x?} spis {:?}",
                p.path,
                p.regions,
                p.spis
            );
        }
        let out = std::env::temp_dir().join(alloc::format!(
            "ferrite-dom0-{}-{}",
            std::process::id(),
            path.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&out, &dt.blob).unwrap();
        match std::process::Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts"])
            .arg(&out)
            .output()
        {
            Ok(o) => {
                assert!(
                    o.status.success(),
                    "dtc: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                let dts = String::from_utf8_lossy(&o.stdout);
                assert!(dts.contains("compatible = \"ferrite,hypervisor\";"));
                assert!(dts.contains("method = \"hvc\";"));
            }
            Err(e) => std::println!("  dtc not run: {e}"),
        }
        let _ = std::fs::remove_file(&out);
    }
}
