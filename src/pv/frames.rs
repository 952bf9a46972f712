//! The frame table: one packed state word per machine frame a domain owns (its type, type
//! count, reference count, pin; `state.rs`), kept in a flat array over the domain's memory
//! (`framemap.rs`), the vCPUs' translation bases, and the operations on frames that are not
//! descriptor writes: ballooning frames in and out, and Ferrite's own writable holds.

use super::desc::{Level, PAGE_SIZE};
use super::framemap::FrameMap;
use super::state::{Lost, State};
use super::{Errno, Grants, GuestMemory, NoGrants};
use crate::domain::DomId;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// What a frame is currently used as. A frame is never a table and writable at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    None,
    /// Mapped writable by `type_count` leaf entries and holds.
    Writable,
    /// A validated table of this level, referred to `type_count` times (parent entries, pin,
    /// bases).
    PageTable(Level),
}

/// What the domain declared about its memory attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Bit i set: MAIR attribute index i is normal memory the domain may map its RAM with
    /// (`ferrite_abi::desc::NORMAL_ATTR_MASK` for Ferrite's fixed MAIR_EL1).
    pub normal_attr_mask: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            normal_attr_mask: ferrite_abi::desc::NORMAL_ATTR_MASK,
        }
    }
}

/// A frame's counts, as callers and tests see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub ty: FrameType,
    pub type_count: u32,
    /// Every valid entry covering or pointing at the frame, plus pin, bases and holds.
    pub refs: u32,
    pub pinned: bool,
    /// Ferrite's own writable references ([`FrameTable::acquire_writable`]).
    pub holds: u32,
}

/// Which translation table base register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttbr {
    /// TTBR0_EL1: the lower VA half; its ASID is the current ASID (TCR_EL1.A1 = 0).
    Ttbr0 = 0,
    /// TTBR1_EL1: the upper VA half.
    Ttbr1 = 1,
}

/// A vCPU's translation base: a pinned level-0 table and, for TTBR0, the ASID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Base {
    pub table: u64,
    pub asid: u16,
}

impl Base {
    /// The TTBRn_EL1 value: BADDR with the ASID in bits 63:48.
    pub const fn ttbr(&self) -> u64 {
        self.table | (self.asid as u64) << 48
    }
}

/// One domain's frames and the page-table state built on them.
#[derive(Debug)]
pub struct FrameTable<G: Grants = NoGrants> {
    pub(super) dom: DomId,
    /// By frame number (machine address >> 12).
    pub(super) frames: FrameMap,
    /// Ferrite's own writable references by frame number (rare: the shared-info page, a
    /// frame being written for a hypercall); each also counts as a reference and a use.
    pub(super) holds: BTreeMap<u64, u32>,
    pub(super) bases: Vec<[Option<Base>; 2]>,
    pub(super) policy: Policy,
    pub(super) grants: G,
    /// Incremented by every TLB flush; see [`Lost`].
    pub(super) epoch: u64,
    /// A reference was dropped since the last flush: some TLB may still reach a frame that
    /// no entry maps any more. One flag for the domain, not one per frame, so the hot path
    /// only sets it; the price is a flush before the first frame given back after unmapping.
    pub(super) dropped: bool,
    /// Tests: every update takes the general path, to compare the fast one with it.
    #[cfg(test)]
    pub(super) slow_only: bool,
}

impl FrameTable<NoGrants> {
    /// The table for domain `dom` owning the frames at `frames` (machine addresses, e.g. its
    /// frame list) with `vcpus` vCPUs. Misaligned frames are `Inval`, repeated ones `Exist`;
    /// `NoMem` when Ferrite's heap cannot hold the records (about 16 bytes a frame).
    pub fn new(dom: DomId, frames: &[u64], vcpus: usize, policy: Policy) -> Result<Self, Errno> {
        Self::with_grants(dom, frames, vcpus, policy, NoGrants)
    }
}

impl<G: Grants> FrameTable<G> {
    pub fn with_grants(
        dom: DomId,
        frames: &[u64],
        vcpus: usize,
        policy: Policy,
        grants: G,
    ) -> Result<Self, Errno> {
        Ok(Self {
            dom,
            frames: Self::map(frames)?,
            holds: BTreeMap::new(),
            bases: alloc::vec![[None; 2]; vcpus],
            policy,
            grants,
            epoch: 1,
            dropped: false,
            #[cfg(test)]
            slow_only: false,
        })
    }

