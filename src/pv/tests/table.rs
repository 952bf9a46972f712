//! The frame table itself: the flat span and the frames outside it, the packed counts at
//! their limits, each request read once, tables releasing everything they hold, and the fast
//! path of `MMU_UPDATE` compared, batch by batch, with the general path alone.

use super::*;
use crate::pv::state::{COUNT_MAX, State};
use core::cell::RefCell;

#[test]
fn the_span_the_frames_outside_it_and_holes() {
    // f(0..8) and f(9..16): the longer run is the span; f(8) is missing.
    let frames: Vec<u64> = (0..16).filter(|&k| k != 8).map(f).collect();
    let mut t = Env {
        ft: FrameTable::with_grants(DOM, &frames, 1, Policy::default(), TestGrants::default())
            .unwrap(),
        mem: FakeMem::default(),
    };
    assert_eq!(
        t.ft.frames.span_mut(),
        (RAM >> 12, &mut [State::FREE; 8][..])
    );
    assert_eq!(t.ft.nr_frames(), 15);
    assert!(t.ft.owns(f(9)) && !t.ft.owns(f(8)) && !t.ft.owns(f(16)));
    // f(8) joins the end of the span; f(9..16) stay where they are.
    t.ft.add_frame(f(8)).unwrap();
    assert_eq!(t.ft.frames.span_mut().1.len(), 9);
    assert_eq!(t.ft.add_frame(f(9)), Err(Errno::Exist));
    assert_eq!(t.ft.add_frame(f(8)), Err(Errno::Exist));
    assert_eq!(t.ft.add_frame(f(8) + 8), Err(Errno::Inval));
    // A 64 KiB contiguous span over both parts: every frame counted, wherever it is kept.
    t.pin(3, f(0)).unwrap();
    t.upd(e(f(0), 1), page(f(1), RO) | d::CONTIGUOUS).unwrap();
    assert!((0..16).all(|k| t.info(f(k)).refs == 1 + u32::from(k == 0)));
    // A frame given back leaves a hole in the span, refused like any frame not owned.
    assert_eq!(t.release(f(5)), Err(Errno::Busy));
    t.upd(e(f(0), 1), 0).unwrap();
    t.release(f(5)).unwrap();
    assert_eq!(t.ft.info(f(5)), None);
    assert_eq!(t.ft.nr_frames(), 15);
    assert_eq!(
        t.upd(e(f(0), 1), page(f(1), RO) | d::CONTIGUOUS),
        Err(Errno::Perm)
    );
    assert_eq!(t.upd(e(f(0), 5), page(f(5), RO)), Err(Errno::Perm));
    t.ft.add_frame(f(5)).unwrap();
    t.upd(e(f(0), 5), page(f(5), RO)).unwrap();
    t.upd(e(f(0), 5), 0).unwrap();
    t.unpin(f(0)).unwrap();
    assert!(t.all_zero());
    // Misaligned or repeated frames make no table.
    assert_eq!(
        FrameTable::new(DOM, &[f(0), f(0) + 8], 1, Policy::default()).err(),
        Some(Errno::Inval)
    );
    assert_eq!(
        FrameTable::new(DOM, &[f(0), f(1), f(0)], 1, Policy::default()).err(),
        Some(Errno::Exist)
    );
}

#[test]
fn counts_at_their_limits_refuse_through_either_path() {
    for slow in [false, true] {
        let mut t = Env::new(32);
        t.ft.slow_only = slow;
        t.pin(3, f(0)).unwrap();
        t.ft.acquire_writable(f(9), &mut t.mem).unwrap();
        // f(8): as many references as the word holds; f(9): as many writable uses.
        let s = t.ft.frames.state_mut(f(8) >> 12).unwrap();
        *s = State(s.0 | u64::from(u32::MAX));
        let s = t.ft.frames.state_mut(f(9) >> 12).unwrap();
        *s = s.with_count(COUNT_MAX as u32);
        let before = (t.info(f(8)), t.info(f(9)), t.mem.words.clone());
        let b = [
            MmuUpdate::normal(e(f(0), 0), page(f(8), RO)),
            MmuUpdate::normal(e(f(0), 1), page(f(9), RW)),
        ];
        let (done, r) = mmu_update(DOM, &mut t.ft, &mut t.mem, &b[..1], 8);
        assert_eq!((done, r), (0, Err(Errno::Busy)), "slow {slow}");
        let (done, r) = mmu_update(DOM, &mut t.ft, &mut t.mem, &b[1..], 8);
        assert_eq!((done, r), (0, Err(Errno::Busy)), "slow {slow}");
        assert_eq!((t.info(f(8)), t.info(f(9)), t.mem.words.clone()), before);
    }
}

