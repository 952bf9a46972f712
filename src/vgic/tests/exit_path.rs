//! The live sets (see [`live`](super::super::live)): the exit path's answers, which look only at
//! live interrupts, against a reference that scans every interrupt as the vGIC used to, in
//! lockstep over thousands of random operations.

use alloc::collections::BTreeSet;

use super::super::irq::Irq;
use super::super::live::{self, Set};
use super::super::{MAX_LRS, NO_SLOT};
use super::*;

/// The reference: full scans, vectors and sorting, as before the live sets.
impl Vgic {
    fn deliverable_slow(&self, vcpu: usize) -> Vec<u32> {
        let private = self
            .cpus
            .get(vcpu)
            .into_iter()
            .flat_map(|c| c.irqs.iter().enumerate());
        let spis = self.spis.iter().enumerate().map(|(i, q)| (i + 32, q));
        private
            .chain(spis)
            .filter(|&(intid, irq)| {
                let v2_sgi = self.version == Version::V2 && intid < 16;
                let waiting = if v2_sgi && irq.active {
                    irq.sgi_sources & !(1 << irq.active_source) != 0
                } else {
                    irq.pending() && !irq.active
                };
                waiting && self.may_signal(irq) && (intid < 32 || self.spi_owner(irq) == Some(vcpu))
            })
            .map(|(intid, _)| intid as u32)
            .collect()
    }

    fn candidates_slow(&self, vcpu: usize) -> Vec<(u32, bool, u8)> {
        let v2 = self.version == Version::V2;
        let mut out = Vec::new();
        for (i, irq) in self.cpus[vcpu].irqs.iter().enumerate() {
            let waiting = if v2 && i < 16 {
                irq.sgi_sources != 0
            } else {
                irq.pending_here()
            };
            if irq.active || waiting && self.may_signal(irq) {
                out.push((i as u32, irq.active, irq.priority));
            }
        }
        for (i, irq) in self.spis.iter().enumerate() {
            if irq.in_lr.is_some() {
                continue;
            }
            let mine = if irq.active {
                irq.holder == Some(vcpu as u8)
            } else {
                irq.pending_here() && self.may_signal(irq) && self.spi_owner(irq) == Some(vcpu)
            };
            if mine {
                out.push((i as u32 + 32, irq.active, irq.priority));
            }
        }
        out
    }

    fn fill_slow(&mut self, vcpu: usize, lrs: &mut [Lr]) -> Fill {
        if vcpu >= self.cpus.len() {
            lrs.fill(Lr::INVALID);
            return Fill::default();
        }
        if self.cpus[vcpu].unsynced {
            self.sync_lrs(vcpu, lrs);
        }
        let nslots = lrs.len().min(MAX_LRS);
        let mut candidates = self.candidates_slow(vcpu);
        candidates.sort_unstable_by_key(|&(intid, active, priority)| (!active, priority, intid));
        let underflow = candidates.len() > nslots;
        candidates.truncate(nslots);

        let cpu = &self.cpus[vcpu];
        let previous: Vec<Option<u32>> = cpu
            .slots
            .iter()
            .map(|&s| (s != NO_SLOT).then_some(u32::from(s)))
            .collect();
        let mut slots = vec![None; nslots];
        let mut newcomers = Vec::new();
        for &(intid, _, _) in &candidates {
            match previous.iter().position(|&s| s == Some(intid)) {
                Some(k) if k < nslots => slots[k] = Some(intid),
                _ => newcomers.push(intid),
            }
        }
        let mut free = 0;
        for intid in newcomers {
            while slots[free].is_some() {
                free += 1;
            }
            slots[free] = Some(intid);
        }
        for (k, lr) in lrs.iter_mut().enumerate() {
            *lr = match slots.get(k).copied().flatten() {
                Some(intid) => self.place(vcpu, intid, k as u8),
                None => Lr::INVALID,
            };
        }
        let cpu = &mut self.cpus[vcpu];
        cpu.slots = [NO_SLOT; MAX_LRS];
        cpu.occupied = 0;
        for (k, s) in slots.iter().enumerate() {
            cpu.slots[k] = s.map_or(NO_SLOT, |i| i as u16);
            cpu.occupied |= u64::from(s.is_some()) << k;
        }
        cpu.unsynced = true;
        Fill { underflow }
    }

