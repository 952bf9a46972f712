//! Distributor and redistributor registers: reset and ID values, read-back, banking, access
//! rules.

use super::*;

fn bad(r: Result<u64, Bad>) -> Why {
    r.expect_err("access should be refused").why
}

#[test]
fn v2_identification() {
    let mut g = gic(Version::V2, 4);
    // 64 SPIs: ITLinesNumber 2; CPUNumber 3; no Security Extensions.
    assert_eq!(rd(&mut g, 0x4), 2 | 3 << 5);
    assert_eq!(rd(&mut g, 0x8), 0x4600_043b);
    assert_eq!(rd(&mut g, 0xfe8) >> 4 & 0xf, 2, "PIDR2.ArchRev");
    let cidr: Vec<u32> = (0..4).map(|i| rd(&mut g, 0xff0 + 4 * i)).collect();
    assert_eq!(cidr, [0x0d, 0xf0, 0x05, 0xb1]);
    // GICv3 places are plain reserved space in a GICv2 frame.
    assert_eq!(g.dist_read(0, 0xffe8, 4), Ok(0));
    assert_eq!(g.dist_read(0, 0x6100, 8), Ok(0));
}

#[test]
fn v3_identification() {
    let mut g = gic(Version::V3, 2);
    let typer = rd(&mut g, 0x4);
    assert_eq!(typer & 0x1f, 2, "ITLinesNumber");
    assert_eq!(typer >> 19 & 0x1f, 9, "IDbits: 10 bits");
    assert_eq!(typer & (1 << 10 | 1 << 16 | 1 << 17 | 1 << 24 | 1 << 25), 0);
    assert_eq!(rd(&mut g, 0xffe8), 0x3b, "PIDR2: ArchRev 3");
    assert_eq!(rd(&mut g, 0xffd0), 0x04);
    assert_eq!(rd(&mut g, 0xfe8), 0, "no GICv2 ID registers");
    assert_eq!(g.redist_read(0, 0xffe8, 4), Ok(0x3b));
    assert_eq!(g.redist_read(1, 0x20004, 4), Ok(0x4600_043b));
    // TYPER2, STATUSR
    assert_eq!(rd(&mut g, 0xc), 0);
    assert_eq!(rd(&mut g, 0x10), 0);
}

#[test]
fn spi_count_rounding() {
    for (spis, lines) in [(0, 0), (1, 1), (32, 1), (33, 2), (988, 31), (5000, 31)] {
        let mut g = Vgic::new(Config {
            version: Version::V2,
            vcpus: 1,
            spis,
            mpidrs: Vec::new(),
        });
        assert_eq!(rd(&mut g, 0x4) & 0x1f, lines, "{spis} SPIs");
    }
    let ok = Config {
        version: Version::V3,
        vcpus: 65,
        spis: 64,
        mpidrs: (0..65).collect(),
    };
    assert!(ok.check().is_err());
    assert_eq!(Vgic::new(ok).vcpus(), 64);
}

#[test]
fn ctlr() {
    let mut g = gic(Version::V2, 1);
    assert_eq!(rd(&mut g, 0x0), 0);
    wr(&mut g, 0x0, !0);
    assert_eq!(rd(&mut g, 0x0), 3);
    let mut g = gic(Version::V3, 1);
    // ARE and DS read as one whatever is written.
    assert_eq!(rd(&mut g, 0x0), 0x50);
    wr(&mut g, 0x0, 0x2);
    assert_eq!(rd(&mut g, 0x0), 0x52);
    wr(&mut g, 0x0, 0);
    assert_eq!(rd(&mut g, 0x0), 0x50);
    assert_eq!(rd(&mut g, 0x0) >> 31, 0, "RWP");
}

#[test]
fn v2_bit_banks_and_banking() {
    let mut g = gic(Version::V2, 4);
    assert_eq!(rd(&mut g, 0x84), 0, "GICv2 resets to Group 0");
    wr(&mut g, 0x84, 0xdead_beef);
    assert_eq!(rd(&mut g, 0x84), 0xdead_beef);
    assert_eq!(rd(&mut g, 0x8c), 0, "beyond the last SPI");
    wr(&mut g, 0x104, 0x11);
    wr(&mut g, 0x104, 0x100);
    wr(&mut g, 0x184, 0x1);
    assert_eq!(rd(&mut g, 0x104), 0x110);
    assert_eq!(rd(&mut g, 0x184), 0x110);
    // SGI/PPI registers are banked per accessing vCPU.
    g.dist_write(1, 0x100, 4, 0x8000_0001).unwrap();
    assert_eq!(g.dist_read(1, 0x100, 4), Ok(0x8000_0001));
    assert_eq!(g.dist_read(0, 0x100, 4), Ok(0));
    // GICv2 SGIs are not made pending through ISPENDR0.
    g.dist_write(1, 0x200, 4, 0xffff_ffff).unwrap();
    assert_eq!(g.dist_read(1, 0x200, 4), Ok(0xffff_0000));
    g.dist_write(1, 0x280, 4, 0xffff_ffff).unwrap();
    assert_eq!(g.dist_read(1, 0x200, 4), Ok(0));
    // Active
    wr(&mut g, 0x304, 0x3);
    assert_eq!(rd(&mut g, 0x384), 0x3);
    wr(&mut g, 0x384, 0x1);
    assert_eq!(rd(&mut g, 0x304), 0x2);
}

