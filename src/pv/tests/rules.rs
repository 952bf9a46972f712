//! Each validator rule, legal and illegal, one test apiece.

use super::*;

#[test]
fn one_pin_validates_a_whole_tree() {
    let mut t = Env::new(32);
    t.write_tree();
    t.pin(0, f(0)).unwrap();
    assert_eq!(t.ty(f(0)), FrameType::PageTable(0));
    assert_eq!(t.ty(f(1)), FrameType::PageTable(1));
    assert_eq!(t.ty(f(2)), FrameType::PageTable(2));
    assert_eq!(t.ty(f(3)), FrameType::PageTable(3));
    // f(1): one parent entry, one read-only mapping.
    let i = t.info(f(1));
    assert_eq!((i.type_count, i.refs, i.pinned), (1, 2, false));
    assert_eq!(t.info(f(0)).refs, 2, "pin + read-only mapping");
    assert_eq!((t.ty(f(10)), t.info(f(10)).refs), (FrameType::Writable, 1));
    assert_eq!((t.ty(f(11)), t.info(f(11)).refs), (FrameType::None, 1));
}

/// The domain builder's way: each table held bottom-up, the root pinned, the holds dropped.
/// The counts end as one pin of the root leaves them, and no step validated a subtree.
#[test]
fn a_tree_held_bottom_up_ends_as_one_pin_leaves_it() {
    let mut one = Env::new(32);
    one.write_tree();
    one.pin(0, f(0)).unwrap();

    let mut t = Env::new(32);
    t.write_tree();
    for (level, pa) in [(3, f(3)), (2, f(2)), (1, f(1))] {
        // No audit until the holds are gone: it counts pins, bases and entries, not these.
        t.ft.hold_table(pa, level, &mut t.mem).unwrap();
        assert_eq!(t.ty(pa), FrameType::PageTable(level));
    }
    assert_eq!(
        t.info(f(3)).type_count,
        2,
        "its hold and its parent's entry"
    );
    t.ft.pin(f(0), 0, &mut t.mem).unwrap();
    for pa in [f(1), f(2), f(3)] {
        t.ft.release_table_hold(pa, &mut t.mem).unwrap();
    }
    t.check();
    for k in 0..32 {
        assert_eq!(t.info(f(k)), one.info(f(k)), "frame {k}");
    }
    // Nothing is left to release, and a hold on a table of another level is refused.
    assert_eq!(
        t.ft.release_table_hold(f(10), &mut t.mem),
        Err(Errno::Inval)
    );
    assert_eq!(t.ft.hold_table(f(3), 2, &mut t.mem), Err(Errno::Busy));
    assert_eq!(t.ft.hold_table(f(3), 4, &mut t.mem), Err(Errno::Inval));
    assert_eq!(t.ft.hold_table(FOREIGN, 3, &mut t.mem), Err(Errno::Perm));
    t.check();
}

#[test]
fn writable_aliases_are_fine_a_writable_table_page_is_not() {
    let mut t = Env::new(32);
    t.pin(3, f(1)).unwrap();
    t.pin(3, f(2)).unwrap();
    t.upd(e(f(1), 0), page(f(10), RW)).unwrap();
    t.upd(e(f(2), 7), page(f(10), RW)).unwrap();
    assert_eq!(
        t.info(f(10)).type_count,
        2,
        "one frame, two writable mappings"
    );
    // A table page: read-only, yes (that is how the guest reads it); writable, never.
    t.upd(e(f(2), 1), page(f(1), RO)).unwrap();
    assert_eq!(t.upd(e(f(2), 2), page(f(1), RW)), Err(Errno::Busy));
    assert_eq!(
        t.upd(e(f(2), 3), page(f(2), RW)),
        Err(Errno::Busy),
        "its own page"
    );
    assert_eq!(t.peek(e(f(2), 2)), 0, "a refused entry is not written");
    // A table linked from a parent is as protected as a pinned one.
    t.pin(2, f(4)).unwrap();
    t.upd(e(f(4), 0), table(f(5))).unwrap();
    assert_eq!(t.upd(e(f(1), 9), page(f(5), RW)), Err(Errno::Busy));
}

#[test]
fn no_promotion_while_writably_mapped() {
    let mut t = Env::new(32);
    t.pin(3, f(1)).unwrap();
    t.upd(e(f(1), 0), page(f(5), RW)).unwrap();
    assert_eq!(t.pin(3, f(5)), Err(Errno::Busy));
    t.pin(2, f(2)).unwrap();
    assert_eq!(t.upd(e(f(2), 0), table(f(5))), Err(Errno::Busy));
    // Read-only instead: now it may become a table, after a flush of the stale writable
    // translation.
    t.upd(e(f(1), 0), page(f(5), RO)).unwrap();
    let flushes = t.mem.flushes;
    t.upd(e(f(2), 0), table(f(5))).unwrap();
    assert_eq!(t.mem.flushes, flushes + 1);
    assert_eq!(t.ty(f(5)), FrameType::PageTable(3));
}

