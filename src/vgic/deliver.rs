//! Delivery through list registers: choosing what a vCPU's LRs hold before it runs
//! ([`Vgic::fill_lrs`]) and folding what the guest did with them back afterwards
//! ([`Vgic::sync_lrs`]).
//!
//! Between a sync and the next fill the vGIC's state is the whole truth. During a run an
//! interrupt in an LR is shared: the LR has the state the guest acts on, the vGIC remembers what
//! it gave the LR (`Irq::in_lr`) and records what happens meanwhile (new edges, clears,
//! activations by register writes) so that the sync can merge both without losing or
//! duplicating an interrupt.

use alloc::vec;
use alloc::vec::Vec;

use super::irq::{InLr, Irq};
use super::lr::{Lr, LrState};
use super::{Fill, Version, Vgic};

/// Most LRs any GIC has (GICv2: 64, GICv3: 16).
const MAX_LRS: usize = 64;

impl Vgic {
    /// Before `vcpu` runs: fills `lrs` (all of the vCPU's list registers, as they were left by
    /// the last run) with its active interrupts, then its highest-priority deliverable pending
    /// ones. Interrupts that were in an LR keep their slot; unused LRs become invalid.
    pub fn fill_lrs(&mut self, vcpu: usize, lrs: &mut [Lr]) -> Fill {
        if vcpu >= self.cpus.len() {
            lrs.fill(Lr::INVALID);
            return Fill::default();
        }
        if self.cpus[vcpu].unsynced {
            self.sync_lrs(vcpu, lrs);
        }
        let nslots = lrs.len().min(MAX_LRS);
        let mut candidates = self.candidates(vcpu);
        // Active ones first (the guest must be able to deactivate them), then by priority, then
        // by INTID as the GIC breaks ties.
        candidates.sort_unstable_by_key(|&(intid, active, priority)| (!active, priority, intid));
        let underflow = candidates.len() > nslots;
        candidates.truncate(nslots);

        let previous = core::mem::take(&mut self.cpus[vcpu].slots);
        let mut slots = vec![None; nslots];
        let mut newcomers = Vec::new();
        for &(intid, _, _) in &candidates {
            match previous.iter().position(|&s| s == Some(intid)) {
                Some(k) if k < nslots => slots[k] = Some(intid),
                _ => newcomers.push(intid),
            }
        }
        let mut free = 0;
        for intid in newcomers {
            while slots[free].is_some() {
                free += 1;
            }
            slots[free] = Some(intid);
        }

        for (k, lr) in lrs.iter_mut().enumerate() {
            *lr = match slots.get(k).copied().flatten() {
                Some(intid) => self.place(vcpu, intid, k as u8),
                None => Lr::INVALID,
            };
        }
        self.cpus[vcpu].slots = slots;
        self.cpus[vcpu].unsynced = true;
        Fill { underflow }
    }

    /// After `vcpu` ran: folds the state the guest left in `lrs` (read back from the hardware)
    /// into the vGIC. An LR that no longer holds the INTID the fill put there is taken as
    /// unchanged.
    pub fn sync_lrs(&mut self, vcpu: usize, lrs: &[Lr]) {
        let Some(cpu) = self.cpus.get_mut(vcpu) else {
            return;
        };
        if !core::mem::take(&mut cpu.unsynced) {
            return;
        }
        let v2 = self.version == Version::V2;
        let slots = core::mem::take(&mut cpu.slots);
        for (k, slot) in slots.iter().enumerate() {
            let Some(intid) = *slot else { continue };
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            let Some(given) = irq.in_lr.filter(|l| usize::from(l.vcpu) == vcpu) else {
                continue;
            };
            let v2_sgi = v2 && intid < 16;
            let state = lrs
                .get(k)
                .filter(|l| l.intid == intid && (!v2_sgi || l.source == given.source))
                .map_or(given.state, |l| l.state);
            fold(irq, intid, given, state, v2_sgi);
        }
        self.cpus[vcpu].slots = slots;
    }

