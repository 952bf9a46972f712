//! The two PV MMU hypercalls as policy: `MMU_UPDATE` (checked descriptor writes) and
//! `MMUEXT_OP` (pin, unpin, new base, TLB operations), each over a batch the arch code copied
//! in, processed in order, stopping at the first refusal or when the preemption budget is
//! spent. The arch code resumes a preempted batch from the count returned.

use super::desc::{self, PAGE_SIZE};
use super::frames::{Base, FrameTable, FrameType, Ttbr};
use super::{Errno, Grants, GuestMemory, Requests};
use crate::domain::DomId;
use ferrite_abi::mmu::{MMU_NORMAL_PT_UPDATE, MmuUpdate, MmuextOp, ext};

/// A TLB operation the guest asked for; the arch code performs it (on the domain's VMID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbOp {
    /// TLBI VMALLE1 on this CPU.
    FlushLocal,
    /// TLBI VMALLE1IS: every CPU.
    FlushAll,
    /// TLBI VAE1 for `va` in `asid` on this CPU.
    PageLocal { va: u64, asid: u16 },
    /// TLBI VAE1IS for `va` in `asid`: every CPU.
    PageAll { va: u64, asid: u16 },
}

/// What the arch code must do after an operation succeeded, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Tlb(TlbOp),
    /// Load the calling vCPU's TTBR with this base (None: the empty table / EPDn).
    LoadBase(Ttbr, Option<Base>),
}

/// Applies `batch` for domain `dom` in order, at most `budget` entries (at least one).
///
/// Returns how many entries were applied and why it stopped: `Ok` with `done ==
/// batch.len()` when finished, `Ok` with less when the budget ran out (the caller resumes
/// from `done`, after letting the CPU take interrupts or reschedule), or the error of entry
/// `done`, which was not applied. Entries before it stay applied.
pub fn mmu_update<G: Grants>(
    dom: DomId,
    ft: &mut FrameTable<G>,
    mem: &mut impl GuestMemory,
    batch: &(impl Requests<MmuUpdate> + ?Sized),
    budget: usize,
) -> (usize, Result<(), Errno>) {
    if dom != ft.dom {
        return (0, Err(Errno::Perm));
    }
    let n = batch.len().min(budget.max(1));
    let mut i = 0;
    while i < n {
        let (at, stopped) = ft.fast_run(batch, i, n, mem);
        i = at;
        let Some(u) = stopped else {
            break;
        };
        if let Err(e) = ft.update_one(u, mem) {
            return (i, Err(e));
        }
        i += 1;
    }
    (n, Ok(()))
}

/// Applies `ops` for `vcpu` of domain `dom`, like [`mmu_update`]; `effect` receives what the
/// arch code must then do, in order.
pub fn mmuext_op<G: Grants>(
    dom: DomId,
    ft: &mut FrameTable<G>,
    mem: &mut impl GuestMemory,
    vcpu: usize,
    ops: &(impl Requests<MmuextOp> + ?Sized),
    budget: usize,
    effect: &mut impl FnMut(Effect),
) -> (usize, Result<(), Errno>) {
    if dom != ft.dom {
        return (0, Err(Errno::Perm));
    }
    if vcpu >= ft.nr_vcpus() {
        return (0, Err(Errno::Inval));
    }
    let n = ops.len().min(budget.max(1));
    for i in 0..n {
        match ft.ext_one(vcpu, &ops.at(i), mem) {
            Ok(Some(e)) => effect(e),
            Ok(None) => {}
            Err(e) => return (i, Err(e)),
        }
    }
    (n, Ok(()))
}

impl<G: Grants> FrameTable<G> {
    /// One checked descriptor write by the general path (the fast path in `fast.rs` declined
    /// it): the target must be an entry of one of the domain's tables, the new value valid at
    /// that table's level. The new value's references are taken before the old one's are
    /// dropped, so rewriting an entry with what it already holds never releases a subtree.
    #[inline(never)]
    fn update_one(&mut self, u: MmuUpdate, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        if u.command() != MMU_NORMAL_PT_UPDATE {
            return Err(Errno::NoSys);
        }
        let pte = u.pte();
        if pte & 0b100 != 0 {
            return Err(Errno::Inval);
        }
        let table = pte & !(PAGE_SIZE - 1);
        let index = ((pte & (PAGE_SIZE - 1)) / 8) as usize;
        let s = self.frames.state(table >> 12);
        if !s.owned() {
            return Err(Errno::Perm);
        }
        let FrameType::PageTable(level) = s.ty() else {
            return Err(Errno::Inval);
        };
        let mask = self.policy.normal_attr_mask;
        let new = desc::decode(u.val, level, index, mask)?;
        if mem.read_u64(pte).is_none() {
            return Err(Errno::Fault);
        }
        self.take(new, level, mem)?;
        // The old entry is read after `take`: taking cannot change this table (it is typed
        // as a table, so nothing below can retype or rewrite it).
        let old = mem.read_u64(pte);
        if !mem.write_u64(pte, u.val) {
            self.drop(new, mem);
            return Err(Errno::Fault);
        }
        match old.map(|raw| desc::decode(raw, level, index, mask)) {
            Some(Ok(d)) => self.drop(d, mem),
            _ => debug_assert!(false, "validated entry {pte:#x} unreadable or refused"),
        }
        Ok(())
    }