/// A batch that counts how often each entry is read.
struct Counted<T> {
    entries: Vec<T>,
    reads: RefCell<Vec<u32>>,
}

impl<T: Copy> Counted<T> {
    fn new(entries: Vec<T>) -> Self {
        let reads = RefCell::new(alloc::vec![0; entries.len()]);
        Self { entries, reads }
    }
}

impl<T: Copy> Requests<T> for Counted<T> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn at(&self, i: usize) -> T {
        self.reads.borrow_mut()[i] += 1;
        self.entries[i]
    }
}

#[test]
fn each_request_is_read_once() {
    let mut t = Env::new(64);
    t.pin(3, f(0)).unwrap();
    t.pin(2, f(1)).unwrap();
    // Fast (read-only pages), general (a first writable mapping, a table entry), fast
    // again, and a refusal.
    let b = Counted::new(alloc::vec![
        MmuUpdate::normal(e(f(0), 0), page(f(10), RO)),
        MmuUpdate::normal(e(f(0), 1), page(f(11), RW)),
        MmuUpdate::normal(e(f(0), 2), page(f(11), RW)),
        MmuUpdate::normal(e(f(1), 0), table(f(0))),
        MmuUpdate::normal(e(f(0), 3), page(f(12), RO)),
        MmuUpdate::normal(e(f(0), 4), page(FOREIGN, RO)),
        MmuUpdate::normal(e(f(0), 5), page(f(13), RO)),
    ]);
    assert_eq!(
        mmu_update(DOM, &mut t.ft, &mut t.mem, &b, 64),
        (5, Err(Errno::Perm))
    );
    assert_eq!(*b.reads.borrow(), [1, 1, 1, 1, 1, 1, 0]);
    let ops = Counted::new(alloc::vec![
        MmuextOp::pin(3, f(2)),
        MmuextOp::new(ext::TLB_FLUSH_ALL, 0, 0),
        MmuextOp::pin(3, f(2)),
        MmuextOp::pin(3, f(3)),
    ]);
    let (done, r) = mmuext_op(DOM, &mut t.ft, &mut t.mem, 0, &ops, 8, &mut |_| {});
    assert_eq!((done, r), (2, Err(Errno::Inval)));
    assert_eq!(*ops.reads.borrow(), [1, 1, 1, 0]);
    t.check();
}

#[test]
fn a_full_table_releases_everything_it_holds() {
    // Entries over the span and the frames outside it, read-only and writable, put in by the
    // fast path after the first writable mapping of each frame.
    let mut t = Env::with_extra(64, 16);
    t.pin(3, f(0)).unwrap();
    let targets: Vec<u64> = (1..64).map(f).chain((0..16).map(x)).collect();
    let batch: Vec<MmuUpdate> = (0..512)
        .map(|i| {
            let attrs = if i % 3 == 0 { RW } else { RO };
            MmuUpdate::normal(e(f(0), i), page(targets[i % targets.len()], attrs))
        })
        .collect();
    assert_eq!(t.batch(&batch, 512), (512, Ok(())));
    assert!(t.ft.frames().all(|pa| t.info(pa).refs > 0));
    // Rewritten in the other order: every reference moves, none is lost.
    let rev: Vec<MmuUpdate> = batch
        .iter()
        .zip(batch.iter().rev())
        .map(|(a, b)| MmuUpdate::normal(a.ptr, b.val))
        .collect();
    assert_eq!(t.batch(&rev, 512), (512, Ok(())));
    t.unpin(f(0)).unwrap();
    assert!(t.all_zero());
    // And by teardown, with the table still pinned.
    t.pin(3, f(0)).unwrap();
    assert!(t.ft.frames().any(|pa| t.ty(pa) == FrameType::Writable));
    t.ft.teardown(&mut t.mem);
    t.check();
    assert!(t.all_zero());
}

