//! Host tests of the PV MMU: a fake machine memory, a domain over a run of frames, and the
//! rules one by one (`rules`), batches, blocks and lifecycles (`batches`), a randomised
//! model (`model`) that checks the invariants after every operation, and the frame table
//! itself with the fast path compared against the general one (`table`).

mod batches;
mod model;
mod rules;
mod table;

use super::*;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use ferrite_abi::desc::{self as d, AP_RO, NORMAL, block, page, table};
use ferrite_abi::mmu::{MmuUpdate, MmuextOp, ext};

pub(super) const DOM: DomId = 3;
/// The domain's frames start here, 2 MiB-aligned so blocks can be tried.
pub(super) const RAM: u64 = 0x4000_0000;
/// Frames the domain does not own: another domain's RAM, Ferrite's image, a device.
pub(super) const FOREIGN: u64 = 0x8000_0000;
pub(super) const FERRITE: u64 = 0x4_0008_0000;
pub(super) const DEVICE: u64 = 0x0900_0000;

/// Frame `k` of the domain.
pub(super) const fn f(k: u64) -> u64 {
    RAM + k * 4096
}

/// Where frames ballooned in from elsewhere come from: RAM away from the domain's own run.
pub(super) const ELSEWHERE: u64 = RAM + (64 << 20);

/// Frame `k` of [`ELSEWHERE`].
pub(super) const fn x(k: u64) -> u64 {
    ELSEWHERE + k * 4096
}

/// The address of entry `i` of the table at `t`.
pub(super) const fn e(t: u64, i: usize) -> u64 {
    t + 8 * i as u64
}

pub(super) const RW: u64 = NORMAL;
pub(super) const RO: u64 = NORMAL | AP_RO;

/// Machine memory: the domain's frames as whole pages (allocated when first written), any
/// other address as single words; absent reads as 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Words {
    pages: Vec<Option<Box<[u64; 512]>>>,
    other: BTreeMap<u64, u64>,
}

impl Words {
    fn slot(&self, pa: u64) -> Option<(usize, usize)> {
        let k = usize::try_from(pa.checked_sub(RAM)? >> 12).ok()?;
        (k < 1 << 18).then_some((k, (pa as usize & 0xfff) / 8))
    }

    pub fn get(&self, pa: u64) -> u64 {
        match self.slot(pa) {
            Some((k, i)) => self
                .pages
                .get(k)
                .and_then(|p| p.as_ref())
                .map_or(0, |p| p[i]),
            None => self.other.get(&pa).copied().unwrap_or(0),
        }
    }

    pub fn set(&mut self, pa: u64, v: u64) {
        match self.slot(pa) {
            Some((k, i)) => {
                if self.pages.len() <= k {
                    self.pages.resize(k + 1, None);
                }
                self.pages[k].get_or_insert_with(|| Box::new([0; 512]))[i] = v;
            }
            None => {
                self.other.insert(pa, v);
            }
        }
    }

    /// What the allocator does to a frame before giving it (back) to a domain.
    pub fn scrub(&mut self, pa: u64) {
        for i in 0..512 {
            self.set(pa + 8 * i, 0);
        }
    }
}

/// Machine memory, with the TLB reach a real machine would have: which frames may still be
/// cached writable, as tables, or at all, since the last flush.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct FakeMem {
    pub words: Words,
    pub flushes: usize,
    pub tlb_writable: BTreeSet<u64>,
    pub tlb_table: BTreeSet<u64>,
    pub tlb_any: BTreeSet<u64>,
    /// Frames whose reads fail (Ferrite cannot reach them).
    pub unreadable: BTreeSet<u64>,
}

impl GuestMemory for FakeMem {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        assert_eq!(pa % 8, 0);
        if self.unreadable.contains(&(pa & !0xfff)) {
            return None;
        }
        Some(self.words.get(pa))
    }

    fn write_u64(&mut self, pa: u64, v: u64) -> bool {
        assert_eq!(pa % 8, 0);
        if self.unreadable.contains(&(pa & !0xfff)) {
            return false;
        }
        self.words.set(pa, v);
        true
    }

    fn flush_tlbs(&mut self) {
        self.flushes += 1;
        self.tlb_writable.clear();
        self.tlb_table.clear();
        self.tlb_any.clear();
    }
}

/// Grants for the hook's tests: `allowed` frames may be mapped; `mapped` counts live maps.
#[derive(Debug, Default)]
pub(super) struct TestGrants {
    pub allowed: BTreeSet<u64>,
    pub mapped: BTreeMap<(u64, bool), u32>,
}

impl Grants for TestGrants {
    fn map(&mut self, dom: DomId, pa: u64, writable: bool) -> bool {
        assert_eq!(dom, DOM);
        let ok = self.allowed.contains(&pa);
        if ok {
            *self.mapped.entry((pa, writable)).or_default() += 1;
        }
        ok
    }

    fn unmap(&mut self, _dom: DomId, pa: u64, writable: bool) {
        let n = self
            .mapped
            .get_mut(&(pa, writable))
            .expect("unmap of a grant never mapped");
        *n -= 1;
        if *n == 0 {
            self.mapped.remove(&(pa, writable));
        }
    }
}

pub(super) struct Env {
    pub ft: FrameTable<TestGrants>,
    pub mem: FakeMem,
}

impl Env {
    /// A domain owning `n` frames from [`RAM`], with two vCPUs.
    pub fn new(n: u64) -> Self {
        Self::with_extra(n, 0)
    }

