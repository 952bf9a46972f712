//! The PV MMU from the guest's side (docs/abi.md, "The PV MMU").
//!
//! The guest reads its page tables directly (they are mapped read-only in its initial linear
//! map) but changes them only through Ferrite: `MMU_UPDATE` for descriptors, `MMUEXT_OP` for
//! pins and bases. [`Mm`] is a page-table manager over that:
//!
//! - [`FrameMap`] converts between pfns, machine addresses and initial-map VAs;
//!   [`FrameAlloc`] hands out free frames;
//! - [`UpdateQueue`] gathers descriptor writes and issues them as one batched call;
//! - [`Mm`] walks tables by reading them, turns fresh frames into tables (zero them through the
//!   writable map, then make that mapping read-only: "sealing"), maps and unmaps pages in an
//!   address space, pins, unpins and installs bases.
//!
//! Everything goes through the [`Machine`] trait ([`Ferrite`] on the real thing), so the
//! manager is host-tested against a fake hypervisor (`mm/tests.rs`).
//!
//! The manager handles page mappings only: a walk that meets a block descriptor where it needs
//! a table stops with [`MmError::Block`] (it cannot split a block in place, since the frame of
//! the new table would itself be mapped writable by that block).

mod ferrite;
mod frames;
mod queue;
#[cfg(test)]
mod tests;

pub use ferrite::Ferrite;
pub use frames::{FrameAlloc, FrameMap};
pub use queue::{QUEUE_LEN, Stats, UpdateQueue};

use crate::hypercall::BatchResult;
use core::fmt;
use ferrite_abi::Errno;
use ferrite_abi::desc::{self, AP_RO, CONTIGUOUS, ENTRIES, PAGE_SIZE, VALID};
use ferrite_abi::mmu::{MmuUpdate, MmuextOp, ext};

/// What the manager needs of the machine: the two MMU calls, reading and writing memory by
/// machine address through the initial linear map, and TLB maintenance.
pub trait Machine {
    /// `MMU_UPDATE` for the calling domain.
    ///
    /// # Safety
    /// As [`crate::hypercall::mmu_update`].
    unsafe fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> BatchResult;
    /// `MMUEXT_OP` for the calling domain.
    ///
    /// # Safety
    /// As [`crate::hypercall::mmuext_op`].
    unsafe fn mmuext_op(&mut self, ops: &[MmuextOp]) -> BatchResult;
    /// The word at machine address `ma` (8-aligned), if the domain owns the frame.
    fn read_u64(&self, ma: u64) -> Option<u64>;
    /// Writes the word at `ma` through the initial map; false if the frame is not the
    /// domain's or not mapped writable there.
    ///
    /// # Safety
    /// Nothing Rust holds may live at `ma`.
    unsafe fn write_u64(&mut self, ma: u64, val: u64) -> bool;
    /// Starts invalidating the TLB entries of the page at `va` (every ASID, every CPU).
    fn invalidate_va(&mut self, va: u64);
    /// Starts invalidating all of the domain's TLB entries.
    fn invalidate_all(&mut self);
    /// Waits for the invalidations started.
    fn tlb_sync(&mut self);
}

/// Why a page-table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// Ferrite refused entry `index` of an `MMU_UPDATE` (those before it were applied).
    Update {
        errno: Errno,
        index: usize,
        req: MmuUpdate,
    },
    /// Ferrite refused operation `index` of an `MMUEXT_OP`.
    Ext {
        errno: Errno,
        index: usize,
        op: MmuextOp,
    },
    /// No free frame left.
    OutOfFrames,
    /// A machine address outside the domain's frame list.
    NotOurs { ma: u64 },
    /// A walk for `va` found an invalid entry at `level`.
    NotMapped { va: u64, level: u8 },
    /// A walk for `va` found a block at `level` where it needed a table.
    Block { va: u64, level: u8 },
    /// The frame at `ma` could not be written through the initial map (read-only there).
    Unwritable { ma: u64 },
}