    fn ext_one(
        &mut self,
        vcpu: usize,
        op: &MmuextOp,
        mem: &mut impl GuestMemory,
    ) -> Result<Option<Effect>, Errno> {
        if op.pad != 0 {
            return Err(Errno::Inval);
        }
        let (a1, a2) = (op.arg1, op.arg2);
        let no_args = |e: TlbOp| {
            if a1 == 0 && a2 == 0 {
                Ok(Some(Effect::Tlb(e)))
            } else {
                Err(Errno::Inval)
            }
        };
        let page = |all: bool| {
            let asid = u16::try_from(a2).map_err(|_| Errno::Inval)?;
            if !a1.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::Inval);
            }
            let (va, t) = (a1, asid);
            Ok(Some(Effect::Tlb(if all {
                TlbOp::PageAll { va, asid: t }
            } else {
                TlbOp::PageLocal { va, asid: t }
            })))
        };
        match op.cmd {
            ext::PIN_L0_TABLE..=ext::PIN_L3_TABLE if a2 == 0 => {
                self.pin(a1, op.cmd as u8, mem).map(|()| None)
            }
            ext::UNPIN_TABLE if a2 == 0 => self.unpin(a1, mem).map(|()| None),
            ext::NEW_TTBR0 => {
                let asid = u16::try_from(a2).map_err(|_| Errno::Inval)?;
                self.new_base(vcpu, Ttbr::Ttbr0, a1, asid, mem).map(Some)
            }
            ext::NEW_TTBR1 if a2 == 0 => self.new_base(vcpu, Ttbr::Ttbr1, a1, 0, mem).map(Some),
            ext::TLB_FLUSH_LOCAL => no_args(TlbOp::FlushLocal),
            ext::TLB_FLUSH_ALL => no_args(TlbOp::FlushAll),
            ext::INVLPG_LOCAL => page(false),
            ext::INVLPG_ALL => page(true),
            ext::PIN_L0_TABLE..=ext::NEW_TTBR1 => Err(Errno::Inval),
            _ => Err(Errno::NoSys),
        }
    }

    /// Validates the frame at `pa` as a level-`level` table (with everything below it) and
    /// pins it. `Inval` if already pinned or misaligned, `Perm` if not the domain's, `Busy`
    /// if it is in use as something else, or an entry's refusal.
    pub fn pin(
        &mut self,
        pa: u64,
        level: desc::Level,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Errno> {
        let info = self.owned_table_frame(pa)?;
        if info.pinned {
            return Err(Errno::Inval);
        }
        self.get_ref(pa)?;
        if let Err(e) = self.get_type(pa, FrameType::PageTable(level), mem) {
            self.put_ref(pa);
            return Err(e);
        }
        self.set_pinned(pa, true);
        Ok(())
    }

    /// Unpins the table at `pa`. `Inval` if not pinned; `Busy` while a base or a parent entry
    /// still refers to it (unhook it first), so an unpin never leaves a live table unpinned
    /// by surprise. When the pin was the last reference, the table and everything only it
    /// held are released.
    pub fn unpin(&mut self, pa: u64, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        let info = self.owned_table_frame(pa)?;
        if !info.pinned {
            return Err(Errno::Inval);
        }
        if info.type_count > 1 {
            return Err(Errno::Busy);
        }
        self.set_pinned(pa, false);
        self.put_type(pa, mem);
        self.put_ref(pa);
        Ok(())
    }

    /// Validates the frame at `pa` as a level-`level` table, as a pin would, and holds it
    /// (a reference and a type use) without pinning it. A builder validates a large tree
    /// bottom-up this way, a table at a time, so that no single step validates more than 512
    /// entries; once the root is pinned (each entry then costs a count), it drops the holds
    /// ([`Self::release_table_hold`]) and the tree is as one pin of the root leaves it. Held
    /// tables are the builder's business: the audit does not count holds, and the domain
    /// must not run before they are dropped.
    pub fn hold_table(
        &mut self,
        pa: u64,
        level: desc::Level,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Errno> {
        if level >= desc::LEVELS {
            return Err(Errno::Inval);
        }
        self.owned_table_frame(pa)?;
        self.get_ref(pa)?;
        if let Err(e) = self.get_type(pa, FrameType::PageTable(level), mem) {
            self.put_ref(pa);
            return Err(e);
        }
        Ok(())
    }

    /// Drops a hold [`Self::hold_table`] took. `Inval` if the frame is not a table with a use
    /// to drop; a table with no other use is released (as an unpin would release it).
    pub fn release_table_hold(&mut self, pa: u64, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        let info = self.owned_table_frame(pa)?;
        if !matches!(info.ty, FrameType::PageTable(_)) || info.type_count == 0 || info.refs == 0 {
            return Err(Errno::Inval);
        }
        self.put_type(pa, mem);
        self.put_ref(pa);
        Ok(())
    }

    /// Points a vCPU's TTBR at the pinned level-0 table at `pa` (0: none).
    fn new_base(
        &mut self,
        vcpu: usize,
        ttbr: Ttbr,
        pa: u64,
        asid: u16,
        mem: &mut impl GuestMemory,
    ) -> Result<Effect, Errno> {
        let new = if pa == 0 {
            None
        } else {
            let info = self.owned_table_frame(pa)?;
            if info.ty != FrameType::PageTable(0) || !info.pinned {
                return Err(Errno::Inval);
            }
            self.take_base(pa)?;
            Some(Base { table: pa, asid })
        };
        self.set_base(vcpu, ttbr, new, mem);
        Ok(Effect::LoadBase(ttbr, new))
    }

    fn owned_table_frame(&self, pa: u64) -> Result<super::FrameInfo, Errno> {
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::Inval);
        }
        self.info(pa).ok_or(Errno::Perm)
    }
}