#[test]
fn only_the_domains_own_ram() {
    let mut t = Env::new(32);
    t.pin(3, f(1)).unwrap();
    t.pin(2, f(2)).unwrap();
    for pa in [FOREIGN, FERRITE, DEVICE] {
        assert_eq!(t.upd(e(f(1), 0), page(pa, RO)), Err(Errno::Perm), "{pa:#x}");
        assert_eq!(t.upd(e(f(2), 0), table(pa)), Err(Errno::Perm), "{pa:#x}");
        assert_eq!(t.pin(3, pa), Err(Errno::Perm));
        // Not even a write into a table of someone else's.
        assert_eq!(t.upd(e(pa, 0), 0), Err(Errno::Perm));
    }
    // RAM of the domain that is not a table cannot be written through mmu_update.
    assert_eq!(t.upd(e(f(9), 0), 0), Err(Errno::Inval));
    // And MAIR index 0 (Device-nGnRE) is refused even over the domain's RAM.
    let dev = (page(f(9), RW) & !d::ATTR_INDX_MASK) | d::attr_indx(d::ATTR_DEVICE);
    assert_eq!(t.upd(e(f(1), 0), dev), Err(Errno::Perm));
    // A foreign domain's call is refused outright.
    let (n, r) = mmu_update(
        DOM + 1,
        &mut t.ft,
        &mut t.mem,
        &[MmuUpdate::normal(e(f(1), 0), 0)],
        8,
    );
    assert_eq!((n, r), (0, Err(Errno::Perm)));
}

#[test]
fn tables_are_typed_by_level() {
    let mut t = Env::new(32);
    t.pin(1, f(1)).unwrap();
    t.pin(1, f(2)).unwrap();
    // An L1 entry of type table must point to an L2 table: not another L1.
    assert_eq!(t.upd(e(f(1), 0), table(f(2))), Err(Errno::Busy));
    // A fresh frame is validated as an L2 and then is one.
    t.upd(e(f(1), 0), table(f(3))).unwrap();
    assert_eq!(t.ty(f(3)), FrameType::PageTable(2));
    // It cannot also be an L1 or an L3.
    assert_eq!(t.pin(1, f(3)), Err(Errno::Busy));
    assert_eq!(t.pin(3, f(3)), Err(Errno::Busy));
    t.pin(2, f(3)).unwrap();
    // A second parent at the same level may share it.
    t.upd(e(f(2), 4), table(f(3))).unwrap();
    assert_eq!(t.info(f(3)).type_count, 3);
    // A table at level 3 has no table descriptors: bit 1 there means a page.
    t.pin(3, f(4)).unwrap();
    // A table descriptor's bits read there as a page with attribute index 0: Device.
    assert_eq!(t.upd(e(f(4), 0), table(f(5))), Err(Errno::Perm));
    assert_eq!(t.ty(f(5)), FrameType::None);
}

#[test]
fn self_and_recursive_mappings() {
    let mut t = Env::new(32);
    t.pin(0, f(0)).unwrap();
    // A table linking itself (Xen's linear page table) and a table linking its parent.
    assert_eq!(t.upd(e(f(0), 511), table(f(0))), Err(Errno::Busy));
    t.upd(e(f(0), 0), table(f(1))).unwrap();
    assert_eq!(t.upd(e(f(1), 0), table(f(0))), Err(Errno::Busy));
    assert_eq!(t.upd(e(f(1), 1), table(f(1))), Err(Errno::Busy));
    // A fresh frame whose own content links back up: refused during validation.
    t.poke(e(f(2), 0), table(f(1)));
    assert_eq!(t.upd(e(f(1), 0), table(f(2))), Err(Errno::Busy));
    assert_eq!(t.ty(f(2)), FrameType::None);
    // A table mapping a table (itself included) as a page: read-only only.
    t.poke(e(f(3), 0), page(f(3), RW));
    assert_eq!(t.pin(3, f(3)), Err(Errno::Busy), "writable self-mapping");
    assert!(t.all_zero_except(&[f(0), f(1)]));
    t.poke(e(f(3), 0), page(f(3), RO));
    t.poke(e(f(3), 1), page(f(0), RO));
    t.pin(3, f(3)).unwrap();
    assert_eq!(t.info(f(3)).refs, 2, "pin + its read-only self-mapping");
    t.unpin(f(3)).unwrap();
    assert_eq!(t.info(f(3)).refs, 0);
}

