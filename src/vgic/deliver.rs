//! Delivery through list registers: choosing what a vCPU's LRs hold before it runs
//! ([`Vgic::fill_lrs`]) and folding what the guest did with them back afterwards
//! ([`Vgic::sync_lrs`]).
//!
//! Between a sync and the next fill the vGIC's state is the whole truth. During a run an
//! interrupt in an LR is shared: the LR has the state the guest acts on, the vGIC remembers what
//! it gave the LR (`Irq::in_lr`) and records what happens meanwhile (new edges, clears,
//! activations by register writes) so that the sync can merge both without losing or
//! duplicating an interrupt.

use super::irq::{InLr, Irq};
use super::live;
use super::lr::{Lr, LrState};
use super::{Fill, MAX_LRS, NO_SLOT, Version, Vgic};

impl Vgic {
    /// Before `vcpu` runs: fills `lrs` (all of the vCPU's list registers, as they were left by
    /// the last run) with its active interrupts, then its highest-priority deliverable pending
    /// ones. Interrupts that were in an LR keep their slot; unused LRs become invalid.
    ///
    /// Its cost is in the live interrupts (see [`live`]) and the LRs, and it does not allocate.
    pub fn fill_lrs(&mut self, vcpu: usize, lrs: &mut [Lr]) -> Fill {
        if vcpu >= self.cpus.len() {
            lrs.fill(Lr::INVALID);
            return Fill::default();
        }
        if self.cpus[vcpu].unsynced {
            self.sync_lrs(vcpu, lrs);
        }
        let nslots = lrs.len().min(MAX_LRS);
        // Room for the best candidates: small for the usual handful of LRs, so that setting it
        // up costs a few stores.
        let mut small = [0; SMALL];
        let mut large;
        let keys: &mut [u32] = if nslots <= SMALL {
            &mut small[..nslots]
        } else {
            large = [0; MAX_LRS];
            &mut large[..nslots]
        };
        let mut best = Best::new(keys);
        self.candidates(vcpu, &mut best);
        let chosen = best.chosen();

        // Those already in an LR keep it; the others take the free ones in order. `self.mark`
        // says which INTIDs are chosen and not placed yet; it is empty again at the end.
        for &key in chosen {
            let intid = key_intid(key);
            self.mark[intid / 64] |= 1 << (intid % 64);
        }
        let cpu = &mut self.cpus[vcpu];
        let mut occupied = 0u64;
        for k in live::bits64(cpu.occupied) {
            let intid = usize::from(cpu.slots[k]);
            let bit = 1 << (intid % 64);
            if k < nslots && self.mark[intid / 64] & bit != 0 {
                self.mark[intid / 64] &= !bit;
                occupied |= 1 << k;
            } else {
                cpu.slots[k] = NO_SLOT;
            }
        }
        for &key in chosen {
            let intid = key_intid(key);
            let bit = 1 << (intid % 64);
            if self.mark[intid / 64] & bit != 0 {
                self.mark[intid / 64] &= !bit;
                // There is one: no more are chosen than there are LRs.
                let free = (!occupied).trailing_zeros() as usize;
                cpu.slots[free] = intid as u16;
                occupied |= 1 << free;
            }
        }
        cpu.occupied = occupied;
        cpu.unsynced = true;
        let underflow = best.overflow;

        lrs.fill(Lr::INVALID);
        for k in live::bits64(occupied) {
            let intid = self.cpus[vcpu].slots[k];
            lrs[k] = self.place(vcpu, u32::from(intid), k as u8);
        }
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
        for k in live::bits64(cpu.occupied) {
            let intid = u32::from(self.cpus[vcpu].slots[k]);
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
            let deactivate = fold(irq, intid, given, state, v2_sgi);
            let dead = !irq.live();
            if let Some(p) = deactivate {
                self.hw_deactivations.push(p);
            }
            // Done with (the common end of an LR): out of the live sets now, so that the
            // refill of this exit can find the vCPU quiet and skip the list registers.
            if dead {
                self.forget(vcpu, intid);
            }
        }
    }

