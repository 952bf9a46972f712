//! Routing, level and edge semantics, and the LR cycle: fill, the guest acknowledges and EOIs,
//! sync; with more interrupts than LRs; with state changed by register writes meanwhile.

use super::*;

const VERSIONS: [Version; 2] = [Version::V2, Version::V3];

/// Routes SPI `intid` to vCPU `v` (GICv2 target bit, GICv3 affinity = `v`).
fn route(g: &mut Vgic, intid: u32, v: usize) -> Kick {
    match g.version() {
        Version::V2 => g
            .dist_write(0, 0x800 + u64::from(intid), 1, 1 << v)
            .unwrap(),
        Version::V3 => g
            .dist_write(0, 0x6000 + 8 * u64::from(intid), 8, v as u64)
            .unwrap(),
    }
}

#[test]
fn spi_routing_v2() {
    let mut g = booted(Version::V2, 4);
    route(&mut g, 40, 2);
    assert_eq!(g.inject(40, None), Kick(0b100));
    assert_eq!(g.pending_irqs(2), [40]);
    assert!((0..4).all(|v| v == 2 || !g.has_pending(v)));
    // Several targets: one of them gets it, once.
    g.dist_write(0, 0x800 + 41, 1, 0b1010).unwrap();
    assert_eq!(g.inject(41, None), Kick(0b10));
    let (mut c1, mut c3) = (Cpu::new(1), Cpu::new(3));
    c1.fill(&mut g);
    c3.fill(&mut g);
    assert_eq!(c1.state_of(41), LrState::Pending);
    assert_eq!(c3.state_of(41), LrState::Invalid);
    c1.sync(&mut g);
    c3.sync(&mut g);
    assert_eq!(c3.run(&mut g), []);
    assert_eq!(c1.run(&mut g), [(41, 0)]);
    // No target: nobody.
    g.dist_write(0, 0x800 + 42, 1, 0).unwrap();
    assert_eq!(g.inject(42, None), Kick::NONE);
    assert!((0..4).all(|v| !g.pending_irqs(v).contains(&42)));
    // Retargeting a pending SPI moves it and kicks the new target.
    assert_eq!(g.dist_write(0, 0x800 + 42, 1, 0b1000), Ok(Kick(0b1000)));
    assert_eq!(g.pending_irqs(3), [42]);
}

#[test]
fn spi_routing_v3() {
    let mut g = Vgic::new(Config {
        version: Version::V3,
        vcpus: 3,
        spis: 64,
        mpidrs: vec![0x0, 0x100, 0x1_0000_0000],
    });
    wr(&mut g, 0x0, 3);
    wr(&mut g, 0x104, !0);
    let irouter = |intid: u64| 0x6000 + 8 * intid;
    g.dist_write(0, irouter(33), 8, 0x100).unwrap();
    g.dist_write(0, irouter(34), 8, 0x1_0000_0000).unwrap();
    g.dist_write(0, irouter(35), 8, 0x2).unwrap();
    assert_eq!(g.inject(33, None), Kick(0b10));
    assert_eq!(g.inject(34, None), Kick(0b100));
    assert_eq!(
        g.inject(35, None),
        Kick::NONE,
        "no vCPU has affinity 0.0.0.2"
    );
    assert_eq!(g.pending_irqs(1), [33]);
    assert_eq!(g.pending_irqs(2), [34]);
    assert_eq!(g.pending_irqs(0), []);
    // 1-of-N goes to a vCPU whose redistributor is awake.
    g.dist_write(0, irouter(36), 8, 1 << 31).unwrap();
    assert_eq!(g.inject(36, None), Kick::NONE, "all asleep");
    let k = g
        .redist_write(0, 2 * Vgic::REDIST_STRIDE + 0x14, 4, 0)
        .unwrap();
    assert!(k.contains(2));
    assert!(g.pending_irqs(2).contains(&36));
    g.redist_write(0, Vgic::REDIST_STRIDE + 0x14, 4, 0).unwrap();
    assert!(g.pending_irqs(1).contains(&36) && !g.pending_irqs(2).contains(&36));
}