#[test]
fn refused_bits_are_refused_through_the_hypercall() {
    let mut t = Env::new(32);
    t.pin(3, f(1)).unwrap();
    for bad in [
        page(f(5), RO) | d::DBM,
        page(f(5), RO) | d::NS,
        page(f(5), RO) | 1 << 63,
        page(f(5), RO) & !d::SH_MASK,
        page(f(5), RO) | d::CONTIGUOUS,
    ] {
        assert_eq!(t.upd(e(f(1), 0), bad), Err(Errno::Inval), "{bad:#x}");
        assert_eq!(t.peek(e(f(1), 0)), 0);
    }
    assert_eq!(t.info(f(5)).refs, 0);
    // Unknown commands and misaligned descriptor addresses.
    let cmd = MmuUpdate {
        ptr: e(f(1), 0) | 1,
        val: 0,
    };
    assert_eq!(t.batch(&[cmd], 8), (0, Err(Errno::NoSys)));
    let odd = MmuUpdate {
        ptr: e(f(1), 0) | 4,
        val: 0,
    };
    assert_eq!(t.batch(&[odd], 8), (0, Err(Errno::Inval)));
}

#[test]
fn unpin_while_in_use() {
    let mut t = Env::new(32);
    t.pin(0, f(0)).unwrap();
    assert_eq!(t.unpin(f(1)), Err(Errno::Inval), "never pinned");
    assert_eq!(t.pin(0, f(0)), Err(Errno::Inval), "already pinned");
    // As a base.
    let fx = t.ext(MmuextOp::new(ext::NEW_TTBR0, f(0), 1)).unwrap();
    assert_eq!(
        fx,
        [Effect::LoadBase(
            Ttbr::Ttbr0,
            Some(Base {
                table: f(0),
                asid: 1
            })
        )]
    );
    assert_eq!(t.unpin(f(0)), Err(Errno::Busy));
    t.set_ttbr0(0).unwrap();
    assert_eq!(t.ft.base(0, Ttbr::Ttbr0), None);
    // As a child.
    t.pin(1, f(1)).unwrap();
    t.upd(e(f(0), 3), table(f(1))).unwrap();
    assert_eq!(t.unpin(f(1)), Err(Errno::Busy));
    assert_eq!(t.ty(f(1)), FrameType::PageTable(1));
    t.upd(e(f(0), 3), 0).unwrap();
    t.unpin(f(1)).unwrap();
    t.unpin(f(0)).unwrap();
    assert!(t.all_zero());
}

#[test]
fn unpin_releases_everything_below() {
    let mut t = Env::new(32);
    t.write_tree();
    t.pin(0, f(0)).unwrap();
    t.unpin(f(0)).unwrap();
    assert!(t.all_zero());
    // The contents are untouched: pinning again gives the same tree.
    t.pin(0, f(0)).unwrap();
    assert_eq!(t.ty(f(3)), FrameType::PageTable(3));
}

#[test]
fn no_retyping_while_referenced() {
    let mut t = Env::new(32);
    t.pin(1, f(1)).unwrap();
    t.upd(e(f(1), 0), table(f(2))).unwrap();
    assert_eq!(t.pin(3, f(2)), Err(Errno::Busy));
    assert_eq!(t.ft.acquire_writable(f(2), &mut t.mem), Err(Errno::Busy));
    assert_eq!(t.release(f(2)), Err(Errno::Busy));
    // Writable frames likewise cannot become tables, nor be given back.
    t.ft.acquire_writable(f(7), &mut t.mem).unwrap();
    assert_eq!(t.pin(2, f(7)), Err(Errno::Busy));
    assert_eq!(t.release(f(7)), Err(Errno::Busy));
    t.ft.release_writable(f(7), &mut t.mem).unwrap();
    assert_eq!(t.ft.release_writable(f(7), &mut t.mem), Err(Errno::Inval));
    t.pin(2, f(7)).unwrap();
}

