//! Random inputs through every entry point: bad accesses are refused for the right reason and
//! nothing panics; random guests, devices and register writes neither lose nor duplicate
//! interrupts.

use super::*;

/// An offset that is usually near something interesting.
fn offset(r: &mut Rng, frame: u64) -> u64 {
    match r.below(4) {
        0 => r.next(),
        1 => r.below(frame + 0x100),
        2 => r.below(0x1000),
        _ => {
            [0x0, 0x6100, 0xf00, 0xffe8, 0x10080, 0x10400, 0x8, 0x14][r.below(8) as usize]
                + r.below(16)
        }
    }
}

/// Why an access should be refused on size, alignment or range grounds alone, if it should.
fn expected_basic(vcpu: usize, vcpus: usize, off: u64, size: u8, frame: u64) -> Option<Why> {
    if vcpu >= vcpus {
        Some(Why::NoSuchVcpu)
    } else if !matches!(size, 1 | 2 | 4 | 8) {
        Some(Why::Size)
    } else if off >= frame || frame - off < u64::from(size) {
        Some(Why::OutsideFrame)
    } else if !off.is_multiple_of(u64::from(size)) {
        Some(Why::Unaligned)
    } else {
        None
    }
}

fn check(got: Result<u64, Bad>, basic: Option<Why>, size: u8, what: &str) {
    match (got, basic) {
        (Err(b), Some(w)) => assert_eq!(b.why, w, "{what}"),
        (Err(b), None) => assert_eq!(b.why, Why::Size, "{what}: refused for {b}"),
        (Ok(_), Some(w)) => panic!("{what}: accepted, expected {w:?}"),
        (Ok(v), None) => {
            assert!(
                size == 8 || v >> (8 * u32::from(size)) == 0,
                "{what}: {v:#x} too wide"
            );
        }
    }
}

#[test]
fn random_mmio_never_panics_and_refuses_for_the_right_reason() {
    let mut r = Rng(0x1234_5678_9abc_def1);
    for (version, vcpus) in [
        (Version::V2, 1),
        (Version::V2, 8),
        (Version::V3, 3),
        (Version::V3, 64),
    ] {
        let mut g = gic(version, vcpus);
        let rframe = g.redist_size();
        for i in 0..6000 {
            let vcpu = r.below(vcpus as u64 + 1) as usize;
            let size = [1u8, 2, 4, 8, 0, 3, 16, 255]
                [r.below(8) as usize % if r.one_in(8) { 8 } else { 4 }];
            let value = r.next();
            let redist = r.one_in(2);
            let (frame, off) = if redist {
                (rframe, offset(&mut r, rframe.max(0x20000)))
            } else {
                (Vgic::DIST_SIZE, offset(&mut r, Vgic::DIST_SIZE))
            };
            let what =
                alloc::format!("{version:?} #{i} vcpu{vcpu} {size}@{off:#x} redist {redist}");
            let mut basic = expected_basic(vcpu, vcpus, off, size, frame);
            if redist && version == Version::V2 {
                basic = Some(Why::NotV3);
            }
            let got = match (redist, r.one_in(2)) {
                (false, true) => g.dist_read(vcpu, off, size),
                (false, false) => g.dist_write(vcpu, off, size, value).map(|_| 0),
                (true, true) => g.redist_read(vcpu, off, size),
                (true, false) => g.redist_write(vcpu, off, size, value).map(|_| 0),
            };
            check(got, basic, size, &what);
            // The rest of the interface, with arbitrary arguments too.
            let intid = r.below(1100) as u32;
            let target = r.one_in(4).then(|| r.below(vcpus as u64 + 2) as usize);
            match r.below(8) {
                0 => drop(g.inject(intid, target)),
                1 => drop(g.set_level(intid, target, r.one_in(2))),
                2 => drop(g.sgi1r_write(vcpu, r.next())),
                3 => g.link_hw(intid, target, r.one_in(2).then_some(intid)),
                4 => {
                    let mut lrs = vec![Lr::INVALID; 1 + r.below(16) as usize];
                    g.fill_lrs(vcpu, &mut lrs);
                    for lr in &mut lrs {
                        if r.one_in(2) {
                            *lr = lr::decode_v3(r.next());
                        }
                    }
                    g.sync_lrs(vcpu, &lrs);
                }
                _ => drop(g.has_pending(vcpu)),
            }
        }
    }
}