#[test]
fn priorities_are_bytes_with_five_bits() {
    let mut g = gic(Version::V2, 2);
    g.dist_write(0, 0x421, 1, 0xff).unwrap();
    assert_eq!(g.dist_read(0, 0x421, 1), Ok(0xf8));
    assert_eq!(rd(&mut g, 0x420), 0xf800);
    wr(&mut g, 0x424, 0x1234_5678);
    assert_eq!(rd(&mut g, 0x424), 0x1030_5078);
    // Banked SGI priorities.
    g.dist_write(1, 0x403, 1, 0x80).unwrap();
    assert_eq!(g.dist_read(1, 0x400, 4), Ok(0x8000_0000));
    assert_eq!(g.dist_read(0, 0x400, 4), Ok(0));
    // GICv3: SGI/PPI priorities are the redistributor's.
    let mut g = gic(Version::V3, 2);
    wr(&mut g, 0x400, 0xa0a0_a0a0);
    assert_eq!(rd(&mut g, 0x400), 0);
    g.redist_write(0, sgi_base(1, 0x41b), 1, 0x90).unwrap();
    assert_eq!(g.redist_read(1, sgi_base(1, 0x418), 4), Ok(0x9000_0000));
    assert_eq!(g.redist_read(1, sgi_base(0, 0x418), 4), Ok(0));
    wr(&mut g, 0x420, 0xa0a0_a0a0);
    assert_eq!(g.dist_read(1, 0x423, 1), Ok(0xa0));
}

#[test]
fn itargetsr() {
    let mut g = gic(Version::V2, 3);
    for v in 0..3 {
        for off in (0x800..0x820).step_by(4) {
            assert_eq!(
                g.dist_read(v, off, 4),
                Ok(0x0101_0101 << v),
                "vcpu{v} {off:#x}"
            );
        }
        assert_eq!(g.dist_read(v, 0x81f, 1), Ok(1 << v));
    }
    wr(&mut g, 0x800, 0xffff_ffff);
    assert_eq!(rd(&mut g, 0x800), 0x0101_0101, "SGI targets are read-only");
    g.dist_write(0, 0x821, 1, 0xff).unwrap();
    assert_eq!(rd(&mut g, 0x820), 0x0700, "only implemented CPUs");
    wr(&mut g, 0x824, 0x0102_0304);
    assert_eq!(g.dist_read(2, 0x826, 1), Ok(0x2));
    // GICv3 with affinity routing has no ITARGETSR.
    let mut g = gic(Version::V3, 2);
    wr(&mut g, 0x820, 0x0101_0101);
    assert_eq!(rd(&mut g, 0x820), 0);
}

#[test]
fn icfgr() {
    let mut g = gic(Version::V2, 1);
    assert_eq!(rd(&mut g, 0xc00), 0xaaaa_aaaa, "SGIs are edge");
    wr(&mut g, 0xc00, 0);
    assert_eq!(rd(&mut g, 0xc00), 0xaaaa_aaaa);
    assert_eq!(rd(&mut g, 0xc04), 0, "PPIs reset to level");
    wr(&mut g, 0xc08, 0xffff_ffff);
    assert_eq!(rd(&mut g, 0xc08), 0xaaaa_aaaa, "Int_config[0] is RAZ");
    wr(&mut g, 0xc08, 0x0000_0008);
    assert_eq!(rd(&mut g, 0xc08), 0x8);
    let mut g = gic(Version::V3, 2);
    assert_eq!(rd(&mut g, 0xc00), 0, "the redistributor's");
    assert_eq!(g.redist_read(0, sgi_base(1, 0xc00), 4), Ok(0xaaaa_aaaa));
    g.redist_write(1, sgi_base(1, 0xc04), 4, 0x2).unwrap();
    assert_eq!(g.redist_read(0, sgi_base(1, 0xc04), 4), Ok(0x2));
    assert_eq!(g.redist_read(0, sgi_base(0, 0xc04), 4), Ok(0));
}