impl MmError {
    /// Ferrite's error, if it was a refusal.
    pub const fn errno(&self) -> Option<Errno> {
        match *self {
            Self::Update { errno, .. } | Self::Ext { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Self::Update { errno, index, req } => write!(
                f,
                "MMU_UPDATE entry {index} (ptr {:#x}, val {:#x}): {errno}",
                req.ptr, req.val
            ),
            Self::Ext { errno, index, op } => write!(
                f,
                "MMUEXT_OP {index} (cmd {}, arg1 {:#x}, arg2 {:#x}): {errno}",
                op.cmd, op.arg1, op.arg2
            ),
            Self::OutOfFrames => write!(f, "out of free frames"),
            Self::NotOurs { ma } => write!(f, "machine address {ma:#x} is not the domain's"),
            Self::NotMapped { va, level } => write!(f, "{va:#x}: no entry at level {level}"),
            Self::Block { va, level } => write!(f, "{va:#x}: a block at level {level}"),
            Self::Unwritable { ma } => write!(f, "frame {ma:#x} is not writable"),
        }
    }
}

/// What a descriptor found at `level` is, for a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Invalid,
    /// The next-level table's machine address.
    Table(u64),
    /// A block (levels 1, 2) or page (level 3): its output address.
    Leaf(u64),
}

impl Entry {
    pub const fn decode(d: u64, level: u8) -> Self {
        if d & VALID == 0 {
            Self::Invalid
        } else if d & desc::TABLE != 0 && level < 3 {
            Self::Table(desc::output_address(d))
        } else if d & desc::TABLE == 0 && level == 3 {
            // Reserved at level 3: the MMU treats it as invalid.
            Self::Invalid
        } else {
            Self::Leaf(desc::output_address(d))
        }
    }
}

/// The page-table manager: see the module documentation. All its changes go through one
/// [`UpdateQueue`]; leaf changes stay queued until [`Mm::flush`] (or until the queue fills),
/// while new tables are linked (and the queue flushed) at once, so walks always see them.
pub struct Mm<M: Machine> {
    pub machine: M,
    pub frames: FrameMap<'static>,
    pub alloc: FrameAlloc,
    pub queue: UpdateQueue,
    /// The initial level-0 table (the base of the half holding the initial map).
    kernel_root: u64,
}

impl<M: Machine> Mm<M> {
    /// A manager with no frames yet, for a `static`: [`Mm::init`] it at start of day.
    pub const fn new(machine: M) -> Self {
        Self {
            machine,
            frames: FrameMap::EMPTY,
            alloc: FrameAlloc::EMPTY,
            queue: UpdateQueue::new(),
            kernel_root: 0,
        }
    }

    /// Sets the machine, the frames, the allocator and the initial root's machine address.
    pub fn init(&mut self, machine: M, frames: FrameMap<'static>, alloc: FrameAlloc, root: u64) {
        self.machine = machine;
        self.frames = frames;
        self.alloc = alloc;
        self.kernel_root = root;
    }

    pub fn kernel_root(&self) -> u64 {
        self.kernel_root
    }

    pub fn stats(&self) -> Stats {
        self.queue.stats
    }

    /// Entry `index` of the table at `table`, read through the initial map.
    pub fn read_desc(&self, table: u64, index: usize) -> Result<u64, MmError> {
        let ma = table + (index % ENTRIES) as u64 * 8;
        self.machine.read_u64(ma).ok_or(MmError::NotOurs { ma })
    }

    /// The machine address of the level-`level` entry for `va` under `root`, following table
    /// descriptors (reading them) through the levels above it.
    pub fn walk(&self, root: u64, va: u64, level: u8) -> Result<u64, MmError> {
        let mut table = root;
        for l in 0..level {
            let d = self.read_desc(table, desc::index(va, l))?;
            table = match Entry::decode(d, l) {
                Entry::Table(next) => next,
                Entry::Invalid => return Err(MmError::NotMapped { va, level: l }),
                Entry::Leaf(_) => return Err(MmError::Block { va, level: l }),
            };
        }
        Ok(table + desc::index(va, level) as u64 * 8)
    }

    /// What `va` translates to under `root`: the machine address and the leaf descriptor.
    pub fn translate(&self, root: u64, va: u64) -> Result<(u64, u64), MmError> {
        let mut table = root;
        for l in 0..4u8 {
            let d = self.read_desc(table, desc::index(va, l))?;
            match Entry::decode(d, l) {
                Entry::Table(next) => table = next,
                Entry::Invalid => return Err(MmError::NotMapped { va, level: l }),
                Entry::Leaf(oa) => {
                    let offset = va & ((1u64 << desc::level_shift(l)) - 1);
                    return Ok((oa + offset, d));
                }
            }
        }
        unreachable!("level 3 entries are leaves or invalid")
    }