    /// Every live interrupt is in its live set.
    fn check_live_sets(&self, what: &str) {
        for (v, cpu) in self.cpus.iter().enumerate() {
            for (i, irq) in cpu.irqs.iter().enumerate() {
                assert!(
                    !irq.live() || cpu.live >> i & 1 != 0,
                    "{what}: vCPU {v} INTID {i} live but not in the set: {irq:?}"
                );
            }
        }
        for (i, irq) in self.spis.iter().enumerate() {
            assert!(
                !irq.live() || self.spi_live.contains(i),
                "{what}: SPI {} live but not in the set: {irq:?}",
                i + 32
            );
        }
    }

    /// The same interrupt state (the live sets aside).
    fn assert_same(&self, other: &Vgic, what: &str) {
        assert_eq!(
            (self.enable_grp0, self.enable_grp1),
            (other.enable_grp0, other.enable_grp1)
        );
        assert_eq!(self.hw_enables, other.hw_enables, "{what}");
        for (v, (a, b)) in self.cpus.iter().zip(&other.cpus).enumerate() {
            assert_eq!(a.irqs, b.irqs, "{what}: vCPU {v}");
            assert_eq!(a.slots, b.slots, "{what}: vCPU {v}");
            let occupied = (0..MAX_LRS).filter(|&k| a.slots[k] != NO_SLOT);
            assert!(occupied.eq(live::bits64(a.occupied)), "{what}: vCPU {v}");
            assert_eq!(
                (a.unsynced, a.asleep, a.affinity),
                (b.unsynced, b.asleep, b.affinity),
                "{what}: vCPU {v}"
            );
        }
        let differs = self.spis.iter().zip(&other.spis).position(|(a, b)| a != b);
        if let Some(i) = differs {
            panic!(
                "{what}: SPI {}: {:?} vs {:?}",
                i + 32,
                self.spis[i],
                other.spis[i]
            );
        }
    }
}

/// One random change through the public interface, the same for both vGICs.
fn random_change(r: &mut Rng, g: &mut Vgic, vcpus: usize, nintids: u32) -> Kick {
    let v3 = g.version() == Version::V3;
    let vcpu = r.below(vcpus as u64) as usize;
    let intid = r.below(u64::from(nintids) + 8) as u32;
    let word = u64::from(intid / 32) * 4;
    // Mostly a single bit, sometimes a whole word.
    let bits = if r.one_in(4) {
        r.next() as u32
    } else {
        1 << (intid % 32)
    };
    let private_here = |off: u64| {
        if v3 && intid < 32 {
            Some(sgi_base(vcpu, off))
        } else {
            None
        }
    };
    let bank = |g: &mut Vgic, base: u64, value: u32| match private_here(base) {
        Some(off) => g.redist_write(vcpu, off, 4, value.into()).unwrap(),
        None => g.dist_write(vcpu, base + word, 4, value.into()).unwrap(),
    };
    match r.below(24) {
        0 => wr(g, 0, r.below(4) as u32),
        1 | 2 => bank(g, 0x100, bits),
        3 => bank(g, 0x180, bits),
        4 => bank(g, 0x200, bits),
        5 => bank(g, 0x280, bits),
        6 => bank(g, 0x300, bits),
        7 => bank(g, 0x380, bits),
        8 => bank(g, 0x080, if r.one_in(2) { !0 } else { r.next() as u32 }),
        9 => {
            set_priority(g, vcpu, intid.min(nintids - 1), r.next() as u8);
            Kick::NONE
        }
        10 => {
            let cfg = u64::from(intid / 16) * 4;
            let value = r.next();
            match private_here(0xc00 + cfg) {
                Some(off) => g.redist_write(vcpu, off, 4, value).unwrap(),
                None => g.dist_write(vcpu, 0xc00 + cfg, 4, value).unwrap(),
            }
        }
        11 if v3 => {
            let route = match r.below(4) {
                0 => 1 << 31,
                1 => r.next(),
                _ => r.below(vcpus as u64 + 1),
            };
            let off = 0x6000 + 8 * u64::from(intid);
            g.dist_write(vcpu, off, 8, route).unwrap_or(Kick::NONE)
        }
        11 => {
            let off = 0x800 + u64::from(intid);
            g.dist_write(vcpu, off, 1, r.next() & 0xff)
                .unwrap_or(Kick::NONE)
        }
        12 if v3 => {
            let off = vcpu as u64 * Vgic::REDIST_STRIDE + 0x14;
            g.redist_write(vcpu, off, 4, r.below(2) << 1).unwrap()
        }
        12 => {
            let value = r.below(3) << 24 | (r.next() & 0xff) << 16 | r.below(16);
            g.dist_write(vcpu, 0xf00, 4, value).unwrap()
        }
        // Affinity 0.0.0.x, so that the target list reaches the vCPUs; sometimes all but self.
        13 if v3 => g.sgi1r_write(
            vcpu,
            r.next() & (0xf << 24 | 0xffff) | (r.below(4) / 3) << 40,
        ),
        13 => {
            let off = [0xf10, 0xf20][r.below(2) as usize] + r.below(16);
            g.dist_write(vcpu, off, 1, r.next() & 0xff).unwrap()
        }
        14..=16 => g.inject(intid, Some(vcpu)),
        17..=19 => g.set_level(intid, Some(vcpu), r.one_in(2)),
        20 => {
            g.link_hw(intid, Some(vcpu), r.one_in(2).then_some(intid));
            Kick::NONE
        }
        21 => g.inject(intid, None),
        _ => g.set_level(intid, None, r.one_in(2)),
    }
}