#[test]
fn lr_cycle_for_each_kind() {
    for version in VERSIONS {
        let mut g = booted(version, 2);
        route(&mut g, 50, 1);
        route(&mut g, 51, 1);
        route(&mut g, 52, 1);
        wr(&mut g, 0xc0c, 0x2 << 4); // SPI 50 edge-triggered
        g.link_hw(52, None, Some(152));
        let kinds = [
            ("SGI", 3),
            ("PPI", 27),
            ("edge SPI", 50),
            ("level SPI", 51),
            ("HW SPI", 52),
        ];
        for (what, intid) in kinds {
            let kick = match intid {
                3 => g.inject(3, Some(1)),
                27 => g.set_level(27, Some(1), true),
                51 => g.set_level(51, None, true),
                _ => g.inject(intid, None),
            };
            assert_eq!(kick, Kick(0b10), "{version:?} {what}");
            let mut c = Cpu::new(1);
            c.fill(&mut g);
            let lr = c.lr_of(intid).unwrap();
            assert_eq!(lr.state, LrState::Pending, "{version:?} {what}");
            assert_eq!(lr.priority, 0xa0);
            assert_eq!(lr.group1, version == Version::V3);
            assert_eq!(lr.hw, (intid == 52).then_some(152));
            let slot = c.lrs.iter().position(|l| l.intid == intid).unwrap();
            let source = u8::from(version == Version::V2 && intid < 16);
            assert_eq!(c.ack(), Some((intid, source)));
            c.sync(&mut g);
            assert!(!g.has_pending(1), "{version:?} {what}: active, not pending");
            assert!(g.redist_or_dist_active(1, intid));
            // The device drops its line while the guest handles it.
            g.set_level(intid, Some(1), false);
            c.fill(&mut g);
            assert_eq!(c.lrs[slot].intid, intid, "kept in its LR");
            assert_eq!(c.lrs[slot].state, LrState::Active);
            c.eoi(intid);
            c.sync(&mut g);
            assert!(!g.redist_or_dist_active(1, intid), "{version:?} {what}");
            c.fill(&mut g);
            assert!(
                c.lrs.iter().all(|l| l.state == LrState::Invalid),
                "{version:?} {what}"
            );
            c.sync(&mut g);
        }
    }
}

impl Vgic {
    /// `ISACTIVER` as the guest of vCPU `v` reads it for `intid`.
    fn redist_or_dist_active(&mut self, v: usize, intid: u32) -> bool {
        let word = if intid < 32 && self.version() == Version::V3 {
            self.redist_read(v, sgi_base(v, 0x300), 4).unwrap()
        } else {
            self.dist_read(v, 0x300 + u64::from(intid / 32) * 4, 4)
                .unwrap()
        };
        word >> (intid % 32) & 1 != 0
    }
}

#[test]
fn level_stays_pending_until_lowered() {
    for version in VERSIONS {
        let mut g = booted(version, 1);
        let mut c = Cpu::new(0);
        g.set_level(40, None, true);
        c.fill(&mut g);
        assert_eq!(c.ack(), Some((40, 0)));
        c.sync(&mut g);
        // Still asserted: active only, with an EOI maintenance request to look again.
        c.fill(&mut g);
        let lr = c.lr_of(40).unwrap();
        assert_eq!(lr.state, LrState::Active);
        assert!(lr.eoi_maintenance);
        c.eoi(40);
        c.sync(&mut g);
        assert!(g.has_pending(0), "the line is still high");
        assert_eq!(c.run(&mut g), [(40, 0)]);
        assert_eq!(c.run(&mut g), [(40, 0)]);
        g.set_level(40, None, false);
        assert_eq!(c.run(&mut g), []);
        // Lowered before the guest acknowledged: gone, though it was in an LR.
        g.set_level(40, None, true);
        c.fill(&mut g);
        assert_eq!(c.state_of(40), LrState::Pending);
        g.set_level(40, None, false);
        c.sync(&mut g);
        assert!(!g.has_pending(0));
        assert_eq!(c.run(&mut g), []);
    }
}

#[test]
fn level_software_pending_ends_with_activation() {
    let mut g = booted(Version::V3, 1);
    wr(&mut g, 0x204, 1 << 8);
    assert_eq!(g.pending_irqs(0), [40]);
    let mut c = Cpu::new(0);
    c.fill(&mut g);
    assert_eq!(c.ack(), Some((40, 0)));
    c.sync(&mut g);
    assert_eq!(rd(&mut g, 0x204), 0, "activation consumed it");
    c.fill(&mut g);
    c.eoi(40);
    c.sync(&mut g);
    assert_eq!(c.run(&mut g), []);
}

