//! Batches (partial, preempted), blocks and the contiguous hint, grants, ballooning, TLB
//! flushes and whole-domain lifecycles.

use super::*;

/// Twelve valid updates building L3 entries into a pinned table at `f(1)`.
fn twelve() -> Vec<MmuUpdate> {
    (0..12)
        .map(|k| {
            let attrs = if k % 3 == 0 { RO } else { RW };
            MmuUpdate::normal(e(f(1), k), page(f(8 + k as u64 % 5), attrs))
        })
        .collect()
}

#[test]
fn a_partial_batch_applies_exactly_the_valid_prefix() {
    let mut t = Env::new(32);
    t.pin(3, f(1)).unwrap();
    let mut b = twelve();
    b.truncate(5);
    b.push(MmuUpdate::normal(e(f(1), 5), page(FOREIGN, RO)));
    b.push(MmuUpdate::normal(e(f(1), 6), page(f(9), RO)));
    assert_eq!(t.batch(&b, 64), (5, Err(Errno::Perm)));
    for (k, u) in b[..5].iter().enumerate() {
        assert_eq!(t.peek(e(f(1), k)), u.val);
    }
    assert_eq!(t.peek(e(f(1), 5)), 0);
    assert_eq!(t.peek(e(f(1), 6)), 0, "nothing after the failure");
    // The guest drops the applied entries and the bad one, and resumes.
    assert_eq!(t.batch(&b[6..], 64), (1, Ok(())));
}

#[test]
fn preempted_batches_end_where_one_go_does() {
    let run = |budget: usize| {
        let mut t = Env::new(32);
        t.pin(3, f(1)).unwrap();
        let mut b = twelve();
        // Rewrites and removals in the same batch, so the order matters.
        b.push(MmuUpdate::normal(e(f(1), 1), page(f(2), RO)));
        b.push(MmuUpdate::normal(e(f(1), 2), 0));
        b.push(MmuUpdate::normal(e(f(1), 3), page(f(3), RW)));
        let mut done = 0;
        let mut calls = 0;
        while done < b.len() {
            let (n, r) = t.batch(&b[done..], budget);
            r.unwrap();
            assert!(n >= 1 && n <= budget.max(1));
            done += n;
            calls += 1;
        }
        let infos: Vec<FrameInfo> = t.ft.frames().map(|pa| t.info(pa)).collect();
        (t.mem.words, infos, calls)
    };
    let (words, infos, calls) = run(usize::MAX);
    assert_eq!(calls, 1);
    for budget in [0, 1, 2, 5, 14] {
        let (w, i, c) = run(budget);
        assert_eq!((&w, &i), (&words, &infos), "budget {budget}");
        assert_eq!(c, 15usize.div_ceil(budget.max(1)));
    }
}

#[test]
fn mmuext_batches_stop_and_resume_too() {
    let mut t = Env::new(32);
    let ops = [
        MmuextOp::pin(3, f(1)),
        MmuextOp::pin(3, f(2)),
        MmuextOp::new(ext::TLB_FLUSH_ALL, 0, 0),
        MmuextOp::pin(3, f(2)),
        MmuextOp::pin(3, f(3)),
    ];
    let mut fx = Vec::new();
    let (n, r) = mmuext_op(DOM, &mut t.ft, &mut t.mem, 0, &ops, 2, &mut |x| fx.push(x));
    assert_eq!((n, r), (2, Ok(())));
    let (n, r) = mmuext_op(DOM, &mut t.ft, &mut t.mem, 0, &ops[2..], 8, &mut |x| {
        fx.push(x)
    });
    assert_eq!((n, r), (1, Err(Errno::Inval)), "the second pin of f(2)");
    assert_eq!(fx, [Effect::Tlb(TlbOp::FlushAll)]);
    assert_eq!(t.ty(f(3)), FrameType::None);
    t.check();
}