    /// The level-3 entry mapping `pfn` in the initial map.
    pub fn initial_pte(&self, pfn: u64) -> Result<u64, MmError> {
        self.walk(self.kernel_root, self.frames.va(pfn), 3)
    }

    /// A free frame: (pfn, machine address). Its contents are undefined.
    pub fn alloc_frame(&mut self) -> Result<(u64, u64), MmError> {
        let pfn = self.alloc.alloc().ok_or(MmError::OutOfFrames)?;
        let ma = self.frames.ma(pfn).ok_or(MmError::OutOfFrames)?;
        Ok((pfn, ma))
    }

    /// A free frame, zeroed through its writable initial mapping.
    pub fn alloc_zeroed(&mut self) -> Result<(u64, u64), MmError> {
        let (pfn, ma) = self.alloc_frame()?;
        for i in 0..ENTRIES as u64 {
            // SAFETY: the frame was free: nothing Rust holds lives in it.
            if !unsafe { self.machine.write_u64(ma + i * 8, 0) } {
                self.alloc.free(pfn);
                return Err(MmError::Unwritable { ma });
            }
        }
        Ok((pfn, ma))
    }

    /// Gives `pfn` back to the allocator (it must be writable in the initial map again, or
    /// [`Mm::alloc_zeroed`] will refuse it).
    pub fn free_frame(&mut self, pfn: u64) {
        self.alloc.free(pfn);
    }

    /// Queues a descriptor write; `inval` is a VA to invalidate after it is applied.
    ///
    /// # Safety
    /// As [`crate::hypercall::mmu_update`].
    pub unsafe fn queue(&mut self, pte: u64, val: u64, inval: Option<u64>) -> Result<(), MmError> {
        // SAFETY: the caller's contract.
        unsafe {
            self.queue
                .push(&mut self.machine, MmuUpdate::normal(pte, val), inval)
        }
    }

    /// Issues what is queued.
    pub fn flush(&mut self) -> Result<(), MmError> {
        self.queue.flush(&mut self.machine)
    }

    /// Queues making `pfn`'s initial mapping read-only (`writable == false`, "sealing" it, as
    /// a frame must be before it becomes a table) or writable again. A contiguous hint on the
    /// entry is first removed from its whole 16-entry span, since the span must agree.
    ///
    /// # Safety
    /// Sealing: nothing may still write the frame through that mapping.
    pub unsafe fn set_initial_writable(&mut self, pfn: u64, writable: bool) -> Result<(), MmError> {
        let va = self.frames.va(pfn);
        let pte = self.initial_pte(pfn)?;
        let old = self
            .machine
            .read_u64(pte)
            .ok_or(MmError::NotOurs { ma: pte })?;
        if Entry::decode(old, 3) == Entry::Invalid {
            return Err(MmError::NotMapped { va, level: 3 });
        }
        if old & CONTIGUOUS != 0 {
            let first_pte = pte & !(16 * 8 - 1);
            let first_va = va & !(16 * PAGE_SIZE - 1);
            for i in 0..16 {
                let (p, v) = (first_pte + i * 8, first_va + i * PAGE_SIZE);
                let d = self.machine.read_u64(p).ok_or(MmError::NotOurs { ma: p })?;
                if p != pte && d & CONTIGUOUS != 0 {
                    // SAFETY: the same mapping without the hint.
                    unsafe { self.queue(p, d & !CONTIGUOUS, Some(v))? };
                }
            }
        }
        let new = if writable { old & !AP_RO } else { old | AP_RO } & !CONTIGUOUS;
        if new != old {
            // SAFETY: the caller's contract.
            unsafe { self.queue(pte, new, Some(va))? };
        }
        Ok(())
    }

    /// A fresh table: a zeroed frame, its initial mapping sealed (queued, not flushed). The
    /// caller then links or pins it. Returns (pfn, machine address).
    pub fn new_table(&mut self) -> Result<(u64, u64), MmError> {
        let (pfn, ma) = self.alloc_zeroed()?;
        // SAFETY: the frame was just allocated and zeroed: nothing else writes it.
        if let Err(e) = unsafe { self.set_initial_writable(pfn, false) } {
            self.alloc.free(pfn);
            return Err(e);
        }
        Ok((pfn, ma))
    }

