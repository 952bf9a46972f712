//! The frame table: one record per machine frame a domain owns (its type, type count,
//! reference count, pin), the vCPUs' translation bases, and the operations on frames that are
//! not descriptor writes: ballooning frames in and out, and Ferrite's own writable holds.

use super::desc::{Level, PAGE_SIZE};
use super::framemap::FrameMap;
use super::{Errno, Grants, GuestMemory, NoGrants};
use crate::domain::DomId;
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

#[derive(Clone, Copy, Debug)]
pub(super) struct Frame {
    pub(super) info: FrameInfo,
    /// The type the frame last lost and the flush epoch when it did: until the next TLB
    /// flush, TLBs may still hold it as that type.
    pub(super) lost: FrameType,
    pub(super) lost_epoch: u64,
    /// The flush epoch when a reference was last dropped: until the next flush some TLB may
    /// still reach the frame.
    pub(super) unref_epoch: u64,
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
    pub(super) frames: FrameMap<Frame>,
    pub(super) bases: Vec<[Option<Base>; 2]>,
    pub(super) policy: Policy,
    pub(super) grants: G,
    /// Incremented by every TLB flush; see `Frame::lost_epoch`.
    pub(super) epoch: u64,
}

impl FrameTable<NoGrants> {
    /// The table for domain `dom` owning the frames at `frames` (machine addresses, e.g. its
    /// frame list) with `vcpus` vCPUs. Misaligned or repeated frames are `Inval`.
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
        let mut t = Self {
            dom,
            frames: FrameMap::default(),
            bases: alloc::vec![[None; 2]; vcpus],
            policy,
            grants,
            epoch: 1,
        };
        for &pa in frames {
            t.add_frame(pa)?;
        }
        Ok(t)
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
        self.frames.contains(pa >> 12)
    }

    #[inline]
    pub fn info(&self, pa: u64) -> Option<FrameInfo> {
        self.frames.get(pa >> 12).map(|f| f.info)
    }

    pub fn nr_frames(&self) -> usize {
        self.frames.len()
    }

    /// The machine addresses of the domain's frames, ascending.
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

        let info = FrameInfo {
            ty: FrameType::None,
            type_count: 0,
            refs: 0,
            pinned: false,
            holds: 0,
        };
        let frame = Frame {
            info,
            lost: FrameType::None,
            lost_epoch: 0,
            unref_epoch: 0,
        };
        if self.frames.insert(pa >> 12, frame) {
            Ok(())
        } else {
            Err(Errno::Exist)
        }
    }

    /// Ballooning out: the domain gives the frame at `pa` back. Only an unused frame may go:
    /// no type, no reference (`Busy` otherwise; `Perm` if not the domain's). TLBs that may
    /// still reach it are flushed first, so the caller may scrub and reuse it at once.
    pub fn release_frame(&mut self, pa: u64, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        let f = self.frames.get(pa >> 12).ok_or(Errno::Perm)?;
        let i = f.info;
        if i.ty != FrameType::None || i.type_count != 0 || i.refs != 0 || i.pinned {
            return Err(Errno::Busy);
        }
        if f.unref_epoch == self.epoch || f.lost_epoch == self.epoch {
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
        self.frame_mut(pa).info.holds += 1;
        Ok(())
    }

    /// Drops a reference [`FrameTable::acquire_writable`] took; `Inval` if there is none.
    pub fn release_writable(&mut self, pa: u64, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        let f = self.frames.get_mut(pa >> 12).ok_or(Errno::Perm)?;
        if f.info.holds == 0 {
            return Err(Errno::Inval);
        }
        f.info.holds -= 1;
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
            // Taking before dropping keeps a table shared by both vCPUs alive.
            if let Some(b) = src[ttbr as usize] {
                self.take_base(b.table);
            }
            self.set_base(to, ttbr, src[ttbr as usize], mem);
        }
    }

    /// `VCPU_OP` DOWN (or domain destruction): the vCPU's bases are released.
    pub fn clear_bases(&mut self, vcpu: usize, mem: &mut impl GuestMemory) {
        if vcpu < self.bases.len() {
            self.set_base(vcpu, Ttbr::Ttbr0, None, mem);
            self.set_base(vcpu, Ttbr::Ttbr1, None, mem);
        }
    }

    /// Domain destruction: drops every base, pin and hold, which releases every table and
    /// every reference. Afterwards every frame is untyped and unreferenced (foreign grant
    /// mappings were unmapped), so the caller may scrub and free them all.
    pub fn teardown(&mut self, mem: &mut impl GuestMemory) {
        for v in 0..self.bases.len() {
            self.clear_bases(v, mem);
        }
        let pinned: Vec<u64> = self
            .frames
            .iter()
            .filter(|(_, f)| f.info.pinned)
            .map(|(n, _)| n << 12)
            .collect();
        for pa in pinned {
            self.frame_mut(pa).info.pinned = false;
            self.put_type(pa, mem);
            self.put_ref(pa);
        }
        let held: Vec<(u64, u32)> = self
            .frames
            .iter()
            .filter(|(_, f)| f.info.holds > 0)
            .map(|(n, f)| (n << 12, f.info.holds))
            .collect();
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
    pub(super) fn take_base(&mut self, table: u64) {
        let f = self.frame_mut(table);
        f.info.refs += 1;
        f.info.type_count += 1;
    }

    #[inline]
    pub(super) fn frame_mut(&mut self, pa: u64) -> &mut Frame {
        self.frames
            .get_mut(pa >> 12)
            .expect("the frame was checked to be the domain's")
    }

    pub(super) fn flush(&mut self, mem: &mut impl GuestMemory) {
        mem.flush_tlbs();
        self.epoch += 1;
    }
}
