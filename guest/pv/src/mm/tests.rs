//! The page-table manager against a fake hypervisor that enforces the rules a guest can get
//! wrong: a frame mapped writable cannot become a table, a table is never written through a
//! read-only mapping, bases must be pinned level-0 tables, a table in use cannot be unpinned.

use super::*;
use crate::hypercall::BatchResult;
use ferrite_abi::desc::{NG, NORMAL, index, page, table};
use ferrite_abi::errno;
use std::collections::{HashMap, HashSet};

const VB: u64 = 0xffff_8000_0000_0000;
const NR: u64 = 64;
/// Initial tables: L0, L1, L2, L3 at pfns 10..14; free from 16; shared info at pfn 20.
const PT_FIRST: u64 = 10;
const FIRST_FREE: u64 = 16;
const SHARED_PFN: u64 = 20;

/// Machine address of pfn `i`: two banks, the second below the first, to keep the reverse
/// lookup honest.
fn ma_of(pfn: u64) -> u64 {
    if pfn < 32 {
        0x6000_0000 + pfn * 0x1000
    } else {
        0x5000_0000 + (pfn - 32) * 0x1000
    }
}

#[derive(Default)]
struct Fake {
    mem: HashMap<u64, Vec<u64>>,
    owned: HashSet<u64>,
    /// Frames that are tables, with their level.
    tables: HashMap<u64, u8>,
    pinned: HashSet<u64>,
    ttbr0: u64,
    ttbr1: u64,
    frames: Option<FrameMap<'static>>,
    calls: Vec<usize>,
    ext_log: Vec<MmuextOp>,
    invalidated: Vec<u64>,
}

impl Fake {
    fn word(&self, ma: u64) -> u64 {
        self.mem[&(ma & !0xfff)][((ma & 0xfff) / 8) as usize]
    }

    fn set(&mut self, ma: u64, v: u64) {
        self.mem.get_mut(&(ma & !0xfff)).unwrap()[((ma & 0xfff) / 8) as usize] = v;
    }

    /// Whether any level-3 table maps `ma` writable.
    fn writable_mapped(&self, ma: u64) -> bool {
        self.tables.iter().any(|(&t, &l)| {
            l == 3
                && self.mem[&t]
                    .iter()
                    .any(|&d| d & 3 == 3 && d & AP_RO == 0 && desc::output_address(d) == ma)
        })
    }

    /// Makes `t` a table of `level`, and what it links, as Ferrite's validation would.
    fn make_table(&mut self, t: u64, level: u8) -> Result<(), Errno> {
        if !self.owned.contains(&t) {
            return Err(Errno::Perm);
        }
        match self.tables.get(&t) {
            Some(&l) if l == level => return Ok(()),
            Some(_) => return Err(Errno::Busy),
            None => {}
        }
        if self.writable_mapped(t) {
            return Err(Errno::Busy);
        }
        for d in self.mem[&t].clone() {
            self.check(d, level)?;
            if d & 3 == 3 && level < 3 {
                self.make_table(desc::output_address(d), level + 1)?;
            }
        }
        self.tables.insert(t, level);
        Ok(())
    }

    fn check(&self, d: u64, level: u8) -> Result<(), Errno> {
        if d & VALID == 0 {
            return Ok(());
        }
        let oa = desc::output_address(d);
        if !self.owned.contains(&oa) {
            return Err(Errno::Perm);
        }
        if level == 3 && d & AP_RO == 0 && self.tables.contains_key(&oa) {
            return Err(Errno::Busy);
        }
        Ok(())
    }

    fn update(&mut self, u: &MmuUpdate) -> Result<(), Errno> {
        if u.command() != 0 {
            return Err(Errno::NoSys);
        }
        if u.ptr & 4 != 0 {
            return Err(Errno::Inval);
        }
        let t = u.pte() & !0xfff;
        if !self.owned.contains(&t) {
            return Err(Errno::Perm);
        }
        let level = *self.tables.get(&t).ok_or(Errno::Inval)?;
        self.check(u.val, level)?;
        if u.val & 3 == 3 && level < 3 {
            self.make_table(desc::output_address(u.val), level + 1)?;
        }
        self.set(u.pte(), u.val);
        Ok(())
    }

    /// Drops the table marks of `t` and what only it linked (enough for these tests).
    fn release(&mut self, t: u64) {
        if let Some(level) = self.tables.remove(&t)
            && level < 3
        {
            for d in self.mem[&t].clone() {
                if d & 3 == 3 && !self.pinned.contains(&desc::output_address(d)) {
                    self.release(desc::output_address(d));
                }
            }
        }
    }

