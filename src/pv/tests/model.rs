//! A randomised model: thousands of random guest actions (its own writes to non-table pages,
//! descriptor updates good and bad, pins, unpins, bases, holds, ballooning) against a small
//! domain, checking after each one that the counts equal a recount from scratch, that no
//! table page is (or may still be cached) writable, and that a refused single operation
//! changed nothing.

use super::*;

use crate::testutil::Rng;
/// Frames the model plays with: the first 24 of the domain, plus its whole first 2 MiB for
/// blocks, and [`EXTRA`] frames from elsewhere.
const HOT: u64 = 24;
const EXTRA: u64 = 6;

fn frame(r: &mut Rng) -> u64 {
    match r.below(40) {
        0 => FOREIGN,
        1 => DEVICE,
        2..=5 => x(r.below(EXTRA)),
        _ => f(r.below(HOT)),
    }
}

/// A descriptor worth trying: mostly plausible, sometimes wrong.
fn value(r: &mut Rng) -> u64 {
    let attrs = if r.percent(50) { RW } else { RO };
    match r.below(12) {
        0 => 0,
        1..=3 => table(frame(r)),
        4..=7 => page(frame(r), attrs),
        8 => block(RAM, attrs),
        9 => page(f(16 + r.below(16)), attrs) | d::CONTIGUOUS,
        10 => page(frame(r), attrs) | 1 << [5, 48, 51, 63][r.below(4) as usize],
        _ => r.next(),
    }
}

fn snapshot(t: &Env) -> (Words, Vec<(u64, FrameInfo)>, Vec<Option<Base>>) {
    let infos = t.ft.frames().map(|pa| (pa, t.info(pa))).collect();
    let bases = (0..2)
        .flat_map(|v| [t.ft.base(v, Ttbr::Ttbr0), t.ft.base(v, Ttbr::Ttbr1)])
        .collect();
    (t.mem.words.clone(), infos, bases)
}

fn step(t: &mut Env, r: &mut Rng, stats: &mut [u32; 2]) {
    let before = snapshot(t);
    let result = match r.below(20) {
        // The guest writes its own ordinary pages (tables it is building, data).
        0..=4 => {
            let pa = if r.percent(80) {
                f(r.below(HOT))
            } else {
                x(r.below(EXTRA))
            };
            if !matches!(t.ty(pa), FrameType::PageTable(_)) {
                t.poke(e(pa, r.below(20) as usize), value(r));
            }
            return;
        }
        5..=10 => {
            // Mostly into real tables, sometimes anywhere.
            let pa = frame(r);
            t.upd(e(pa, r.below(20) as usize), value(r))
        }
        11 => {
            let n = 1 + r.below(6) as usize;
            let b: Vec<MmuUpdate> = (0..n)
                .map(|_| MmuUpdate::normal(e(f(r.below(HOT)), r.below(20) as usize), value(r)))
                .collect();
            let (done, res) = t.batch(&b, 1 + r.below(8) as usize);
            assert!(done <= n);
            if done > 0 {
                stats[0] += 1;
                return;
            }
            res
        }
        12..=14 => t.pin(r.below(4) as u8, frame(r)),
        15 => t.unpin(frame(r)),
        16 => {
            let (vcpu, pa) = (
                r.below(2) as usize,
                if r.percent(30) { 0 } else { frame(r) },
            );
            let cmd = if r.percent(50) {
                ext::NEW_TTBR0
            } else {
                ext::NEW_TTBR1
            };
            t.ext_on(vcpu, MmuextOp::new(cmd, pa, 0)).map(|_| ())
        }
        17 => {
            let pa = frame(r);
            let res = if r.percent(50) {
                t.ft.acquire_writable(pa, &mut t.mem)
            } else {
                t.ft.release_writable(pa, &mut t.mem)
            };
            t.check();
            res
        }
        _ => {
            let pa = frame(r);
            if t.ft.owns(pa) {
                let res = t.release(pa);
                if res.is_ok() {
                    // Ballooned straight back in, zeroed.
                    t.mem.words.scrub(pa);
                    t.ft.add_frame(pa).unwrap();
                }
                res
            } else {
                Err(Errno::Perm)
            }
        }
    };
    match result {
        Ok(()) => stats[0] += 1,
        Err(_) => {
            stats[1] += 1;
            let after = snapshot(t);
            assert!(before.0 == after.0, "a refused operation wrote memory");
            assert!(before.1 == after.1, "a refused operation changed counts");
            assert!(before.2 == after.2, "a refused operation changed bases");
        }
    }
}

#[test]
fn random_operations_keep_the_invariants() {
    for seed in 1..=4u64 {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let mut t = Env::with_extra(512, EXTRA);
        let mut stats = [0u32; 2];
        for _ in 0..1500 {
            step(&mut t, &mut r, &mut stats);
        }
        // Both outcomes are exercised a fair amount, or the model tests little.
        assert!(stats[0] > 150 && stats[1] > 150, "seed {seed}: {stats:?}");
        // Whatever state it reached, tearing the domain down releases everything.
        t.ft.teardown(&mut t.mem);
        t.check();
        assert!(t.all_zero(), "seed {seed}");
    }
}