/// xorshift64*, as in the model.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// An entry for the differential test: mostly level-3 updates the fast path may take, and
/// everything next to them it must hand over.
fn entry(r: &mut u64) -> MmuUpdate {
    let mut pick = |n: u64| rng(r) % n;
    let tables = [f(0), f(1), x(0), f(2)];
    let at = tables[pick(4) as usize];
    let target = match pick(16) {
        0 => FOREIGN,
        1..=3 => x(pick(16)),
        4 => tables[pick(4) as usize],
        _ => f(pick(48)),
    };
    let attrs = if pick(3) == 0 { RW } else { RO };
    let val = match pick(64) {
        // Into the level-2 table: mostly links to the level-3 ones.
        _ if at == f(2) => match pick(8) {
            0 => 0,
            1 => table(f(pick(48))),
            _ => table(tables[pick(3) as usize]),
        },
        0..=5 => 0,
        6 => page(target, attrs) | d::CONTIGUOUS,
        7 => page(target, attrs) | 1 << [5, 48, 51, 63][pick(4) as usize],
        8 => (page(target, attrs) & !d::ATTR_INDX_MASK) | d::attr_indx(d::ATTR_NORMAL_NC),
        9 => (page(target, attrs) & !d::SH_MASK) | d::SH_OUTER,
        10 => table(target),
        11 => pick(u64::MAX),
        _ => page(target, attrs),
    };
    let ptr = match pick(100) {
        0 => e(f(5), 0),
        1 => e(at, 0) | 1,
        2 => e(at, 0) + 4,
        _ => e(at, pick(24) as usize),
    };
    MmuUpdate { ptr, val }
}

#[test]
fn the_fast_path_agrees_with_the_general_one() {
    for seed in 1..=3u64 {
        let mut r = 0x9e37_79b9_7f4a_7c15 ^ seed;
        let mut fast = Env::with_extra(64, 16);
        let mut slow = Env::with_extra(64, 16);
        slow.ft.grants_mut().allowed.insert(FOREIGN);
        fast.ft.grants_mut().allowed.insert(FOREIGN);
        slow.ft.slow_only = true;
        for t in [&mut fast, &mut slow] {
            t.pin(3, f(0)).unwrap();
            t.pin(3, f(1)).unwrap();
            t.pin(3, x(0)).unwrap();
            t.pin(2, f(2)).unwrap();
            // Frames already writable, so writable mappings of them can go fast.
            for k in 40..48 {
                t.ft.acquire_writable(f(k), &mut t.mem).unwrap();
            }
        }
        let (mut applied, mut refused) = (0, 0);
        for round in 0..400 {
            let n = 1 + (rng(&mut r) % 24) as usize;
            let b: Vec<MmuUpdate> = (0..n).map(|_| entry(&mut r)).collect();
            let budget = 1 + (rng(&mut r) % 64) as usize;
            let got = fast.batch(&b, budget);
            let want = slow.batch(&b, budget);
            assert_eq!(got, want, "seed {seed} round {round}: {b:x?}");
            assert!(
                fast.mem.words == slow.mem.words,
                "seed {seed} round {round}"
            );
            let infos = |t: &Env| -> Vec<(u64, FrameInfo)> {
                t.ft.frames().map(|pa| (pa, t.info(pa))).collect()
            };
            assert_eq!(infos(&fast), infos(&slow), "seed {seed} round {round}");
            assert_eq!(
                fast.mem.flushes, slow.mem.flushes,
                "seed {seed} round {round}"
            );
            assert_eq!(fast.ft.grants().mapped, slow.ft.grants().mapped);
            applied += got.0;
            refused += usize::from(got.1.is_err());
        }
        // Many entries applied, and refusals, or the comparison shows little.
        assert!(
            applied > 1500 && refused > 50,
            "seed {seed}: {applied} {refused}"
        );
        fast.ft.teardown(&mut fast.mem);
        fast.check();
        assert!(fast.all_zero());
        assert!(fast.ft.grants().mapped.is_empty());
    }
}