#[test]
fn v2_sgi_pending_registers() {
    let mut g = gic(Version::V2, 4);
    // SPENDSGIR: byte per SGI, bit per source; banked.
    g.dist_write(2, 0xf21, 1, 0x9).unwrap();
    assert_eq!(g.dist_read(2, 0xf20, 4), Ok(0x0900));
    assert_eq!(g.dist_read(2, 0xf10, 4), Ok(0x0900));
    assert_eq!(g.dist_read(1, 0xf20, 4), Ok(0));
    assert_eq!(g.dist_read(2, 0x200, 4), Ok(0x2), "ISPENDR0 shows SGI 1");
    g.dist_write(2, 0xf11, 1, 0x1).unwrap();
    assert_eq!(g.dist_read(2, 0xf21, 1), Ok(0x8));
    g.dist_write(2, 0xf10, 4, 0xffff_ffff).unwrap();
    assert_eq!(g.dist_read(2, 0xf20, 4), Ok(0));
    // GICD_SGIR is write-only.
    wr(&mut g, 0xf00, 0x0201_0003);
    assert_eq!(rd(&mut g, 0xf00), 0);
}

#[test]
fn v3_irouter() {
    let mut g = gic(Version::V3, 2);
    let at = |intid: u64| 0x6000 + 8 * intid;
    g.dist_write(0, at(40), 8, 0x0000_0001_0203_0405).unwrap();
    assert_eq!(g.dist_read(0, at(40), 8), Ok(0x0000_0001_0003_0405));
    assert_eq!(g.dist_read(0, at(40), 4), Ok(0x0003_0405));
    assert_eq!(g.dist_read(0, at(40) + 4, 4), Ok(0x1));
    g.dist_write(0, at(40) + 4, 4, 0x7).unwrap();
    g.dist_write(0, at(40), 4, 0x8000_0001).unwrap();
    assert_eq!(g.dist_read(0, at(40), 8), Ok(0x0000_0007_8000_0001));
    g.dist_write(0, at(41), 8, u64::MAX).unwrap();
    assert_eq!(g.dist_read(0, at(41), 8), Ok(0x0000_00ff_80ff_ffff));
    // No IROUTER for SGIs, PPIs or INTIDs past the last SPI.
    g.dist_write(0, at(31), 8, 1).unwrap();
    assert_eq!(g.dist_read(0, at(31), 8), Ok(0));
    g.dist_write(0, at(96), 8, 1).unwrap();
    assert_eq!(g.dist_read(0, at(96), 8), Ok(0));
    assert_eq!(bad(g.dist_read(0, at(40), 2)), Why::Size);
    assert_eq!(bad(g.dist_read(0, at(40), 1)), Why::Size);
}

#[test]
fn v3_distributor_leaves_private_interrupts_to_redistributors() {
    let mut g = gic(Version::V3, 1);
    for base in [0x80, 0x100, 0x200, 0x300] {
        wr(&mut g, base, 0xffff_ffff);
        assert_eq!(rd(&mut g, base), 0, "{base:#x}");
    }
    assert_eq!(g.redist_read(0, sgi_base(0, 0x100), 4), Ok(0));
    assert_eq!(
        g.redist_read(0, sgi_base(0, 0x80), 4),
        Ok(0xffff_ffff),
        "Group 1 by default"
    );
    assert_eq!(rd(&mut g, 0x84), 0xffff_ffff);
    // IGRPMODR, NSACR: RAZ/WI.
    wr(&mut g, 0xd04, !0);
    wr(&mut g, 0xe08, !0);
    assert_eq!(rd(&mut g, 0xd04) | rd(&mut g, 0xe08), 0);
}

#[test]
fn redistributor_typer_and_frames() {
    let mpidrs = vec![0x0, 0x1, 0x100, 0x1_0002_0101];
    let mut g = Vgic::new(Config {
        version: Version::V3,
        vcpus: 4,
        spis: 32,
        mpidrs: mpidrs.clone(),
    });
    assert_eq!(g.redist_size(), 4 * 0x20000);
    // What Linux does: walk the frames, match each TYPER's affinity, stop at Last.
    let mut found = Vec::new();
    let mut frame = 0;
    loop {
        let typer = g
            .redist_read(0, frame * Vgic::REDIST_STRIDE + 8, 8)
            .unwrap();
        assert_eq!(typer & 1, 0, "no LPIs");
        assert_eq!(typer >> 8 & 0xffff, frame, "Processor_Number");
        found.push(typer >> 32);
        if typer & 1 << 4 != 0 {
            break;
        }
        frame += 1;
    }
    assert_eq!(found, [0x0, 0x1, 0x100, 0x0102_0101]);
    let lo = g.redist_read(3, 3 * 0x20000 + 8, 4).unwrap();
    let hi = g.redist_read(3, 3 * 0x20000 + 0xc, 4).unwrap();
    assert_eq!(hi << 32 | lo, 0x0102_0101_0000_0310);
}