/// The guest's side of a run: acknowledges, EOIs, and sometimes leaves an LR the fill would not
/// recognise.
fn guest(r: &mut Rng, lrs: &mut [Lr]) {
    for _ in 0..r.below(4) {
        let pending = lrs
            .iter_mut()
            .filter(|l| l.state == LrState::Pending)
            .min_by_key(|l| (l.priority, l.intid));
        if let Some(l) = pending {
            l.state = LrState::Active;
        }
    }
    for l in lrs.iter_mut() {
        if l.state.active() && r.one_in(2) {
            l.state = if l.state.pending() {
                LrState::Pending
            } else {
                LrState::Invalid
            };
        }
    }
    if !lrs.is_empty() && r.one_in(20) {
        let k = r.below(lrs.len() as u64) as usize;
        lrs[k] = match r.below(3) {
            0 => Lr::INVALID,
            1 => Lr {
                intid: r.below(100) as u32,
                ..lrs[k]
            },
            _ => Lr {
                state: LrState::from_bits(r.one_in(2), r.one_in(2)),
                ..lrs[k]
            },
        };
    }
}

/// The vGIC with the live sets and the full-scan reference, driven alike: same fills, same
/// answers to `has_pending` and `pending_irqs`, same state after every step; and every live
/// interrupt is always in its set.
#[test]
fn live_sets_answer_like_a_full_scan() {
    let shapes = [
        (Version::V2, 1, 64, 4),
        (Version::V2, 4, 256, 4),
        (Version::V2, 8, 988, 64),
        (Version::V3, 4, 256, 4),
        (Version::V3, 3, 988, 16),
        (Version::V3, 2, 96, 2),
    ];
    for (n, &(version, vcpus, spis, nlrs)) in shapes.iter().enumerate() {
        let mut r = Rng(0x5eed_0000_0000_0001 + n as u64 * 0x1_0001);
        let mut g = Vgic::new(Config {
            version,
            vcpus,
            spis,
            mpidrs: (0..vcpus as u64).collect(),
        });
        let mut reference = g.clone();
        let nintids = 32 + g.spis();
        let mut lrs = vec![vec![Lr::INVALID; nlrs]; vcpus];
        for step in 0..4000 {
            let what = alloc::format!("{version:?} {vcpus} vCPUs {spis} SPIs, step {step}");
            // Busy devices and guests: several changes between runs.
            for _ in 0..r.below(4) {
                let mut r2 = Rng(r.0);
                let a = random_change(&mut r, &mut g, vcpus, nintids);
                let b = random_change(&mut r2, &mut reference, vcpus, nintids);
                assert_eq!(a, b, "{what}");
            }
            // A vCPU runs: sync (usually) from its last run, fill, the guest acts.
            let v = r.below(vcpus as u64) as usize;
            let len = match r.below(40) {
                0 => 0,
                1 => 70,
                _ => nlrs,
            };
            lrs[v].resize(len, Lr::INVALID);
            if !r.one_in(10) {
                g.sync_lrs(v, &lrs[v]);
                reference.sync_lrs(v, &lrs[v]);
            }
            let mut other = lrs[v].clone();
            let fill = g.fill_lrs(v, &mut lrs[v]);
            let expected = reference.fill_slow(v, &mut other);
            assert_eq!(lrs[v], other, "{what}: LRs of vCPU {v}");
            assert_eq!(fill, expected, "{what}: vCPU {v}");
            guest(&mut r, &mut lrs[v]);

            g.assert_same(&reference, &what);
            g.check_live_sets(&what);
            assert_eq!(g.mark, [0; 16], "{what}: fill scratch left dirty");
            for u in 0..vcpus + 1 {
                let slow = reference.deliverable_slow(u);
                assert_eq!(g.pending_irqs(u), slow, "{what}: vCPU {u}");
                assert_eq!(g.has_pending(u), !slow.is_empty(), "{what}: vCPU {u}");
            }
        }
    }
}