    /// A domain owning `n` frames from [`RAM`] and `extra` frames from [`ELSEWHERE`] (as if
    /// ballooned in), with two vCPUs.
    pub fn with_extra(n: u64, extra: u64) -> Self {
        let frames: Vec<u64> = (0..n).map(f).chain((0..extra).map(x)).collect();
        let ft = FrameTable::with_grants(DOM, &frames, 2, Policy::default(), TestGrants::default())
            .unwrap();
        Self {
            ft,
            mem: FakeMem::default(),
        }
    }

    /// What the guest writes into one of its ordinary pages. Never a table: the rules make
    /// that impossible, and the tests must not cheat.
    pub fn poke(&mut self, pa: u64, v: u64) {
        let ty = self.ft.info(pa).map(|i| i.ty);
        assert!(
            !matches!(ty, Some(FrameType::PageTable(_))),
            "the guest cannot write table page {pa:#x}"
        );
        self.mem.words.set(pa, v);
    }

    pub fn peek(&self, pa: u64) -> u64 {
        self.mem.words.get(pa)
    }

    pub fn upd(&mut self, pte: u64, val: u64) -> Result<(), Errno> {
        let (done, r) = mmu_update(
            DOM,
            &mut self.ft,
            &mut self.mem,
            &[MmuUpdate::normal(pte, val)],
            8,
        );
        assert_eq!(done, r.is_ok() as usize);
        self.check();
        r
    }

    pub fn batch(&mut self, b: &[MmuUpdate], budget: usize) -> (usize, Result<(), Errno>) {
        let r = mmu_update(DOM, &mut self.ft, &mut self.mem, b, budget);
        self.check();
        r
    }

    pub fn ext_on(&mut self, vcpu: usize, op: MmuextOp) -> Result<Vec<Effect>, Errno> {
        let mut fx = Vec::new();
        let (done, r) = mmuext_op(DOM, &mut self.ft, &mut self.mem, vcpu, &[op], 8, &mut |x| {
            fx.push(x)
        });
        assert_eq!(done, r.is_ok() as usize);
        self.check();
        r.map(|()| fx)
    }

    pub fn ext(&mut self, op: MmuextOp) -> Result<Vec<Effect>, Errno> {
        self.ext_on(0, op)
    }

    pub fn pin(&mut self, level: u8, pa: u64) -> Result<(), Errno> {
        self.ext(MmuextOp::pin(level, pa)).map(|_| ())
    }

    pub fn unpin(&mut self, pa: u64) -> Result<(), Errno> {
        self.ext(MmuextOp::unpin(pa)).map(|_| ())
    }

    pub fn set_ttbr0(&mut self, pa: u64) -> Result<(), Errno> {
        self.ext(MmuextOp::new(ext::NEW_TTBR0, pa, 1)).map(|_| ())
    }

    pub fn info(&self, pa: u64) -> FrameInfo {
        self.ft.info(pa).unwrap()
    }

    pub fn ty(&self, pa: u64) -> FrameType {
        self.info(pa).ty
    }

    /// The recount agrees, and no TLB could still reach a frame in a way its type forbids.
    pub fn check(&mut self) {
        if let Err(why) = self.ft.audit(&self.mem) {
            panic!("audit: {why}");
        }
        for pa in self.ft.frames() {
            let i = self.ft.info(pa).unwrap();
            match i.ty {
                FrameType::PageTable(_) => assert!(
                    !self.mem.tlb_writable.contains(&pa),
                    "{pa:#x} became a table while a TLB may hold it writable"
                ),
                FrameType::Writable => assert!(
                    !self.mem.tlb_table.contains(&pa),
                    "{pa:#x} became writable while a walk cache may hold it as a table"
                ),
                FrameType::None => {}
            }
        }
        // What TLBs may now hold, until the next flush.
        let frames: Vec<u64> = self.ft.frames().collect();
        for pa in frames {
            let i = self.ft.info(pa).unwrap();
            match i.ty {
                FrameType::Writable => {
                    self.mem.tlb_writable.insert(pa);
                }
                FrameType::PageTable(_) => {
                    self.mem.tlb_table.insert(pa);
                }
                FrameType::None => {}
            }
            if i.refs > 0 {
                self.mem.tlb_any.insert(pa);
            }
        }
    }

    /// Gives a frame back; checks no TLB can still reach it.
    pub fn release(&mut self, pa: u64) -> Result<(), Errno> {
        self.ft.release_frame(pa, &mut self.mem)?;
        assert!(
            !self.mem.tlb_any.contains(&pa),
            "{pa:#x} left while a TLB may reach it"
        );
        self.check();
        Ok(())
    }

    /// Every frame untyped and unreferenced.
    pub fn all_zero(&self) -> bool {
        self.ft.frames().all(|pa| {
            let i = self.ft.info(pa).unwrap();
            i.ty == FrameType::None && i.type_count == 0 && i.refs == 0 && !i.pinned && i.holds == 0
        })
    }

    /// A four-level tree written by the guest into fresh frames (before any is a table):
    /// L0 at `f(0)` → L1 `f(1)` → L2 `f(2)` → L3 `f(3)`, mapping `f(10)` writable at L3
    /// index 0, the four tables read-only at 1..=4, and `f(11)` read-only at 5.
    pub fn write_tree(&mut self) {
        self.poke(e(f(0), 0), table(f(1)));
        self.poke(e(f(1), 0), table(f(2)));
        self.poke(e(f(2), 0), table(f(3)));
        self.poke(e(f(3), 0), page(f(10), RW));
        for k in 0..4 {
            self.poke(e(f(3), 1 + k as usize), page(f(k), RO));
        }
        self.poke(e(f(3), 5), page(f(11), RO));
    }
}