#[test]
fn bases_are_pinned_level_0_tables() {
    let mut t = Env::new(32);
    t.pin(1, f(1)).unwrap();
    assert_eq!(t.set_ttbr0(f(1)), Err(Errno::Inval), "an L1");
    assert_eq!(t.set_ttbr0(f(2)), Err(Errno::Inval), "not a table");
    assert_eq!(t.set_ttbr0(FOREIGN), Err(Errno::Perm));
    assert_eq!(t.set_ttbr0(f(2) + 8), Err(Errno::Inval), "misaligned");
    t.pin(0, f(0)).unwrap();
    t.pin(0, f(3)).unwrap();
    assert_eq!(
        t.ext(MmuextOp::new(ext::NEW_TTBR0, f(0), 0x1_0000)),
        Err(Errno::Inval)
    );
    assert_eq!(
        t.ext(MmuextOp::new(ext::NEW_TTBR1, f(0), 1)),
        Err(Errno::Inval),
        "ASID"
    );
    t.ext(MmuextOp::new(ext::NEW_TTBR1, f(0), 0)).unwrap();
    t.set_ttbr0(f(0)).unwrap();
    assert_eq!(t.info(f(0)).type_count, 3);
    // Switching drops the old base's references.
    t.set_ttbr0(f(3)).unwrap();
    assert_eq!(t.info(f(0)).type_count, 2);
    assert_eq!(t.ft.base(0, Ttbr::Ttbr0).unwrap().ttbr(), f(3) | 1 << 48);
    // Another vCPU started with the caller's bases, then stopped.
    t.ft.copy_bases(0, 1, &mut t.mem);
    t.check();
    assert_eq!(t.info(f(3)).type_count, 3);
    t.ft.clear_bases(1, &mut t.mem);
    t.check();
    assert_eq!(t.info(f(3)).type_count, 2);
    assert_eq!(
        t.ext_on(2, MmuextOp::new(ext::TLB_FLUSH_LOCAL, 0, 0)),
        Err(Errno::Inval)
    );
}

#[test]
fn tlb_operations_are_checked_and_passed_on() {
    let mut t = Env::new(8);
    let op = |cmd, a1, a2| MmuextOp::new(cmd, a1, a2);
    assert_eq!(
        t.ext(op(ext::TLB_FLUSH_LOCAL, 0, 0)).unwrap(),
        [Effect::Tlb(TlbOp::FlushLocal)]
    );
    assert_eq!(
        t.ext(op(ext::TLB_FLUSH_ALL, 0, 0)).unwrap(),
        [Effect::Tlb(TlbOp::FlushAll)]
    );
    assert_eq!(
        t.ext(op(ext::INVLPG_ALL, 0xffff_0000_1234_5000, 7))
            .unwrap(),
        [Effect::Tlb(TlbOp::PageAll {
            va: 0xffff_0000_1234_5000,
            asid: 7
        })]
    );
    assert_eq!(
        t.ext(op(ext::INVLPG_LOCAL, 0x5000, 0)).unwrap(),
        [Effect::Tlb(TlbOp::PageLocal {
            va: 0x5000,
            asid: 0
        })]
    );
    assert_eq!(t.ext(op(ext::INVLPG_LOCAL, 0x5008, 0)), Err(Errno::Inval));
    assert_eq!(
        t.ext(op(ext::INVLPG_ALL, 0x5000, 1 << 16)),
        Err(Errno::Inval)
    );
    assert_eq!(t.ext(op(ext::TLB_FLUSH_ALL, 1, 0)), Err(Errno::Inval));
    assert_eq!(t.ext(op(ext::PIN_L3_TABLE, f(1), 1)), Err(Errno::Inval));
    assert_eq!(t.ext(op(99, 0, 0)), Err(Errno::NoSys));
    let mut padded = op(ext::TLB_FLUSH_ALL, 0, 0);
    padded.pad = 1;
    assert_eq!(t.ext(padded), Err(Errno::Inval));
}

#[test]
fn failed_validation_takes_nothing() {
    let mut t = Env::new(32);
    for k in 0..10 {
        t.poke(e(f(1), k), page(f(10 + k as u64), RW));
    }
    t.poke(e(f(1), 10), page(f(20), RO) | d::DBM);
    assert_eq!(t.pin(3, f(1)), Err(Errno::Inval));
    assert!(t.all_zero());
    // An unreadable frame (Ferrite cannot reach it) fails cleanly too.
    t.mem.unreadable.insert(f(2));
    assert_eq!(t.pin(3, f(2)), Err(Errno::Fault));
    assert!(t.all_zero());
}

#[test]
fn ferrite_holds_keep_a_frame_writable() {
    let mut t = Env::new(16);
    // The shared-info page: Ferrite writes it for the domain's lifetime.
    t.ft.acquire_writable(f(4), &mut t.mem).unwrap();
    t.check();
    assert_eq!(t.pin(3, f(4)), Err(Errno::Busy));
    t.pin(3, f(1)).unwrap();
    t.upd(e(f(1), 0), page(f(4), RW)).unwrap();
    assert_eq!(t.info(f(4)).type_count, 2);
    assert_eq!(t.ft.acquire_writable(FOREIGN, &mut t.mem), Err(Errno::Perm));
}

impl Env {
    fn all_zero_except(&self, keep: &[u64]) -> bool {
        self.ft.frames().filter(|pa| !keep.contains(pa)).all(|pa| {
            let i = self.ft.info(pa).unwrap();
            i.ty == FrameType::None && i.refs == 0
        })
    }
}
