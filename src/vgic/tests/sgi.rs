//! SGIs between vCPUs: GICv2 `GICD_SGIR` (each TargetListFilter, per-source pending state) and
//! GICv3 `ICC_SGI1R_EL1` (target lists, affinity, range selector, broadcast).

use super::*;

fn sgir(filter: u32, list: u8, intid: u32) -> u64 {
    u64::from(filter << 24 | u32::from(list) << 16 | intid)
}

fn sgi1r(intid: u64, aff3: u64, aff2: u64, aff1: u64, rs: u64, list: u64, irm: bool) -> u64 {
    aff3 << 48 | u64::from(irm) << 40 | rs << 44 | aff2 << 32 | intid << 24 | aff1 << 16 | list
}

#[test]
fn v2_sgir_filters() {
    let mut g = booted(Version::V2, 4);
    // 0: the target list (bits of CPUs that do not exist are ignored).
    let k = g.dist_write(0, 0xf00, 4, sgir(0, 0b1111_0110, 3)).unwrap();
    assert_eq!(k, Kick(0b0110));
    // 1: everyone but the sender.
    let k = g.dist_write(2, 0xf00, 4, sgir(1, 0, 4)).unwrap();
    assert_eq!(k, Kick(0b1011));
    // 2: the sender only.
    let k = g.dist_write(3, 0xf00, 4, sgir(2, 0b1, 5)).unwrap();
    assert_eq!(k, Kick(0b1000));
    // 3: reserved, nothing sent.
    assert_eq!(
        g.dist_write(3, 0xf00, 4, sgir(3, 0xff, 6)).unwrap(),
        Kick::NONE
    );

    let taken = |g: &mut Vgic, v| {
        let mut c = Cpu::new(v);
        let mut t = c.run(g);
        t.sort_unstable();
        t
    };
    assert_eq!(taken(&mut g, 0), [(4, 2)]);
    assert_eq!(taken(&mut g, 1), [(3, 0), (4, 2)]);
    assert_eq!(taken(&mut g, 2), [(3, 0)]);
    assert_eq!(taken(&mut g, 3), [(4, 2), (5, 3)]);
    for v in 0..4 {
        assert!(!g.has_pending(v));
    }
}

#[test]
fn v2_sgi_sources_are_separate_interrupts() {
    let mut g = booted(Version::V2, 4);
    for src in [3, 0, 2] {
        g.dist_write(src, 0xf00, 4, sgir(0, 0b10, 7)).unwrap();
    }
    // The same source twice before delivery is one interrupt.
    g.dist_write(0, 0xf00, 4, sgir(0, 0b10, 7)).unwrap();
    assert_eq!(g.dist_read(1, 0xf24, 4), Ok(0b1101 << 24));
    let mut c = Cpu::new(1);
    let mut sources = Vec::new();
    for round in 0..3 {
        c.fill(&mut g);
        let lr = c.lr_of(7).unwrap();
        assert_eq!(lr.state, LrState::Pending);
        // One LR per SGI; the EOI of this source brings the vCPU back for the next one.
        assert_eq!(lr.eoi_maintenance, round < 2, "round {round}");
        let (intid, src) = c.ack().unwrap();
        assert_eq!(intid, 7);
        c.eoi(7);
        c.sync(&mut g);
        sources.push(src);
    }
    assert_eq!(sources, [0, 2, 3]);
    assert!(c.run(&mut g).is_empty());
}

#[test]
fn v2_sgi_from_another_source_while_active() {
    let mut g = booted(Version::V2, 2);
    g.dist_write(0, 0xf00, 4, sgir(0, 0b10, 1)).unwrap();
    let mut c = Cpu::new(1);
    c.fill(&mut g);
    assert_eq!(c.ack(), Some((1, 0)));
    c.sync(&mut g);
    // The guest is in the handler; vCPU 1 itself and vCPU 0 send SGI 1 again.
    g.dist_write(1, 0xf00, 4, sgir(2, 0, 1)).unwrap();
    g.dist_write(0, 0xf00, 4, sgir(0, 0b10, 1)).unwrap();
    assert!(g.has_pending(1), "source 1 is a different interrupt");
    c.fill(&mut g);
    let lr = c.lr_of(1).unwrap();
    assert_eq!((lr.state, lr.source), (LrState::PendingActive, 0));
    assert!(lr.eoi_maintenance, "source 1 waits");
    c.eoi(1);
    assert_eq!(c.ack(), Some((1, 0)));
    c.eoi(1);
    c.sync(&mut g);
    assert_eq!(c.run(&mut g), [(1, 1)]);
}

