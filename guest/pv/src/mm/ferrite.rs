//! The real [`Machine`]: Ferrite's hypercalls, memory through the initial linear map, and the
//! guest's own TLB instructions (which docs/abi.md allows a PV guest today).

use super::{FrameAlloc, FrameMap, Machine, Mm};
use crate::cpu;
use crate::hypercall::{self, BatchResult, DOMID_SELF};
use ferrite_abi::StartInfo;
use ferrite_abi::mmu::{MmuUpdate, MmuextOp};

/// The calling domain on Ferrite.
pub struct Ferrite {
    frames: FrameMap<'static>,
}

impl Ferrite {
    pub const fn new(frames: FrameMap<'static>) -> Self {
        Self { frames }
    }
}

impl Machine for Ferrite {
    unsafe fn mmu_update(&mut self, reqs: &[MmuUpdate]) -> BatchResult {
        // SAFETY: the caller's contract.
        unsafe { hypercall::mmu_update(reqs, DOMID_SELF) }
    }

    unsafe fn mmuext_op(&mut self, ops: &[MmuextOp]) -> BatchResult {
        // SAFETY: the caller's contract.
        unsafe { hypercall::mmuext_op(ops, DOMID_SELF) }
    }

    fn read_u64(&self, ma: u64) -> Option<u64> {
        let va = self.frames.ma_to_va(ma & !7)?;
        // SAFETY: every frame of the domain is mapped (at least read-only) in the initial map;
        // tables change under us only through Ferrite, with single 64-bit stores.
        Some(unsafe { core::ptr::read_volatile(va as *const u64) })
    }

    unsafe fn write_u64(&mut self, ma: u64, val: u64) -> bool {
        let Some(va) = self.frames.ma_to_va(ma & !7) else {
            return false;
        };
        // SAFETY: the frame is the domain's and, by the caller's contract, holds nothing Rust
        // uses; a read-only mapping would fault, which the caller avoids by only writing
        // frames it has not sealed.
        unsafe { core::ptr::write_volatile(va as *mut u64, val) };
        true
    }

    fn invalidate_va(&mut self, va: u64) {
        cpu::tlbi_va(va);
    }

    fn invalidate_all(&mut self) {
        cpu::tlbi_all();
    }

    fn tlb_sync(&mut self) {
        cpu::tlb_sync();
    }
}

impl Mm<Ferrite> {
    /// Sets the manager up from the start of day: the frame list, free frames from
    /// `first_free_pfn` (never the shared-info page), the initial root.
    pub fn init_from_start_info(&mut self, si: &StartInfo) {
        let frames = crate::rt::frame_map();
        let mut alloc = FrameAlloc::new(si.first_free_pfn, si.nr_pages);
        if let Some(pfn) = frames.pfn_of_ma(si.shared_info_ma) {
            alloc.reserve(pfn);
        }
        // The shared-info page, if Ferrite told its VA, is one of our pfns too.
        if let Some(pfn) = frames.pfn_of_va(si.shared_info) {
            alloc.reserve(pfn);
        }
        self.init(Ferrite::new(frames), frames, alloc, si.pt_base_ma);
    }
}