#[test]
fn edge_semantics() {
    for version in VERSIONS {
        let mut g = booted(version, 1);
        wr(&mut g, 0xc08, 0xaaaa_aaaa); // SPIs 32-47 edge
        let mut c = Cpu::new(0);
        // Again while active: pending and active.
        g.inject(40, None);
        c.fill(&mut g);
        c.ack();
        c.sync(&mut g);
        g.inject(40, None);
        c.fill(&mut g);
        assert_eq!(c.state_of(40), LrState::PendingActive);
        c.eoi(40);
        assert_eq!(c.ack(), Some((40, 0)));
        c.eoi(40);
        c.sync(&mut g);
        assert_eq!(c.run(&mut g), []);
        // Again while still pending in the LR: one interrupt.
        c.fill(&mut g);
        g.inject(41, None);
        c.sync(&mut g);
        c.fill(&mut g);
        let k = g.inject(41, None);
        assert_eq!(k, Kick(1), "the holder must look again");
        c.sync(&mut g);
        assert_eq!(c.run(&mut g), [(41, 0)]);
        assert_eq!(c.run(&mut g), []);
        // Again after the guest took it, during the same run: a second interrupt.
        g.inject(42, None);
        c.fill(&mut g);
        assert_eq!(c.ack(), Some((42, 0)));
        g.inject(42, None);
        c.eoi(42);
        c.sync(&mut g);
        assert_eq!(c.run(&mut g), [(42, 0)]);
        assert_eq!(c.run(&mut g), []);
        // An edge needs a rising level.
        g.set_level(43, None, true);
        g.set_level(43, None, true);
        assert_eq!(c.run(&mut g), [(43, 0)]);
        assert_eq!(c.run(&mut g), []);
        g.set_level(43, None, false);
        g.set_level(43, None, true);
        assert_eq!(c.run(&mut g), [(43, 0)]);
    }
}

#[test]
fn more_pending_than_lrs() {
    for version in VERSIONS {
        let mut g = booted(version, 1);
        let prios = [0x50, 0x10, 0x90, 0x30, 0x10, 0x80, 0x20, 0x60, 0x40, 0x70];
        for (i, &p) in prios.iter().enumerate() {
            let intid = 40 + i as u32;
            set_priority(&mut g, 0, intid, p);
            g.inject(intid, None);
        }
        let mut c = Cpu::new(0);
        let mut order = Vec::new();
        let mut underflows = Vec::new();
        for _ in 0..10 {
            let f = c.fill(&mut g);
            if c.lrs.iter().all(|l| l.state == LrState::Invalid) {
                break;
            }
            underflows.push(f.underflow);
            while let Some((intid, _)) = c.ack() {
                c.eoi(intid);
                order.push(intid);
            }
            c.sync(&mut g);
        }
        let mut expected: Vec<u32> = (40..50).collect();
        expected.sort_by_key(|&i| (prios[i as usize - 40], i));
        assert_eq!(order, expected, "{version:?}");
        assert_eq!(underflows, [true, true, false], "{version:?}");
    }
}

#[test]
fn more_pending_than_lrs_drained_one_at_a_time() {
    // The guest takes one interrupt per run, and new ones keep arriving.
    let mut g = booted(Version::V2, 1);
    let mut c = Cpu::new(0);
    let mut order = Vec::new();
    let mut next = 40u32;
    for round in 0..40 {
        if round % 2 == 0 && next < 60 {
            for intid in next..next + 3 {
                set_priority(&mut g, 0, intid, ((intid * 7) % 16 * 8) as u8);
                g.inject(intid, None);
            }
            next += 3;
        }
        c.fill(&mut g);
        if let Some((intid, _)) = c.ack() {
            c.eoi(intid);
            order.push(intid);
        }
        c.sync(&mut g);
    }
    order.sort_unstable();
    assert_eq!(order, (40..next).collect::<Vec<_>>(), "each exactly once");
}