    fn ext_one(&mut self, op: &MmuextOp) -> Result<(), Errno> {
        match op.cmd {
            ext::PIN_L0_TABLE..=ext::PIN_L3_TABLE => {
                if self.pinned.contains(&op.arg1) {
                    return Err(Errno::Inval);
                }
                self.make_table(op.arg1, op.cmd as u8)?;
                self.pinned.insert(op.arg1);
            }
            ext::UNPIN_TABLE => {
                if !self.pinned.contains(&op.arg1) {
                    return Err(Errno::Inval);
                }
                if self.ttbr0 == op.arg1 || self.ttbr1 == op.arg1 {
                    return Err(Errno::Busy);
                }
                self.pinned.remove(&op.arg1);
                self.release(op.arg1);
            }
            ext::NEW_TTBR0 | ext::NEW_TTBR1 => {
                if op.arg1 != 0 && (!self.pinned.contains(&op.arg1) || self.tables[&op.arg1] != 0) {
                    return Err(Errno::Inval);
                }
                if op.cmd == ext::NEW_TTBR0 {
                    self.ttbr0 = op.arg1;
                } else {
                    self.ttbr1 = op.arg1;
                }
            }
            ext::TLB_FLUSH_LOCAL..=ext::INVLPG_ALL => {}
            _ => return Err(Errno::NoSys),
        }
        Ok(())
    }

    fn batch<T>(items: &[T], mut f: impl FnMut(&T) -> Result<(), Errno>) -> BatchResult {
        for (i, it) in items.iter().enumerate() {
            if let Err(e) = f(it) {
                return BatchResult::from_regs(e.to_ret() as u64, i as u64);
            }
        }
        BatchResult::from_regs(0, items.len() as u64)
    }
}

impl Machine for Fake {
    unsafe fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> BatchResult {
        self.calls.push(reqs.len());
        Self::batch(reqs, |u| self.update(u))
    }

    unsafe fn mmuext_op(&mut self, ops: &[MmuextOp]) -> BatchResult {
        self.ext_log.extend_from_slice(ops);
        Self::batch(ops, |op| self.ext_one(op))
    }

    fn read_u64(&self, ma: u64) -> Option<u64> {
        self.owned.contains(&(ma & !0xfff)).then(|| self.word(ma))
    }

    unsafe fn write_u64(&mut self, ma: u64, val: u64) -> bool {
        // Through the initial map: the frame's level-3 entry there must be writable.
        let f = self.frames.unwrap();
        let Some(pfn) = f.pfn_of_ma(ma) else {
            return false;
        };
        let va = f.va(pfn);
        let l3 = ma_of(PT_FIRST + 3);
        let d = self.word(l3 + index(va, 3) as u64 * 8);
        if d & VALID == 0 || d & AP_RO != 0 {
            return false;
        }
        self.set(ma, val);
        true
    }

    fn invalidate_va(&mut self, va: u64) {
        self.invalidated.push(va);
    }

    fn invalidate_all(&mut self) {
        self.invalidated.push(u64::MAX);
    }

    fn tlb_sync(&mut self) {}
}

/// A domain of 64 frames with the initial map Ferrite's builder would give: one L3 table
/// mapping every pfn at VB, tables read-only, the root pinned and in TTBR1.
fn domain() -> Mm<Fake> {
    let list: &'static [u64] = Vec::leak((0..NR).map(ma_of).collect());
    let frames = FrameMap::new(list, VB);
    let mut f = Fake {
        frames: Some(frames),
        ..Fake::default()
    };
    for pfn in 0..NR {
        f.owned.insert(ma_of(pfn));
        f.mem.insert(ma_of(pfn), vec![0; 512]);
    }
    let [l0, l1, l2, l3] = [0, 1, 2, 3].map(|i| ma_of(PT_FIRST + i));
    f.set(l0 + index(VB, 0) as u64 * 8, table(l1));
    f.set(l1 + index(VB, 1) as u64 * 8, table(l2));
    f.set(l2 + index(VB, 2) as u64 * 8, table(l3));
    for pfn in 0..NR {
        let ro = if (PT_FIRST..PT_FIRST + 4).contains(&pfn) {
            AP_RO
        } else {
            0
        };
        f.set(
            l3 + index(VB + pfn * 4096, 3) as u64 * 8,
            page(ma_of(pfn), NORMAL | ro),
        );
    }
    f.make_table(l0, 0).unwrap();
    f.pinned.insert(l0);
    f.ttbr1 = l0;
    let mut alloc = FrameAlloc::new(FIRST_FREE, NR);
    alloc.reserve(SHARED_PFN);
    let mut mm = Mm::new(Fake::default());
    mm.init(f, frames, alloc, l0);
    mm
}