#[test]
fn v2_disabled_sgi_waits() {
    let mut g = booted(Version::V2, 2);
    g.dist_write(1, 0x180, 4, 1 << 2).unwrap();
    g.dist_write(0, 0xf00, 4, sgir(0, 0b10, 2)).unwrap();
    assert!(!g.has_pending(1));
    let mut c = Cpu::new(1);
    assert!(c.run(&mut g).is_empty());
    let k = g.dist_write(1, 0x100, 4, 1 << 2).unwrap();
    assert!(k.contains(1));
    assert_eq!(c.run(&mut g), [(2, 0)]);
}

#[test]
fn v3_sgi1r_target_lists() {
    let mpidrs = vec![0x0, 0x1, 0x2, 0x100, 0x101, 0x1_0003_0011];
    let n = mpidrs.len();
    let mut g = Vgic::new(Config {
        version: Version::V3,
        vcpus: n,
        spis: 32,
        mpidrs,
    });
    wr(&mut g, 0x0, 3);
    for v in 0..n {
        g.redist_write(v, sgi_base(v, 0x100), 4, 0xffff).unwrap();
    }
    // Cluster 0, CPUs 0 and 2.
    assert_eq!(
        g.sgi1r_write(1, sgi1r(1, 0, 0, 0, 0, 0b101, false)),
        Kick(0b101)
    );
    // Cluster 1 (Aff1 = 1), CPU 1: vCPU 4.
    assert_eq!(
        g.sgi1r_write(0, sgi1r(2, 0, 0, 1, 0, 0b10, false)),
        Kick(0b10000)
    );
    // Aff3.Aff2.Aff1 = 1.3.0, Aff0 17: range selector 1, bit 1.
    assert_eq!(
        g.sgi1r_write(0, sgi1r(3, 1, 3, 0, 1, 0b10, false)),
        Kick(0b100000)
    );
    assert_eq!(
        g.sgi1r_write(0, sgi1r(3, 1, 3, 0, 0, 0b10, false)),
        Kick::NONE
    );
    // Nobody there.
    assert_eq!(
        g.sgi1r_write(0, sgi1r(3, 0, 0, 7, 0, 0xffff, false)),
        Kick::NONE
    );
    // IRM: everyone but the sender.
    assert_eq!(
        g.sgi1r_write(3, sgi1r(4, 9, 9, 9, 0, 0, true)),
        Kick(0b110111)
    );
    let pending: Vec<Vec<u32>> = (0..n).map(|v| g.pending_irqs(v)).collect();
    assert_eq!(
        pending,
        [
            vec![1, 4],
            vec![4],
            vec![1, 4],
            vec![],
            vec![2, 4],
            vec![3, 4]
        ]
    );
    // The register reads of the target's redistributor agree.
    assert_eq!(g.redist_read(0, sgi_base(4, 0x200), 4), Ok(0b10100));
    let mut c = Cpu::new(4);
    assert_eq!(c.run(&mut g), [(2, 0), (4, 0)]);
}

#[test]
fn v3_sgi_groups() {
    let mut g = booted(Version::V3, 2);
    // SGI 5 of vCPU 1 in Group 0.
    g.redist_write(1, sgi_base(1, 0x80), 4, 0xffff_ffdf)
        .unwrap();
    assert_eq!(
        g.sgi1r_write(0, sgi1r(5, 0, 0, 0, 0, 0b10, false)),
        Kick::NONE
    );
    assert_eq!(
        g.sgi0r_write(0, sgi1r(5, 0, 0, 0, 0, 0b10, false)),
        Kick(0b10)
    );
    let mut c = Cpu::new(1);
    c.fill(&mut g);
    assert!(!c.lr_of(5).unwrap().group1);
    // GICv2 has no such register.
    let mut g = booted(Version::V2, 2);
    assert_eq!(
        g.sgi1r_write(0, sgi1r(5, 0, 0, 0, 0, 0b10, false)),
        Kick::NONE
    );
    assert!(!g.has_pending(1));
}

#[test]
fn v3_sgi_again_while_active_is_pending_active() {
    let mut g = booted(Version::V3, 2);
    g.sgi1r_write(0, sgi1r(0, 0, 0, 0, 0, 0b10, false));
    let mut c = Cpu::new(1);
    c.fill(&mut g);
    assert_eq!(c.ack(), Some((0, 0)));
    c.sync(&mut g);
    g.sgi1r_write(0, sgi1r(0, 0, 0, 0, 0, 0b10, false));
    c.fill(&mut g);
    assert_eq!(c.state_of(0), LrState::PendingActive);
    c.eoi(0);
    assert_eq!(c.ack(), Some((0, 0)));
    c.eoi(0);
    c.sync(&mut g);
    assert!(!g.has_pending(1));
    assert!(c.run(&mut g).is_empty());
}