#[test]
fn disabled_and_group_gated_interrupts_wait() {
    for version in VERSIONS {
        let mut g = booted(version, 1);
        let mut c = Cpu::new(0);
        wr(&mut g, 0x184, 1 << 8);
        assert_eq!(g.inject(40, None), Kick::NONE);
        assert!(!g.has_pending(0));
        assert_eq!(c.run(&mut g), []);
        assert_eq!(set_bit(&mut g, 0, 0x100, 40), Kick(1));
        assert_eq!(c.run(&mut g), [(40, 0)]);
        // Disabled while waiting in an LR: taken out, then back once enabled.
        g.inject(40, None);
        c.fill(&mut g);
        assert_eq!(set_bit(&mut g, 0, 0x180, 40), Kick(1));
        c.sync(&mut g);
        assert_eq!(c.run(&mut g), []);
        assert_eq!(rd(&mut g, 0x204) >> 8 & 1, 1, "still pending");
        set_bit(&mut g, 0, 0x100, 40);
        assert_eq!(c.run(&mut g), [(40, 0)]);
        // The distributor's group enables.
        wr(&mut g, 0x0, 0);
        g.inject(41, None);
        assert!(!g.has_pending(0));
        assert_eq!(c.run(&mut g), []);
        let group = if version == Version::V3 { 2 } else { 1 };
        assert_eq!(wr(&mut g, 0x0, 3 ^ group), Kick(1));
        assert_eq!(c.run(&mut g), []);
        wr(&mut g, 0x0, group);
        assert_eq!(c.run(&mut g), [(41, 0)]);
    }
}

#[test]
fn hw_linked_interrupts() {
    for version in VERSIONS {
        let mut g = booted(version, 2);
        g.link_hw(27, Some(1), Some(27));
        g.link_hw(45, None, Some(77));
        route(&mut g, 45, 1);
        let mut c = Cpu::new(1);
        g.inject(27, Some(1));
        g.inject(45, None);
        c.fill(&mut g);
        for (intid, p) in [(27, 27), (45, 77)] {
            let lr = c.lr_of(intid).unwrap();
            assert_eq!((lr.hw, lr.eoi_maintenance), (Some(p), false));
            match version {
                Version::V3 => {
                    assert_eq!(
                        lr::encode_v3(&lr) >> 32 & 0x2000_1fff,
                        1 << 29 | u64::from(p)
                    )
                }
                Version::V2 => assert_eq!(lr::encode_v2(&lr) >> 10 & 0x2003ff, 1 << 21 | p),
            }
        }
        assert_eq!(c.ack(), Some((27, 0)));
        c.sync(&mut g);
        // Never pending and active in an HW LR: the next one waits for the deactivation.
        g.inject(27, Some(1));
        c.fill(&mut g);
        assert_eq!(c.state_of(27), LrState::Active);
        c.eoi(27);
        c.sync(&mut g);
        let mut all = drain(&mut g, &mut c);
        all.sort_unstable();
        assert_eq!(all, [27, 45]);
        // A hardware-backed level line is the physical GIC's: lowering it is not the vGIC's.
        g.set_level(45, None, true);
        g.set_level(45, None, false);
        assert_eq!(drain(&mut g, &mut c), [45]);
        g.link_hw(45, None, None);
        g.inject(45, None);
        c.fill(&mut g);
        assert_eq!(c.lr_of(45).unwrap().hw, None);
    }
}

#[test]
fn has_pending_ignores_priority_but_not_activity() {
    let mut g = booted(Version::V3, 1);
    set_priority(&mut g, 0, 40, 0xf8);
    g.inject(40, None);
    assert!(g.has_pending(0));
    let mut c = Cpu::new(0);
    c.fill(&mut g);
    c.ack();
    c.sync(&mut g);
    assert!(!g.has_pending(0));
    assert_eq!(g.pending_irqs(0), []);
    g.set_level(27, Some(0), true);
    assert_eq!(g.pending_irqs(0), [27]);
}