    /// What `vcpu`'s LRs should hold: `(intid, active, priority)` of its active interrupts and
    /// of its deliverable pending ones that no other vCPU's LRs hold.
    fn candidates(&self, vcpu: usize) -> Vec<(u32, bool, u8)> {
        let v2 = self.version == Version::V2;
        let mut out = Vec::new();
        for (i, irq) in self.cpus[vcpu].irqs.iter().enumerate() {
            let waiting = if v2 && i < 16 {
                irq.sgi_sources != 0
            } else {
                irq.pending_here()
            };
            if irq.active || waiting && self.may_signal(irq) {
                out.push((i as u32, irq.active, irq.priority));
            }
        }
        for (i, irq) in self.spis.iter().enumerate() {
            if irq.in_lr.is_some() {
                continue;
            }
            let mine = if irq.active {
                irq.holder == Some(vcpu as u8)
            } else {
                irq.pending_here() && self.may_signal(irq) && self.spi_owner(irq) == Some(vcpu)
            };
            if mine {
                out.push((i as u32 + 32, irq.active, irq.priority));
            }
        }
        out
    }

    /// Hands `intid` to LR `slot` of `vcpu`: moves the pending state the LR takes over out of the
    /// vGIC and records what the LR got.
    fn place(&mut self, vcpu: usize, intid: u32, slot: u8) -> Lr {
        let v2_sgi = self.version == Version::V2 && intid < 16;
        let may_signal = self.irq(vcpu, intid).is_some_and(|q| self.may_signal(q));
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return Lr::INVALID;
        };
        let (pending, source, eoi) = if v2_sgi {
            // One LR per SGI: one source at a time, the others wait for its EOI.
            let source = if irq.active {
                irq.active_source
            } else {
                irq.sgi_sources.trailing_zeros() as u8 & 7
            };
            let pending = may_signal && irq.sgi_sources >> source & 1 != 0;
            if pending {
                irq.sgi_sources &= !(1 << source);
            }
            (pending, source, irq.sgi_sources != 0)
        } else if irq.level_tracked() {
            // No pending-and-active for level interrupts: the line may drop before the guest's
            // EOI. Ask for the EOI instead, to look at the line again then.
            let pending = may_signal && !irq.active && (irq.line || irq.latch);
            (pending, 0, irq.line || irq.latch)
        } else {
            // A hardware interrupt is never pending and active in an LR: the physical GIC holds
            // its next pending state until the guest deactivates it.
            let pending = may_signal && irq.latch && !(irq.active && irq.hw.is_some());
            if pending {
                irq.latch = false;
            }
            (pending, 0, false)
        };
        let state = LrState::from_bits(pending, irq.active);
        irq.in_lr = Some(InLr {
            vcpu: vcpu as u8,
            slot,
            state,
            source,
        });
        if intid >= 32 {
            irq.holder = Some(vcpu as u8);
        }
        Lr {
            intid,
            state,
            priority: irq.priority,
            group1: irq.group1,
            hw: irq.hw,
            source: if v2_sgi { source } else { 0 },
            eoi_maintenance: eoi && irq.hw.is_none(),
        }
    }
}

/// Merges the state `state` the guest left in an LR that was given `given` into `irq`.
fn fold(irq: &mut Irq, intid: u32, given: InLr, state: LrState, v2_sgi: bool) {
    let pending = state.pending() && !irq.cancel_pending;
    if v2_sgi {
        if pending {
            irq.sgi_sources |= 1 << given.source;
        }
    } else if irq.level_tracked() {
        // Activation consumes a software-set pending state; the line's is recomputed.
        if !state.pending() {
            irq.latch = false;
        }
    } else if pending {
        irq.latch = true;
    }
    irq.active = irq.force_active.take().unwrap_or(state.active());
    if v2_sgi && state.active() {
        irq.active_source = given.source;
    }
    irq.cancel_pending = false;
    irq.in_lr = None;
    if intid >= 32 {
        irq.holder = irq.active.then_some(given.vcpu);
    }
}