#[test]
fn waker_and_lpi_registers() {
    let mut g = gic(Version::V3, 2);
    let waker = Vgic::REDIST_STRIDE + 0x14;
    assert_eq!(g.redist_read(1, waker, 4), Ok(0x6), "asleep out of reset");
    g.redist_write(1, waker, 4, 0).unwrap();
    assert_eq!(g.redist_read(1, waker, 4), Ok(0));
    assert_eq!(g.redist_read(0, 0x14, 4), Ok(0x6), "per redistributor");
    g.redist_write(1, waker, 4, 0x2).unwrap();
    assert_eq!(g.redist_read(1, waker, 4), Ok(0x6));
    for off in [0x70, 0x78] {
        g.redist_write(0, off, 8, u64::MAX).unwrap();
        assert_eq!(g.redist_read(0, off, 8), Ok(0));
    }
    g.redist_write(0, 0x0, 4, 1).unwrap();
    assert_eq!(
        g.redist_read(0, 0x0, 4),
        Ok(0),
        "GICR_CTLR: no LPIs to enable"
    );
    assert_eq!(g.redist_read(0, 0x10, 4), Ok(0), "STATUSR");
}

#[test]
fn another_vcpus_redistributor() {
    let mut g = gic(Version::V3, 3);
    wr(&mut g, 0x0, 3);
    g.redist_write(0, sgi_base(2, 0x100), 4, 0x0800_0001)
        .unwrap();
    assert_eq!(g.redist_read(2, sgi_base(2, 0x100), 4), Ok(0x0800_0001));
    assert_eq!(g.redist_read(2, sgi_base(0, 0x100), 4), Ok(0));
    g.redist_write(1, sgi_base(2, 0x180), 4, 0x1).unwrap();
    assert_eq!(g.redist_read(0, sgi_base(2, 0x180), 4), Ok(0x0800_0000));
    g.redist_write(1, sgi_base(2, 0x200), 4, 0x0800_0000)
        .unwrap();
    assert_eq!(g.redist_read(1, sgi_base(2, 0x200), 4), Ok(0x0800_0000));
    assert!(g.has_pending(2), "PPI 27 of vCPU 2");
    assert!(!g.has_pending(0) && !g.has_pending(1));
}

#[test]
fn access_rules() {
    let mut g = gic(Version::V2, 2);
    assert_eq!(bad(g.dist_read(0, 0x100, 2)), Why::Size);
    assert_eq!(
        bad(g.dist_read(0, 0x100, 1)),
        Why::Size,
        "ISENABLER is word-only"
    );
    assert_eq!(bad(g.dist_read(0, 0x0, 8)), Why::Size, "CTLR is 32-bit");
    assert_eq!(bad(g.dist_read(0, 0x102, 4)), Why::Unaligned);
    assert_eq!(bad(g.dist_read(0, 0x10000, 4)), Why::OutsideFrame);
    assert_eq!(bad(g.dist_read(0, 0xfff4, 8)), Why::Unaligned);
    assert_eq!(bad(g.dist_read(0, 0xfffc, 8)), Why::OutsideFrame);
    assert_eq!(bad(g.dist_read(0, 0x0, 3)), Why::Size);
    assert_eq!(bad(g.dist_read(0, 0x0, 16)), Why::Size);
    assert_eq!(bad(g.dist_read(2, 0x0, 4)), Why::NoSuchVcpu);
    assert_eq!(bad(g.redist_read(0, 0x0, 4)), Why::NotV3);
    assert_eq!(
        g.dist_write(0, 0x401, 1, 0x80),
        Ok(Kick::NONE),
        "IPRIORITYR takes bytes"
    );
    // Reserved space: any aligned access reads zero.
    for size in [1, 2, 4, 8] {
        assert_eq!(g.dist_read(0, 0x1000, size), Ok(0));
        assert_eq!(g.dist_read(0, 0x0f08, size), Ok(0));
    }
    let mut g = gic(Version::V3, 2);
    assert_eq!(bad(g.redist_read(0, 0x40000, 4)), Why::OutsideFrame);
    assert_eq!(bad(g.redist_read(0, 0x3fff4, 8)), Why::Unaligned);
    assert_eq!(
        bad(g.redist_read(0, 0x10, 8)),
        Why::Size,
        "STATUSR, WAKER are 32-bit"
    );
    assert_eq!(bad(g.redist_read(0, 0x10100, 1)), Why::Size);
    assert_eq!(g.redist_read(0, 0x10401, 1), Ok(0));
    assert_eq!(g.redist_read(0, 0x8, 8), Ok(0));
    assert_eq!(bad(g.redist_read(5, 0x8, 8)), Why::NoSuchVcpu);
    let e = g.dist_read(0, 0x3, 4).unwrap_err();
    assert_eq!(
        alloc::format!("{e}"),
        "vGIC: 4-byte access at 0x3: unaligned access"
    );
}
