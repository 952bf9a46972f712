//! The PV MMU: validated direct paging for paravirtualised domUs, as policy.
//!
//! A PV domU runs at EL1 with stage 2 off, so its stage-1 tables hold machine addresses and
//! nothing but these tables stands between it and all of memory. It reads its tables
//! directly; every write to them is an `MMU_UPDATE` or `MMUEXT_OP` hypercall that this module
//! checks, in the manner of Xen's PV MMU: every frame a domain owns has a type (none, writable,
//! or page table of one level) with a type count and a reference count, and the rules keep a
//! page-table page from ever being writable, keep tables to the domain's own RAM, and keep
//! each table at one level. The arch code decodes the hypercall, copies the batch in, and
//! provides [`GuestMemory`]; everything here is host-tested. docs/abi.md states the rules as a
//! guest sees them.

pub mod audit;
pub mod desc;
mod fast;
mod framemap;
pub mod frames;
pub mod ops;
mod refs;
mod state;
#[cfg(test)]
mod tests;

use crate::domain::DomId;
pub use ferrite_abi::Errno;
pub use frames::{Base, FrameInfo, FrameTable, FrameType, Policy, Ttbr};
pub use ops::{Effect, TlbOp, mmu_update, mmuext_op};

/// Physical memory as the validator reads and writes it: the arch code's implementation
/// accesses machine addresses through Ferrite's own map.
pub trait GuestMemory {
    /// The 8-byte word at `pa` (8-aligned), or None if Ferrite cannot read it.
    fn read_u64(&self, pa: u64) -> Option<u64>;
    /// Writes the word at `pa` (8-aligned) as one single-copy-atomic store, visible to the
    /// MMU's table walks of every CPU before this returns (the arch code adds the barrier);
    /// false if Ferrite cannot write it.
    fn write_u64(&mut self, pa: u64, v: u64) -> bool;
    /// Invalidates every stage-1 TLB and walk-cache entry of this domain on every CPU and
    /// waits for completion (TLBI VMALLE1IS under the domain's VMID; DSB ISH).
    ///
    /// The validator calls it before a frame whose old use may still be cached changes use:
    /// a frame that was writable becoming a table, a former table becoming writable, a frame
    /// leaving the domain. It is required, not defaulted, because forgetting it would let a
    /// stale writable TLB entry edit a validated table.
    fn flush_tlbs(&mut self);
}

/// A batch of requests as the validator reads them: entry `i` once, when it processes it.
/// The hypervisor reads `MMU_UPDATE` batches in place from the guest's memory, which the
/// guest may change meanwhile, so nothing may be read twice and assumed equal; a slice (the
/// tests, a copied batch) is the plain case.
pub trait Requests<T> {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Entry `i`, for `i < self.len()`.
    fn at(&self, i: usize) -> T;
}

impl<T: Copy> Requests<T> for [T] {
    #[inline]
    fn len(&self) -> usize {
        <[T]>::len(self)
    }

    #[inline]
    fn at(&self, i: usize) -> T {
        self[i]
    }
}

impl<T: Copy, const N: usize> Requests<T> for [T; N] {
    #[inline]
    fn len(&self) -> usize {
        N
    }

    #[inline]
    fn at(&self, i: usize) -> T {
        self[i]
    }
}

impl<T: Copy> Requests<T> for alloc::vec::Vec<T> {
    #[inline]
    fn len(&self) -> usize {
        <[T]>::len(self)
    }

    #[inline]
    fn at(&self, i: usize) -> T {
        self[i]
    }
}

/// What the grant tables (a later step) say about frames a domain does not own. A leaf
/// descriptor for a single 4 KiB frame outside the domain's frame list is accepted only if
/// `map` says so; the grant layer then holds the frame (and its writability) until the
/// matching `unmap`. Foreign frames can never become tables, blocks or contiguous spans.
pub trait Grants {
    /// May `dom` map the frame at `pa`, writable or not? True takes a reference the grant
    /// layer keeps until `unmap`.
    fn map(&mut self, dom: DomId, pa: u64, writable: bool) -> bool;
    /// The mapping `map` allowed is gone.
    fn unmap(&mut self, dom: DomId, pa: u64, writable: bool);
}

/// No grants: every foreign frame is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoGrants;

impl Grants for NoGrants {
    fn map(&mut self, _dom: DomId, _pa: u64, _writable: bool) -> bool {
        false
    }

    fn unmap(&mut self, _dom: DomId, _pa: u64, _writable: bool) {
        debug_assert!(false, "NoGrants never allowed a mapping");
    }
}