#[test]
fn blocks_legal_and_illegal() {
    // 1024 frames: two 2 MiB blocks' worth from RAM (2 MiB-aligned).
    let mut t = Env::new(1024);
    t.pin(2, f(0)).unwrap();
    // f(0) is inside the first 2 MiB: a writable block over it would map a table writable.
    assert_eq!(t.upd(e(f(0), 0), block(RAM, RW)), Err(Errno::Busy));
    assert!(
        t.ft.frames()
            .filter(|&pa| pa != f(0))
            .all(|pa| t.info(pa).refs == 0),
        "rolled back"
    );
    // Read-only is fine: each of its 512 frames gets one reference.
    t.upd(e(f(0), 0), block(RAM, RO)).unwrap();
    assert!((0..512).all(|k| t.info(f(k)).refs == 1 + (k == 0) as u32));
    // The second 2 MiB writable: 512 writable frames.
    let second = RAM + (2 << 20);
    t.upd(e(f(0), 1), block(second, RW)).unwrap();
    assert!((512..1024).all(|k| t.ty(f(k)) == FrameType::Writable));
    // Misaligned, or reaching past the domain's memory.
    assert_eq!(
        t.upd(e(f(0), 2), block(RAM + 0x1000, RO)),
        Err(Errno::Inval)
    );
    assert_eq!(
        t.upd(e(f(0), 2), block(RAM + (4 << 20), RO)),
        Err(Errno::Perm)
    );
    assert_eq!(
        t.upd(e(f(0), 2), block(RAM - (2 << 20), RO)),
        Err(Errno::Perm)
    );
    // Replacing the writable block by an invalid entry releases all 512.
    t.upd(e(f(0), 1), 0).unwrap();
    assert!((512..1024).all(|k| t.info(f(k)).refs == 0 && t.ty(f(k)) == FrameType::None));
}

#[test]
fn a_one_gib_block() {
    // 262144 frames: audited once at the end rather than after every step, for speed.
    let mut t = Env::new(1 << 18);
    let upd = |t: &mut Env, i: usize, v: u64| {
        mmu_update(
            DOM,
            &mut t.ft,
            &mut t.mem,
            &[MmuUpdate::normal(e(f(0), i), v)],
            1,
        )
        .1
    };
    t.ft.pin(f(0), 1, &mut t.mem).unwrap();
    assert_eq!(
        upd(&mut t, 1, block(RAM, RW)),
        Err(Errno::Busy),
        "over its own table"
    );
    upd(&mut t, 1, block(RAM, RO)).unwrap();
    assert_eq!(t.info(f(0x3ffff)).refs, 1);
    // A 2 MiB-aligned but not 1 GiB-aligned output address at level 1.
    assert_eq!(
        upd(&mut t, 2, block(RAM + (2 << 20), RO)),
        Err(Errno::Inval)
    );
    t.ft.audit(&t.mem).unwrap();
    t.ft.unpin(f(0), &mut t.mem).unwrap();
    assert!(t.all_zero());
}

#[test]
fn the_contiguous_hint_counts_its_whole_span() {
    let mut t = Env::new(64);
    t.pin(3, f(0)).unwrap();
    // f(35) is entry 3 of the 64 KiB span f(32)..f(48): valid at indexes 3, 19, ...
    let c = page(f(35), RW) | d::CONTIGUOUS;
    t.upd(e(f(0), 19), c).unwrap();
    assert!((32..48).all(|k| t.ty(f(k)) == FrameType::Writable && t.info(f(k)).refs == 1));
    assert_eq!(
        t.upd(e(f(0), 20), c),
        Err(Errno::Inval),
        "at the wrong position"
    );
    // A span over the table page itself, writable: refused; read-only: fine.
    assert_eq!(
        t.upd(e(f(0), 1), page(f(1), RW) | d::CONTIGUOUS),
        Err(Errno::Busy)
    );
    t.upd(e(f(0), 1), page(f(1), RO) | d::CONTIGUOUS).unwrap();
    // A span reaching beyond the domain's frames.
    let mut small = Env::new(40);
    small.pin(3, f(0)).unwrap();
    assert_eq!(
        small.upd(e(f(0), 3), page(f(35), RO) | d::CONTIGUOUS),
        Err(Errno::Perm)
    );
}