#[test]
fn walks_the_initial_map() {
    let mm = domain();
    let l3 = ma_of(PT_FIRST + 3);
    assert_eq!(
        mm.initial_pte(5).unwrap(),
        l3 + index(VB + 5 * 4096, 3) as u64 * 8
    );
    let (ma, d) = mm
        .translate(mm.kernel_root(), VB + 40 * 4096 + 0x18)
        .unwrap();
    assert_eq!(ma, ma_of(40) + 0x18);
    assert_eq!(d & AP_RO, 0);
    assert_eq!(
        mm.translate(mm.kernel_root(), 0x1000),
        Err(MmError::NotMapped {
            va: 0x1000,
            level: 0
        })
    );
    assert_eq!(Entry::decode(0b01, 3), Entry::Invalid);
    assert_eq!(Entry::decode(0x4020_0001, 2), Entry::Leaf(0x4020_0000));
}

#[test]
fn new_tables_are_sealed_before_they_are_linked() {
    let mut mm = domain();
    let (_, root) = mm.new_table().unwrap();
    mm.flush().unwrap();
    mm.pin(0, root).unwrap();
    let va = 0x40_0000_0000u64;
    let (_, data) = mm.alloc_zeroed().unwrap();
    // SAFETY: a fake machine.
    unsafe { mm.map(root, va, page(data, NORMAL | NG)).unwrap() };
    // The three intermediate tables were created, sealed and linked: three flushes of two.
    assert_eq!(mm.machine.calls, vec![1, 2, 2, 2]);
    assert_eq!(mm.queue.len(), 1, "the leaf waits for the next flush");
    mm.flush().unwrap();
    assert_eq!(mm.translate(root, va + 8).unwrap().0, data + 8);
    // A sealed frame cannot be written through the initial map any more.
    let l1 = desc::output_address(mm.read_desc(root, index(va, 0)).unwrap());
    // SAFETY: a fake machine.
    assert!(!unsafe { mm.machine.write_u64(l1, 1) });
    assert_eq!(mm.machine.tables.get(&l1), Some(&1));
    let st = mm.stats();
    assert_eq!((st.updates, st.update_calls), (8, 5));
    // The shared-info page is never handed out.
    for _ in 0..40 {
        match mm.alloc_frame() {
            Ok((pfn, _)) => assert_ne!(pfn, SHARED_PFN),
            Err(e) => assert_eq!(e, MmError::OutOfFrames),
        }
    }
}

#[test]
fn ptbuild_sequence() {
    // What ferrite-domu's `ptbuild` does: write L0..L2 by hand, seal, pin, switch, map 512
    // pages in one call, switch back, unpin, unseal.
    let mut mm = domain();
    let va = 0x40_0000_0000u64;
    let t: Vec<(u64, u64)> = (0..4).map(|_| mm.alloc_zeroed().unwrap()).collect();
    for l in 0..3 {
        let pte = t[l].1 + index(va, l as u8) as u64 * 8;
        // SAFETY: a fake machine, frames just allocated.
        assert!(unsafe { mm.machine.write_u64(pte, table(t[l + 1].1)) });
    }
    // Pinning before sealing is refused: the frames are mapped writable.
    assert_eq!(mm.pin(0, t[0].1).unwrap_err().errno(), Some(Errno::Busy));
    for &(pfn, _) in &t {
        // SAFETY: a fake machine.
        unsafe { mm.set_initial_writable(pfn, false).unwrap() };
    }
    mm.flush().unwrap();
    mm.pin(0, t[0].1).unwrap();
    // SAFETY: a fake machine.
    unsafe { mm.new_ttbr0(t[0].1, 1).unwrap() };
    assert_eq!(mm.machine.ttbr0, t[0].1);
    let before = mm.stats();
    for i in 0..512u64 {
        let (_, ma) = mm.alloc_frame().unwrap_or((0, ma_of(30)));
        let pte = t[3].1 + i * 8;
        // SAFETY: a fake machine.
        unsafe { mm.queue(pte, page(ma, NORMAL | NG), None).unwrap() };
    }
    mm.flush().unwrap();
    let after = mm.stats();
    assert_eq!(after.updates - before.updates, 512);
    assert_eq!(after.update_calls - before.update_calls, 1);
    assert_eq!(*mm.machine.calls.last().unwrap(), 512);
    // Unpinning a base is refused; clear it first.
    assert_eq!(mm.unpin(t[0].1).unwrap_err().errno(), Some(Errno::Busy));
    // SAFETY: a fake machine.
    unsafe {
        mm.ext(&[
            MmuextOp::new(ext::NEW_TTBR0, 0, 0),
            MmuextOp::unpin(t[0].1),
            MmuextOp::new(ext::TLB_FLUSH_LOCAL, 0, 0),
        ])
        .unwrap()
    };
    for &(_, ma) in &t {
        assert!(
            !mm.machine.tables.contains_key(&ma),
            "released with the root"
        );
    }
    for &(pfn, ma) in &t {
        // SAFETY: a fake machine.
        unsafe { mm.set_initial_writable(pfn, true).unwrap() };
        mm.flush().unwrap();
        // SAFETY: a fake machine; the frame is an ordinary one again.
        assert!(unsafe { mm.machine.write_u64(ma, 0x55) });
    }
    assert!(mm.machine.invalidated.contains(&(VB + t[0].0 * 4096)));
}