/// After a burst, the live sets shrink back to what is live: a fill drops what it finds dead.
#[test]
fn live_sets_shrink_after_a_fill() {
    let mut g = booted(Version::V3, 2);
    assert_eq!(g.spi_live.iter().count(), 64, "booting touched every SPI");
    let mut c = Cpu::new(0);
    c.fill(&mut g);
    c.sync(&mut g);
    assert_eq!(g.spi_live.iter().count(), 0);
    assert_eq!(g.cpus[0].live, 0);
    assert_ne!(g.cpus[1].live, 0, "vCPU 1 has not filled yet");
    g.inject(40, None);
    g.set_level(27, Some(0), true);
    assert_eq!(g.spi_live.iter().collect::<Vec<_>>(), [8]);
    assert_eq!(c.run(&mut g), [(27, 0), (40, 0)]);
    g.set_level(27, Some(0), false);
    assert_eq!(c.run(&mut g), []);
    assert_eq!(g.spi_live.iter().count(), 0);
    assert_eq!(g.cpus[0].live, 0);
}

#[test]
fn set_against_a_model() {
    let mut r = Rng(77);
    let mut s = Set::new();
    let mut model = BTreeSet::new();
    for _ in 0..20000 {
        let i = if r.one_in(3) {
            r.below(1100) as usize
        } else {
            [0, 63, 64, 511, 1023, 1024][r.below(6) as usize]
        };
        if r.one_in(2) {
            s.insert(i);
            if i < 1024 {
                model.insert(i);
            }
        } else {
            s.remove(i);
            model.remove(&i);
        }
        assert_eq!(s.contains(i), model.contains(&i));
        let from = r.below(1100) as usize;
        assert_eq!(s.next_from(from), model.range(from..).next().copied());
        if r.one_in(50) {
            assert!(s.iter().eq(model.iter().copied()));
        }
    }
    assert!(live::bits32(0x8000_0005).eq([0, 2, 31]));
    assert_eq!(live::bits32(0).count(), 0);
}

/// A fill's choice: the best candidates for the room there is, and whether others wait.
#[test]
fn best_keeps_the_best() {
    use super::super::deliver::Best;
    let irq = |active, priority| Irq {
        active,
        priority,
        ..Irq::new(false, true)
    };
    let intids = |b: &Best| b.chosen().iter().map(|k| k & 0xffff).collect::<Vec<_>>();
    let mut room = [0; 3];
    let mut b = Best::new(&mut room);
    for (intid, active, prio) in [
        (40, false, 0x80),
        (41, false, 0x10),
        (42, true, 0xf0),
        (43, false, 0x10),
        (44, false, 0x08),
        (45, false, 0xff),
    ] {
        b.offer(intid, &irq(active, prio));
    }
    assert!(b.overflow);
    assert_eq!(intids(&b), [42, 44, 41]);
    let mut b = Best::new(&mut []);
    assert_eq!(intids(&b), []);
    assert!(!b.overflow);
    b.offer(40, &irq(false, 0));
    assert!(b.overflow);
    let mut room = [0; MAX_LRS];
    let mut b = Best::new(&mut room);
    for i in 0..MAX_LRS as u32 {
        b.offer(1000 - i, &irq(false, 0));
    }
    assert!(!b.overflow);
    assert_eq!(intids(&b)[0], 1000 - MAX_LRS as u32 + 1);
}

#[test]
fn kick_names_its_vcpus() {
    assert!(Kick(0x8000_0000_0000_0005).vcpus().eq([0, 2, 63]));
    assert_eq!(Kick::NONE.vcpus().count(), 0);
    assert_eq!(Kick(u64::MAX).vcpus().count(), 64);
}