#[test]
fn granted_frames_through_the_hook() {
    let mut t = Env::new(32);
    t.ft.grants_mut().allowed.insert(FOREIGN);
    t.pin(3, f(1)).unwrap();
    t.pin(2, f(2)).unwrap();
    t.upd(e(f(1), 0), page(FOREIGN, RW)).unwrap();
    t.upd(e(f(1), 1), page(FOREIGN, RO)).unwrap();
    assert_eq!(t.ft.grants().mapped.len(), 2);
    assert_eq!(
        t.upd(e(f(1), 2), page(FOREIGN + 0x1000, RO)),
        Err(Errno::Perm),
        "not granted"
    );
    // Granted frames are never tables, blocks or contiguous spans.
    assert_eq!(t.upd(e(f(2), 0), table(FOREIGN)), Err(Errno::Perm));
    assert_eq!(t.upd(e(f(2), 1), block(FOREIGN, RO)), Err(Errno::Perm));
    let foreign_span = page(FOREIGN, RO) | d::CONTIGUOUS;
    assert_eq!(t.upd(e(f(1), 16), foreign_span), Err(Errno::Perm));
    t.upd(e(f(1), 0), 0).unwrap();
    t.unpin(f(1)).unwrap();
    assert!(t.ft.grants().mapped.is_empty(), "every map was unmapped");
}

#[test]
fn tlb_flushes_come_before_a_change_of_use() {
    let mut t = Env::new(32);
    t.pin(3, f(1)).unwrap();
    // Mapped read-only and unmapped: may become a table without a flush.
    t.upd(e(f(1), 0), page(f(5), RO)).unwrap();
    t.upd(e(f(1), 0), 0).unwrap();
    let n = t.mem.flushes;
    t.pin(3, f(5)).unwrap();
    assert_eq!(t.mem.flushes, n);
    // Mapped writable and unmapped: a flush first (checked by `Env::check` too).
    t.upd(e(f(1), 1), page(f(6), RW)).unwrap();
    t.upd(e(f(1), 1), 0).unwrap();
    t.pin(3, f(6)).unwrap();
    assert_eq!(t.mem.flushes, n + 1);
    // A former table mapped writable: a flush first, walk caches may hold it.
    t.unpin(f(6)).unwrap();
    t.upd(e(f(1), 2), page(f(6), RW)).unwrap();
    assert_eq!(t.mem.flushes, n + 2);
    // The same use again needs none.
    t.upd(e(f(1), 2), 0).unwrap();
    t.upd(e(f(1), 2), page(f(6), RW)).unwrap();
    assert_eq!(t.mem.flushes, n + 2);
}

#[test]
fn ballooning_gives_back_only_unused_frames() {
    let mut t = Env::new(32);
    t.pin(3, f(1)).unwrap();
    t.upd(e(f(1), 0), page(f(5), RO)).unwrap();
    assert_eq!(t.release(f(5)), Err(Errno::Busy), "mapped");
    assert_eq!(t.release(f(1)), Err(Errno::Busy), "a table");
    assert_eq!(t.release(FOREIGN), Err(Errno::Perm));
    t.upd(e(f(1), 0), 0).unwrap();
    let n = t.mem.flushes;
    t.release(f(5)).unwrap();
    assert_eq!(t.mem.flushes, n + 1, "it was mapped since the last flush");
    t.release(f(6)).unwrap();
    assert_eq!(t.mem.flushes, n + 1, "never mapped: no flush");
    assert_eq!(t.ft.nr_frames(), 30);
    // Gone means gone: it can no longer be mapped.
    assert_eq!(t.upd(e(f(1), 0), page(f(5), RO)), Err(Errno::Perm));
    // Ballooning in again.
    t.ft.add_frame(f(5)).unwrap();
    assert_eq!(t.ft.add_frame(f(5)), Err(Errno::Exist));
    assert_eq!(t.ft.add_frame(f(5) + 8), Err(Errno::Inval));
    t.upd(e(f(1), 0), page(f(5), RO)).unwrap();
    assert!(FrameTable::new(DOM, &[f(1), f(1)], 1, Policy::default()).is_err());
}