    /// Queues the leaf descriptor `leaf` for `va` in the address space rooted at `root`,
    /// creating (and linking, with a flush) any missing level-1..3 table on the way.
    ///
    /// # Safety
    /// As [`crate::hypercall::mmu_update`]: if `root` is live, `va` must not be memory Rust
    /// uses in a way the new mapping breaks.
    pub unsafe fn map(&mut self, root: u64, va: u64, leaf: u64) -> Result<(), MmError> {
        let mut table = root;
        for level in 0..3u8 {
            let pte = table + desc::index(va, level) as u64 * 8;
            let d = self
                .machine
                .read_u64(pte)
                .ok_or(MmError::NotOurs { ma: pte })?;
            table = match Entry::decode(d, level) {
                Entry::Table(next) => next,
                Entry::Leaf(_) => return Err(MmError::Block { va, level }),
                Entry::Invalid => {
                    let (_, t) = self.new_table()?;
                    // SAFETY: linking an empty table adds no translation.
                    unsafe { self.queue(pte, desc::table(t), None)? };
                    self.flush()?;
                    t
                }
            };
        }
        let pte = table + desc::index(va, 3) as u64 * 8;
        let old = self
            .machine
            .read_u64(pte)
            .ok_or(MmError::NotOurs { ma: pte })?;
        let inval = (old & VALID != 0).then_some(va);
        // SAFETY: the caller's contract.
        unsafe { self.queue(pte, leaf, inval) }
    }

    /// Queues removing the page mapping of `va` under `root` (and its TLB entries).
    ///
    /// # Safety
    /// Rust must not use memory at `va` any more.
    pub unsafe fn unmap(&mut self, root: u64, va: u64) -> Result<(), MmError> {
        let pte = self.walk(root, va, 3)?;
        // SAFETY: the caller's contract.
        unsafe { self.queue(pte, 0, Some(va)) }
    }

    /// Issues `ops` as one `MMUEXT_OP` (flushing queued updates first, so the order holds).
    ///
    /// # Safety
    /// As [`crate::hypercall::mmuext_op`].
    pub unsafe fn ext(&mut self, ops: &[MmuextOp]) -> Result<(), MmError> {
        self.flush()?;
        // SAFETY: the caller's contract.
        let r = unsafe { self.machine.mmuext_op(ops) };
        let st = &mut self.queue.stats;
        st.ext_calls += 1;
        st.ext_ops += r.done.min(ops.len()) as u64;
        match r.result {
            Ok(_) => Ok(()),
            Err(errno) => Err(MmError::Ext {
                errno,
                index: r.done,
                op: ops.get(r.done).copied().unwrap_or_default(),
            }),
        }
    }

    /// Pins the table at `ma` as level `level` (Ferrite validates it and what is below).
    pub fn pin(&mut self, level: u8, ma: u64) -> Result<(), MmError> {
        // SAFETY: pinning changes no translation.
        unsafe { self.ext(&[MmuextOp::pin(level, ma)]) }
    }

    /// Unpins the table at `ma`.
    pub fn unpin(&mut self, ma: u64) -> Result<(), MmError> {
        // SAFETY: Ferrite refuses to unpin a table still linked or used as a base, so the
        // unpin cannot change a live translation.
        unsafe { self.ext(&[MmuextOp::unpin(ma)]) }
    }

    /// Loads TTBR0 with the pinned level-0 table at `ma` (0: none) and `asid`.
    ///
    /// # Safety
    /// Nothing Rust uses may live in the lower half unless the new table maps it the same way.
    pub unsafe fn new_ttbr0(&mut self, ma: u64, asid: u64) -> Result<(), MmError> {
        // SAFETY: the caller's contract.
        unsafe { self.ext(&[MmuextOp::new(ext::NEW_TTBR0, ma, asid)]) }
    }

    /// Loads TTBR1 with the pinned level-0 table at `ma`.
    ///
    /// # Safety
    /// The new table must map everything Rust uses in the upper half (code, stack, data).
    pub unsafe fn new_ttbr1(&mut self, ma: u64) -> Result<(), MmError> {
        // SAFETY: the caller's contract.
        unsafe { self.ext(&[MmuextOp::new(ext::NEW_TTBR1, ma, 0)]) }
    }
}