/// Each of 48 edge SPIs is injected once while several vCPUs run guests that take and finish
/// interrupts at random and other vCPUs reprogram priorities, targets and enables: every one is
/// taken exactly once.
#[test]
fn random_delivery_is_exactly_once() {
    for (seed, version) in [
        (1u64, Version::V2),
        (2, Version::V3),
        (3, Version::V2),
        (4, Version::V3),
    ] {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let vcpus = 4;
        let mut g = booted(version, vcpus);
        for v in 0..vcpus {
            if version == Version::V3 {
                g.redist_write(v, v as u64 * Vgic::REDIST_STRIDE + 0x14, 4, 0)
                    .unwrap();
            }
        }
        wr(&mut g, 0xc08, 0xffff_ffff);
        wr(&mut g, 0xc0c, 0xffff_ffff);
        wr(&mut g, 0xc10, 0xffff_ffff);
        let spis: Vec<u32> = (32..80).collect();
        let mut taken = vec![0u32; 96];
        let mut cpus: Vec<Cpu> = (0..vcpus).map(Cpu::new).collect();
        let mut next = 0;
        for _ in 0..3000 {
            if next < spis.len() && r.one_in(3) {
                g.inject(spis[next], None);
                next += 1;
            }
            let intid = spis[r.below(spis.len() as u64) as usize];
            let writer = r.below(vcpus as u64) as usize;
            match r.below(10) {
                0 => set_priority(&mut g, writer, intid, r.next() as u8),
                1 => match version {
                    Version::V2 => {
                        let t = (r.below(15) + 1) as u8;
                        g.dist_write(writer, 0x800 + u64::from(intid), 1, t.into())
                            .unwrap();
                    }
                    Version::V3 => {
                        let route = if r.one_in(3) {
                            1 << 31
                        } else {
                            r.below(vcpus as u64)
                        };
                        g.dist_write(writer, 0x6000 + 8 * u64::from(intid), 8, route)
                            .unwrap();
                    }
                },
                2 => drop(set_bit(&mut g, writer, 0x180, intid)),
                3 | 4 => drop(set_bit(&mut g, writer, 0x100, intid)),
                _ => {}
            }
            // A vCPU runs: the guest takes some and finishes some.
            let c = &mut cpus[r.below(vcpus as u64) as usize];
            c.fill(&mut g);
            for _ in 0..r.below(3) {
                if let Some((i, _)) = c.ack() {
                    taken[i as usize] += 1;
                }
            }
            let active: Vec<u32> = c
                .lrs
                .iter()
                .filter(|l| l.state.active())
                .map(|l| l.intid)
                .collect();
            for i in active {
                if r.one_in(2) {
                    c.eoi(i);
                }
            }
            c.sync(&mut g);
        }
        for intid in &spis[next..] {
            g.inject(*intid, None);
        }
        wr(&mut g, 0x104, !0);
        wr(&mut g, 0x108, !0);
        // The guests finish what they hold and take everything left.
        for _ in 0..50 {
            for c in &mut cpus {
                c.fill(&mut g);
                let active: Vec<u32> = c
                    .lrs
                    .iter()
                    .filter(|l| l.state.active())
                    .map(|l| l.intid)
                    .collect();
                for i in active {
                    c.eoi(i);
                }
                while let Some((i, _)) = c.ack() {
                    taken[i as usize] += 1;
                    c.eoi(i);
                }
                c.sync(&mut g);
            }
        }
        for &i in &spis {
            assert_eq!(taken[i as usize], 1, "{version:?} seed {seed}: SPI {i}");
        }
        assert!((0..vcpus).all(|v| !g.has_pending(v)));
    }
}