#[test]
fn register_writes_while_in_an_lr() {
    let mut g = booted(Version::V2, 2);
    let mut c = Cpu::new(0);
    // ICPENDR from another vCPU while the interrupt waits in vCPU 0's LR.
    g.inject(40, None);
    c.fill(&mut g);
    assert_eq!(rd(&mut g, 0x204) >> 8 & 1, 1);
    let k = g.dist_write(1, 0x284, 4, 1 << 8).unwrap();
    assert!(k.contains(0));
    assert_eq!(rd(&mut g, 0x204), 0);
    c.sync(&mut g);
    assert_eq!(c.run(&mut g), []);
    // ICACTIVER while the guest has it active: deactivated, the LR dropped at the next fill.
    g.inject(41, None);
    c.fill(&mut g);
    c.ack();
    assert!(wr(&mut g, 0x384, 1 << 9).contains(0));
    assert_eq!(rd(&mut g, 0x304), 0);
    c.sync(&mut g);
    c.fill(&mut g);
    assert_eq!(c.state_of(41), LrState::Invalid);
    c.sync(&mut g);
    // ISACTIVER on an idle SPI: active at its target, which must be able to deactivate it.
    wr(&mut g, 0x304, 1 << 10);
    c.fill(&mut g);
    assert_eq!(c.state_of(42), LrState::Active);
    c.eoi(42);
    c.sync(&mut g);
    assert_eq!(rd(&mut g, 0x304), 0);
}

#[test]
fn an_active_spi_stays_where_it_was_taken() {
    let mut g = booted(Version::V3, 2);
    g.redist_write(0, 0x14, 4, 0).unwrap();
    g.redist_write(1, Vgic::REDIST_STRIDE + 0x14, 4, 0).unwrap();
    wr(&mut g, 0xc08, 0xaaaa_aaaa);
    let (mut c0, mut c1) = (Cpu::new(0), Cpu::new(1));
    g.inject(40, None);
    c0.fill(&mut g);
    c0.ack();
    c0.sync(&mut g);
    let k = route(&mut g, 40, 1);
    assert_eq!(k, Kick::NONE, "nothing pending");
    g.inject(40, None);
    assert_eq!(c1.run(&mut g), [], "active on vCPU 0");
    c0.fill(&mut g);
    assert_eq!(c0.state_of(40), LrState::PendingActive);
    c0.eoi(40);
    c0.sync(&mut g);
    // Deactivated: the pending one follows the new route.
    assert_eq!(c0.run(&mut g), []);
    assert_eq!(c1.run(&mut g), [(40, 0)]);
}

#[test]
fn lrs_that_changed_under_the_vgic() {
    let mut g = booted(Version::V3, 1);
    let mut c = Cpu::new(0);
    g.inject(40, None);
    g.inject(41, None);
    c.fill(&mut g);
    // Something else in LR 0 and a cleared LR 1: taken as unchanged, nothing lost.
    c.lrs[0] = Lr {
        intid: 99,
        ..c.lrs[0]
    };
    c.lrs[1] = Lr::INVALID;
    c.sync(&mut g);
    assert_eq!(g.pending_irqs(0), [40, 41]);
    // A fill without a sync folds the LRs it is given first.
    c.fill(&mut g);
    assert_eq!(c.ack(), Some((40, 0)));
    c.fill(&mut g);
    assert_eq!(c.state_of(40), LrState::Active);
    c.eoi(40);
    c.sync(&mut g);
    assert_eq!(c.run(&mut g), [(41, 0)]);
    // Bad arguments do nothing.
    assert_eq!(g.inject(2000, None), Kick::NONE);
    assert_eq!(g.inject(16, None), Kick::NONE, "a PPI needs its vCPU");
    assert_eq!(g.set_level(20, Some(5), true), Kick::NONE);
    let mut lrs = [Lr {
        intid: 5,
        ..Lr::INVALID
    }; 4];
    assert_eq!(g.fill_lrs(3, &mut lrs), Fill::default());
    assert_eq!(lrs, [Lr::INVALID; 4]);
    g.sync_lrs(3, &lrs);
    assert!(!g.has_pending(3));
}

/// A guest that masks a hardware-backed SPI in its handler (as dom0's virtio code does): the
/// mask reaches the physical interrupt, and what was latched while masked does not come back
/// as a stale interrupt once the guest unmasks it.
#[test]
fn hw_spi_enable_is_mirrored_and_stale_latches_dropped() {
    for version in VERSIONS {
        let mut g = booted(version, 1);
        route(&mut g, 60, 0);
        g.link_hw(60, None, Some(60));
        g.take_hw_enables();
        // The guest disables it (ICENABLER): the physical one must follow.
        g.dist_write(0, 0x180 + 4, 4, 1 << (60 - 32)).unwrap();
        assert_eq!(g.take_hw_enables(), [(60, false)], "{version:?}");
        // The physical interrupt fired before the mask took hold: latched, not deliverable.
        g.inject(60, None);
        assert!(!g.has_pending(0));
        // Re-enabled: the latch is dropped; the hardware line decides (it fires again if high).
        g.dist_write(0, 0x100 + 4, 4, 1 << (60 - 32)).unwrap();
        assert_eq!(g.take_hw_enables(), [(60, true)]);
        assert!(!g.has_pending(0), "{version:?}: a stale latch came back");
        assert!(g.take_hw_enables().is_empty());
        // Non-hardware SPIs are not reported.
        g.dist_write(0, 0x180 + 4, 4, 1 << (61 - 32)).unwrap();
        assert!(g.take_hw_enables().is_empty());
    }
}