    fn map(frames: &[u64]) -> Result<FrameMap, Errno> {
        // A built domain's frames are one run: nothing to copy, sort or look for repeats in.
        if let Some(&first) = frames.first()
            && first.is_multiple_of(PAGE_SIZE)
            && frames
                .iter()
                .zip(0..)
                .all(|(&pa, i)| pa == first + i * PAGE_SIZE)
        {
            return FrameMap::run(first >> 12, frames.len());
        }
        // Fallible, like the map's own records: a large domain's records must not stop
        // Ferrite when its heap cannot grow.
        let mut numbers = Vec::new();
        numbers
            .try_reserve_exact(frames.len())
            .map_err(|_| Errno::NoMem)?;
        for &pa in frames {
            if !pa.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::Inval);
            }
            numbers.push(pa >> 12);
        }
        numbers.sort_unstable();
        if numbers.windows(2).any(|w| w[0] == w[1]) {
            return Err(Errno::Exist);
        }
        FrameMap::new(&numbers)
    }

    pub fn dom(&self) -> DomId {
        self.dom
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether the domain owns the frame holding `pa`: the only RAM it may map.
    #[inline]
    pub fn owns(&self, pa: u64) -> bool {
        self.frames.state(pa >> 12).owned()
    }

    pub fn info(&self, pa: u64) -> Option<FrameInfo> {
        let s = self.frames.state(pa >> 12);
        s.owned().then(|| FrameInfo {
            ty: s.ty(),
            type_count: s.type_count(),
            refs: s.refs(),
            pinned: s.pinned(),
            holds: self.holds.get(&(pa >> 12)).copied().unwrap_or(0),
        })
    }

    pub fn nr_frames(&self) -> usize {
        self.frames.len()
    }

    /// The machine addresses of the domain's frames: its main allocation ascending, then
    /// any others ascending.
    pub fn frames(&self) -> impl Iterator<Item = u64> + '_ {
        self.frames.iter().map(|(n, _)| n << 12)
    }

    pub fn nr_vcpus(&self) -> usize {
        self.bases.len()
    }

    /// The base vCPU `vcpu` has in `ttbr`; None means the arch code points that TTBR at an
    /// empty table (or sets TCR_EL1.EPDn) so every access through it faults.
    pub fn base(&self, vcpu: usize, ttbr: Ttbr) -> Option<Base> {
        self.bases.get(vcpu).and_then(|b| b[ttbr as usize])
    }

    pub fn grants(&self) -> &G {
        &self.grants
    }

    pub fn grants_mut(&mut self) -> &mut G {
        &mut self.grants
    }

    /// Ballooning in: the domain now owns the frame at `pa` (zeroed by the caller).
    pub fn add_frame(&mut self, pa: u64) -> Result<(), Errno> {
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::Inval);
        }
        if self.frames.insert(pa >> 12) {
            Ok(())
        } else {
            Err(Errno::Exist)
        }
    }

    /// Ballooning out: the domain gives the frame at `pa` back. Only an unused frame may go:
    /// no type, no reference (`Busy` otherwise; `Perm` if not the domain's). TLBs that may
    /// still reach it are flushed first, so the caller may scrub and reuse it at once.
    pub fn release_frame(&mut self, pa: u64, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        let s = self.frames.state(pa >> 12);
        if !s.owned() {
            return Err(Errno::Perm);
        }
        if s != State::FREE {
            return Err(Errno::Busy);
        }
        if self.dropped || self.frames.lost(pa >> 12).since(self.epoch) {
            self.flush(mem);
        }
        self.frames.remove(pa >> 12);
        Ok(())
    }

    /// Takes a writable reference on an owned frame for Ferrite itself: the shared-info page
    /// for the domain's lifetime, or a frame Ferrite is about to write guest data into
    /// (hypercall results). While held, the frame cannot become a table. `Busy` if it is one.
    pub fn acquire_writable(&mut self, pa: u64, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        if !self.owns(pa) {
            return Err(Errno::Perm);
        }
        self.get_ref(pa)?;
        if let Err(e) = self.get_type(pa, FrameType::Writable, mem) {
            self.put_ref(pa);
            return Err(e);
        }
        *self.holds.entry(pa >> 12).or_default() += 1;
        Ok(())
    }

    /// Drops a reference [`FrameTable::acquire_writable`] took; `Inval` if there is none.
    pub fn release_writable(&mut self, pa: u64, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        if !self.owns(pa) {
            return Err(Errno::Perm);
        }
        let n = pa >> 12;
        match self.holds.get_mut(&n) {
            None => return Err(Errno::Inval),
            Some(1) => {
                self.holds.remove(&n);
            }
            Some(h) => *h -= 1,
        }
        self.put_type(pa, mem);
        self.put_ref(pa);
        Ok(())
    }

    /// `VCPU_OP` UP: the started vCPU gets the caller's bases (and takes references on them).
    pub fn copy_bases(&mut self, from: usize, to: usize, mem: &mut impl GuestMemory) {
        let (Some(&src), true) = (self.bases.get(from), to < self.bases.len()) else {
            return;
        };
        for ttbr in [Ttbr::Ttbr0, Ttbr::Ttbr1] {
            // Taking before dropping keeps a table shared by both vCPUs alive. A table whose
            // counts are at their limit cannot be shared: that half starts with no base.
            let b = src[ttbr as usize].filter(|b| self.take_base(b.table).is_ok());
            self.set_base(to, ttbr, b, mem);
        }
    }

    /// `VCPU_OP` DOWN (or domain destruction): the vCPU's bases are released.
    pub fn clear_bases(&mut self, vcpu: usize, mem: &mut impl GuestMemory) {
        if vcpu < self.bases.len() {
            self.set_base(vcpu, Ttbr::Ttbr0, None, mem);
            self.set_base(vcpu, Ttbr::Ttbr1, None, mem);
        }
    }

    /// Drops every base, pin and hold, which releases every table and every reference.
    /// Afterwards every frame is untyped and unreferenced (foreign grant mappings were
    /// unmapped). The tests use it to check the counts; a destroyed domain's table is dropped
    /// without it (`vm/lifecycle.rs`, `release`), its grant maps ended beforehand.
    #[cfg(test)]
    pub fn teardown(&mut self, mem: &mut impl GuestMemory) {
        for v in 0..self.bases.len() {
            self.clear_bases(v, mem);
        }
        let pinned: Vec<u64> = self
            .frames
            .iter()
            .filter(|(_, s)| s.pinned())
            .map(|(n, _)| n << 12)
            .collect();
        for pa in pinned {
            self.set_pinned(pa, false);
            self.put_type(pa, mem);
            self.put_ref(pa);
        }
        let held: Vec<(u64, u32)> = self.holds.iter().map(|(&n, &h)| (n << 12, h)).collect();
        for (pa, n) in held {
            for _ in 0..n {
                let _ = self.release_writable(pa, mem);
            }
        }
        self.flush(mem);
    }

    /// Replaces a vCPU's base, dropping the old one's references. The new base's references
    /// must already be taken.
    pub(super) fn set_base(
        &mut self,
        vcpu: usize,
        ttbr: Ttbr,
        new: Option<Base>,
        mem: &mut impl GuestMemory,
    ) {
        let old = core::mem::replace(&mut self.bases[vcpu][ttbr as usize], new);
        if let Some(b) = old {
            self.put_type(b.table, mem);
            self.put_ref(b.table);
        }
    }

    /// A base reference on a table known to be a pinned level-0 table: cannot fail.
    /// Refused (`Busy`) only when a count is at its limit.
    pub(super) fn take_base(&mut self, table: u64) -> Result<(), Errno> {
        let s = self.state_mut(table);
        *s = s.with_ref().and_then(State::with_use).ok_or(Errno::Busy)?;
        Ok(())
    }

    /// The state of a frame the caller checked to be the domain's.
    #[inline]
    pub(super) fn state_mut(&mut self, pa: u64) -> &mut State {
        self.frames
            .state_mut(pa >> 12)
            .expect("the frame was checked to be the domain's")
    }

    pub(super) fn set_pinned(&mut self, pa: u64, pinned: bool) {
        let s = self.state_mut(pa);
        *s = s.with_pin(pinned);
    }

    pub(super) fn set_lost(&mut self, pa: u64, ty: FrameType) {
        let epoch = self.epoch;
        if let Some(l) = self.frames.lost_mut(pa >> 12) {
            *l = Lost::new(ty, epoch);
        }
    }

    pub(super) fn flush(&mut self, mem: &mut impl GuestMemory) {
        mem.flush_tlbs();
        self.epoch += 1;
        self.dropped = false;
    }
}