#[test]
fn refusals_name_the_entry_and_keep_the_prefix() {
    let mut mm = domain();
    let (_, l3) = mm.new_table().unwrap();
    mm.flush().unwrap();
    mm.pin(3, l3).unwrap();
    // SAFETY: a fake machine.
    unsafe {
        mm.queue(l3, page(ma_of(40), NORMAL | AP_RO), None).unwrap();
        mm.queue(l3 + 8, page(0x4000_0000, NORMAL), None).unwrap();
        mm.queue(l3 + 16, page(ma_of(41), NORMAL), None).unwrap();
    }
    let e = mm.flush().unwrap_err();
    assert_eq!(
        e,
        MmError::Update {
            errno: Errno::Perm,
            index: 1,
            req: MmuUpdate::normal(l3 + 8, page(0x4000_0000, NORMAL)),
        }
    );
    assert!(mm.queue.is_empty());
    assert_eq!(mm.machine.word(l3), page(ma_of(40), NORMAL | AP_RO));
    assert_eq!(mm.machine.word(l3 + 16), 0);
    assert_eq!(mm.stats().updates, 2, "the seal and entry 0");
    assert_eq!(errno::EPERM, e.errno().unwrap().to_ret());
    // A page-table frame cannot be mapped writable.
    // SAFETY: a fake machine.
    unsafe { mm.queue(l3 + 24, page(l3, NORMAL), None).unwrap() };
    assert_eq!(mm.flush().unwrap_err().errno(), Some(Errno::Busy));
}

#[test]
fn a_full_queue_flushes_itself() {
    let mut mm = domain();
    let (_, l3) = mm.new_table().unwrap();
    mm.flush().unwrap();
    mm.pin(3, l3).unwrap();
    for i in 0..(QUEUE_LEN as u64 + 10) {
        // SAFETY: a fake machine.
        unsafe {
            mm.queue(
                l3 + (i % 512) * 8,
                page(ma_of(40), NORMAL | AP_RO),
                Some(i * 4096),
            )
            .unwrap()
        };
    }
    assert_eq!(mm.machine.calls, vec![1, QUEUE_LEN]);
    assert_eq!(mm.queue.len(), 10);
    mm.flush().unwrap();
    // More than 32 pages to invalidate: the whole TLB instead.
    assert!(mm.machine.invalidated.contains(&u64::MAX));
}

#[test]
fn contiguous_spans_are_split_before_sealing() {
    let mut mm = domain();
    let l3 = ma_of(PT_FIRST + 3);
    // Pretend the builder mapped pfns 32..48 (64 KiB aligned in VA) with the hint.
    for pfn in 32..48 {
        let pte = l3 + index(VB + pfn * 4096, 3) as u64 * 8;
        let d = mm.machine.word(pte);
        mm.machine.set(pte, d | CONTIGUOUS);
    }
    // SAFETY: a fake machine.
    unsafe { mm.set_initial_writable(40, false).unwrap() };
    assert_eq!(mm.queue.len(), 16);
    mm.flush().unwrap();
    for pfn in 32..48 {
        let d = mm.machine.word(mm.initial_pte(pfn).unwrap());
        assert_eq!(d & CONTIGUOUS, 0);
        assert_eq!(d & AP_RO != 0, pfn == 40);
    }
}