/// A level interrupt made pending by software (dom0's event PPI is level, and Ferrite injects
/// it): the latch goes into the LR without asking for an EOI maintenance interrupt, and one
/// injected while the guest handles the first (acknowledged, even already ended but not yet
/// synced) is a new one, not consumed by that activation.
#[test]
fn level_injection_while_in_an_lr_is_not_lost() {
    for version in VERSIONS {
        let mut g = booted(version, 1);
        let mut c = Cpu::new(0);
        g.inject(31, Some(0));
        c.fill(&mut g);
        let lr = c.lr_of(31).unwrap();
        assert_eq!(lr.state, LrState::Pending);
        assert!(
            !lr.eoi_maintenance,
            "{version:?}: a latch alone needs no EOI exit"
        );
        assert_eq!(c.ack(), Some((31, 0)));
        g.inject(31, Some(0)); // while the guest handles the first
        c.sync(&mut g);
        assert!(
            rd_pending_ppi(&mut g, version, 31),
            "{version:?}: pending and active"
        );
        c.fill(&mut g);
        // Active in the LR with another waiting: now the EOI must be seen.
        assert!(c.lr_of(31).unwrap().eoi_maintenance, "{version:?}");
        c.eoi(31);
        c.sync(&mut g);
        assert_eq!(c.run(&mut g), [(31, 0)], "{version:?}: the second was lost");
        // Ended before the sync: the same.
        g.inject(31, Some(0));
        c.fill(&mut g);
        assert_eq!(c.ack(), Some((31, 0)));
        c.eoi(31);
        g.inject(31, Some(0));
        c.sync(&mut g);
        assert_eq!(
            c.run(&mut g),
            [(31, 0)],
            "{version:?}: lost after an early EOI"
        );
        assert_eq!(c.run(&mut g), [], "{version:?}: delivered twice");
        // Not acknowledged before the exit: given back, delivered once.
        g.inject(31, Some(0));
        c.fill(&mut g);
        c.sync(&mut g);
        assert!(rd_pending_ppi(&mut g, version, 31), "{version:?}");
        assert_eq!(c.run(&mut g), [(31, 0)], "{version:?}");
        assert_eq!(c.run(&mut g), [], "{version:?}");
    }
}

/// Whether `ISPENDR` shows private interrupt `intid` of vCPU 0 pending.
fn rd_pending_ppi(g: &mut Vgic, version: Version, intid: u32) -> bool {
    let v = match version {
        Version::V2 => g.dist_read(0, 0x200, 4).unwrap(),
        Version::V3 => g.redist_read(0, sgi_base(0, 0x200), 4).unwrap(),
    };
    v >> intid & 1 != 0
}

/// An interrupt the guest has finished with leaves the live sets at the sync, so that the same
/// exit's refill finds the vCPU quiet and skips the list registers.
#[test]
fn finished_interrupts_leave_the_vcpu_quiet() {
    for version in VERSIONS {
        let mut g = booted(version, 1);
        let mut c = Cpu::new(0);
        route(&mut g, 40, 0);
        g.inject(31, Some(0));
        g.inject(40, None);
        assert!(!g.quiet(0));
        c.fill(&mut g);
        assert_eq!(c.ack(), Some((31, 0)));
        c.sync(&mut g);
        assert!(!g.quiet(0), "{version:?}: 31 active, 40 pending");
        c.fill(&mut g);
        c.eoi(31);
        assert_eq!(c.ack(), Some((40, 0)));
        c.eoi(40);
        c.sync(&mut g);
        assert!(g.quiet(0), "{version:?}: both ended");
    }
}