/// A busy domain: two trees, one of them shared by both vCPUs as bases, extra pinned tables
/// linked in, a hold, blocks and aliases.
fn busy(t: &mut Env) {
    t.write_tree();
    t.pin(0, f(0)).unwrap();
    t.pin(0, f(20)).unwrap();
    t.upd(e(f(20), 1), table(f(1))).unwrap();
    t.set_ttbr0(f(0)).unwrap();
    t.ext(MmuextOp::new(ext::NEW_TTBR1, f(20), 0)).unwrap();
    t.ft.copy_bases(0, 1, &mut t.mem);
    t.pin(3, f(21)).unwrap();
    t.upd(e(f(2), 7), table(f(21))).unwrap();
    t.upd(e(f(21), 0), page(f(10), RW)).unwrap();
    t.upd(e(f(21), 1), page(f(21), RO)).unwrap();
    t.ft.acquire_writable(f(30), &mut t.mem).unwrap();
    t.check();
}

#[test]
fn tearing_down_as_the_guest_returns_every_count_to_zero() {
    let mut t = Env::new(32);
    busy(&mut t);
    assert_eq!(t.unpin(f(21)), Err(Errno::Busy));
    t.upd(e(f(2), 7), 0).unwrap();
    t.unpin(f(21)).unwrap();
    t.ft.clear_bases(1, &mut t.mem);
    t.set_ttbr0(0).unwrap();
    t.unpin(f(0)).unwrap();
    assert_eq!(t.ty(f(1)), FrameType::PageTable(1), "f(20) still links it");
    assert_eq!(t.unpin(f(20)), Err(Errno::Busy), "vCPU 0's TTBR1");
    t.ext(MmuextOp::new(ext::NEW_TTBR1, 0, 0)).unwrap();
    t.unpin(f(20)).unwrap();
    t.ft.release_writable(f(30), &mut t.mem).unwrap();
    t.check();
    assert!(t.all_zero());
    for pa in (0..32).map(f) {
        t.release(pa).unwrap();
    }
    assert_eq!(t.ft.nr_frames(), 0);
}

#[test]
fn domain_teardown_returns_every_count_to_zero() {
    let mut t = Env::new(32);
    t.ft.grants_mut().allowed.insert(FOREIGN);
    busy(&mut t);
    t.upd(e(f(21), 2), page(FOREIGN, RW)).unwrap();
    t.ft.teardown(&mut t.mem);
    t.check();
    assert!(t.all_zero());
    assert!(t.ft.grants().mapped.is_empty());
    assert_eq!(t.ft.base(1, Ttbr::Ttbr1), None);
}

/// Not a test: a workload for profiling `mmu_update` on the host
/// (`valgrind --tool=callgrind <test binary> --ignored pv::tests::batches::profile_batch_512`).
#[test]
#[ignore]
fn profile_batch_512() {
    let mut env = Env::new(2048);
    let l3 = f(0);
    let (_, r) = mmuext_op(
        DOM,
        &mut env.ft,
        &mut env.mem,
        0,
        &[MmuextOp {
            cmd: ext::PIN_L3_TABLE,
            pad: 0,
            arg1: l3,
            arg2: 0,
        }],
        8,
        &mut |_| {},
    );
    r.unwrap();
    let batches: Vec<Vec<MmuUpdate>> = (0..2u64)
        .map(|p| {
            (0..512u64)
                .map(|i| MmuUpdate::normal(e(l3, i as usize), page(f(16 + (i + p) % 1024), RO)))
                .collect()
        })
        .collect();
    for round in 0..200 {
        let (done, r) = mmu_update(DOM, &mut env.ft, &mut env.mem, &batches[round % 2], 512);
        assert_eq!((done, r), (512, Ok(())));
    }
}