    /// Offers `best` what `vcpu`'s LRs should hold: its active interrupts and its deliverable
    /// pending ones that no other vCPU's LRs hold. Only live interrupts can be; those found not
    /// to be live any more leave the live sets.
    fn candidates(&mut self, vcpu: usize, best: &mut Best) {
        let v2 = self.version == Version::V2;
        let cpu = &self.cpus[vcpu];
        let mut dead = 0;
        for i in live::bits32(cpu.live) {
            let irq = &cpu.irqs[i as usize];
            if !irq.live() {
                dead |= 1 << i;
                continue;
            }
            let waiting = if v2 && i < 16 {
                irq.sgi_sources != 0
            } else {
                irq.pending_here()
            };
            if irq.active || waiting && self.may_signal(irq) {
                best.offer(i, irq);
            }
        }
        self.cpus[vcpu].live &= !dead;

        let mut next = 0;
        while let Some(i) = self.spi_live.next_from(next) {
            next = i + 1;
            let Some(irq) = self.spis.get(i) else {
                self.spi_live.remove(i);
                continue;
            };
            if !irq.live() {
                self.spi_live.remove(i);
                continue;
            }
            if irq.in_lr.is_some() {
                continue;
            }
            let mine = if irq.active {
                irq.holder == Some(vcpu as u8)
            } else {
                irq.pending_here() && self.may_signal(irq) && self.spi_owner(irq) == Some(vcpu)
            };
            if mine {
                best.offer(i as u32 + 32, irq);
            }
        }
    }

    /// Hands `intid` to LR `slot` of `vcpu`: moves the pending state the LR takes over out of the
    /// vGIC and records what the LR got.
    pub(super) fn place(&mut self, vcpu: usize, intid: u32, slot: u8) -> Lr {
        let v2_sgi = self.version == Version::V2 && intid < 16;
        let mut latched = false;
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
            // EOI. Ask for the EOI instead, to look at the line again then, or to deliver a
            // latch that has to wait behind the active one. A latch that goes into the LR asks
            // for nothing: its activation ends it (an event PPI then costs no maintenance
            // interrupt).
            let pending = may_signal && !irq.active && (irq.line || irq.latch);
            latched = pending && irq.latch;
            if latched {
                irq.latch = false;
            }
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
            latched,
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

/// Merges the state `state` the guest left in an LR that was given `given` into `irq`. Returns
/// the physical INTID to deactivate when an `ICPENDR` write discarded a hardware interrupt the
/// guest never acknowledged (its deactivation through the LR will not come).
fn fold(irq: &mut Irq, intid: u32, given: InLr, state: LrState, v2_sgi: bool) -> Option<u32> {
    let pending = state.pending() && !irq.cancel_pending;
    let discarded = state.pending() && irq.cancel_pending;
    if v2_sgi {
        if pending {
            irq.sgi_sources |= 1 << given.source;
        }
    } else if irq.level_tracked() {
        // Activation consumed the latch the LR took; not activated, it is given back. A latch
        // set while the LR held the interrupt is a new one and stays. The line's pending state
        // is the line's.
        if pending && given.latched {
            irq.latch = true;
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
    irq.hw.filter(|_| discarded && !irq.active && intid >= 32)
}

/// LRs a fill makes room for without setting up [`MAX_LRS`] entries (GICv3 has at most 16).
const SMALL: usize = 16;

/// The INTID in a [`Best`] key.
const fn key_intid(key: u32) -> usize {
    (key & 0xffff) as usize
}

/// The best candidates for a fill, in the order they get LRs: active ones first (the guest must
/// be able to deactivate them), then by priority, then by INTID as the GIC breaks ties. As many
/// as there is room for, kept sorted as they are offered.
pub(super) struct Best<'a> {
    /// `(!active, priority, intid)` packed so that the best is the smallest.
    keys: &'a mut [u32],
    len: usize,
    /// More were offered than fit.
    pub overflow: bool,
}

impl<'a> Best<'a> {
    /// Room for `keys.len()` candidates.
    pub fn new(keys: &'a mut [u32]) -> Self {
        Self {
            keys,
            len: 0,
            overflow: false,
        }
    }

    pub fn offer(&mut self, intid: u32, irq: &Irq) {
        let key = u32::from(!irq.active) << 31 | u32::from(irq.priority) << 16 | (intid & 0xffff);
        if self.len == self.keys.len() {
            self.overflow = true;
            if self.len == 0 || key >= self.keys[self.len - 1] {
                return;
            }
            self.len -= 1;
        }
        let mut k = self.len;
        while k > 0 && self.keys[k - 1] > key {
            self.keys[k] = self.keys[k - 1];
            k -= 1;
        }
        self.keys[k] = key;
        self.len += 1;
    }

    /// The chosen keys, best first ([`key_intid`] gives their INTIDs).
    pub fn chosen(&self) -> &[u32] {
        &self.keys[..self.len]
    }
}
