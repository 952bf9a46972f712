//! The common case of `MMU_UPDATE` without the general machinery: a run of level-3 entries,
//! each going from nothing or a plain 4 KiB page of the domain's own to nothing or another
//! such page, where no frame changes type. It works on the frame table's flat span directly
//! (one indexed load per frame, its state packed in one word), decodes each descriptor with
//! one mask-and-compare, and remembers the table it last checked, so a batch rewriting one
//! table costs a few dozen instructions an entry.
//!
//! It decides everything about an entry before the entry is written, and stops at the first
//! entry it does not handle (a first writable mapping of a frame, the last one going, a
//! frame outside the span or granted, another table level, any descriptor it does not
//! recognise, including every malformed one), handing it, as read, to the general path in
//! `ops.rs`, which gives the same answer it always did. The host tests, including the
//! randomised model that audits every count after every operation and a comparison with the
//! general path alone, cover both.

use super::desc::LEAF_RES0;
use super::frames::FrameTable;
use super::state::{
    CODE_WRITABLE, COUNT_MAX, COUNT_ONE, COUNT_SHIFT, L3_TABLE, OWNED, State, TYPE_SHIFT,
};
use super::{Grants, GuestMemory, Requests};
use core::cell::Cell;
use ferrite_abi::desc as d;
use ferrite_abi::mmu::MmuUpdate;

/// The bits that decide whether a valid descriptor is a page the fast path takes: valid and
/// page, none of the refused bits, no contiguous hint, the attribute index, and the upper
/// shareability bit (inner or outer shareable).
const SHAPE: u64 = d::VALID | d::TABLE | LEAF_RES0 | d::CONTIGUOUS | d::ATTR_INDX_MASK | 1 << 9;

/// What a leaf's hold on a frame adds to its state word: a reference, and a use if writable.
#[inline(always)]
const fn hold(raw: u64) -> u64 {
    if raw & d::AP_RO == 0 {
        COUNT_ONE + 1
    } else {
        1
    }
}

/// One fast run's view of the frame table.
struct Run<'a> {
    /// The span's first frame number and states, as cells: the new and the old entry may
    /// hold the same frame.
    first: u64,
    states: &'a [Cell<State>],
    /// What [`SHAPE`]'s bits must be.
    shape: u64,
    /// The frame number of the last table checked: a level-3 table of the domain's for as
    /// long as the run lasts, since nothing here changes a frame's type.
    table: u64,
    /// A reference was dropped.
    dropped: bool,
}

/// Puts back a state word changed for an entry that then went to the general path.
#[inline(always)]
fn undo(changed: Option<(&Cell<State>, State)>) {
    if let Some((c, was)) = changed {
        c.set(was);
    }
}

impl Run<'_> {
    /// Applies `u` if the fast path handles it; false, with nothing changed, if not.
    #[inline(always)]
    fn apply(&mut self, u: MmuUpdate, mem: &mut impl GuestMemory) -> bool {
        let MmuUpdate { ptr, val: new } = u;
        // Command 0 (`MMU_NORMAL_PT_UPDATE`) and an 8-aligned entry.
        if ptr & 0b111 != 0 {
            return false;
        }
        if ptr >> 12 != self.table {
            match self
                .states
                .get((ptr >> 12).wrapping_sub(self.first) as usize)
            {
                Some(s) if s.get().0 >= L3_TABLE => self.table = ptr >> 12,
                _ => return false,
            }
        }
        let Some(old) = mem.read_u64(ptr) else {
            return false;
        };
        // The new entry: nothing, or a page of the span the rules let it map. Its hold is
        // counted at once; `taken` keeps the word before, to undo it should the old entry
        // send this one to the general path after all.
        let mut taken = None;
        if new & d::VALID != 0 {
            if new & SHAPE != self.shape {
                return false;
            }
            let k = ((new & d::OA_MASK) >> 12).wrapping_sub(self.first) as usize;
            let Some(c) = self.states.get(k) else {
                return false;
            };
            let s = c.get().0;
            if s < OWNED || (s as u32).wrapping_add(1) == 0 {
                return false;
            }
            // Writable: already writable (a first writable use may need a TLB flush, which
            // the general path decides), and below the use limit.
            if new & d::AP_RO == 0
                && (s >> TYPE_SHIFT != CODE_WRITABLE || (s >> COUNT_SHIFT) & COUNT_MAX == COUNT_MAX)
            {
                return false;
            }
            c.set(State(s + hold(new)));
            taken = Some((c, State(s)));
        }
        // The old entry, validated when it was written: nothing, or a page (this is level
        // 3). Its frame may be the new entry's, whose hold is already counted.
        let mut dropped = None;
        if old & d::VALID != 0 {
            let k = ((old & d::OA_MASK) >> 12).wrapping_sub(self.first) as usize;
            // Outside the span, not owned (a granted frame, the grant layer's), or a
            // contiguous span: the general path's.
            let c = match self.states.get(k) {
                Some(c) if old & d::CONTIGUOUS == 0 && c.get().0 >= OWNED => c,
                _ => {
                    undo(taken);
                    return false;
                }
            };
            let s = c.get().0;
            let h = if old & d::AP_RO != 0 {
                1
            } else {
                // The last writable use going retypes the frame: the general path's job.
                if (s >> COUNT_SHIFT) & COUNT_MAX < 2 {
                    undo(taken);
                    return false;
                }
                COUNT_ONE + 1
            };
            c.set(State(s - h));
            dropped = Some((c, State(s)));
        }
        if !mem.write_u64(ptr, new) {
            undo(dropped);
            undo(taken);
            return false;
        }
        self.dropped |= dropped.is_some();
        true
    }
}

impl<G: Grants> FrameTable<G> {
    /// Applies entries `from..to` of `batch` for as long as the fast path handles them.
    /// Returns the index it stopped at (`to` if it did them all) and, if it stopped early,
    /// that entry as it read it, untouched, for the general path: each entry is read once.
    #[inline]
    pub(super) fn fast_run(
        &mut self,
        batch: &(impl Requests<MmuUpdate> + ?Sized),
        from: usize,
        to: usize,
        mem: &mut impl GuestMemory,
    ) -> (usize, Option<MmuUpdate>) {
        let to = to.min(batch.len());
        let mask = self.policy.normal_attr_mask;
        #[cfg(test)]
        let mask = if self.slow_only { 0 } else { mask };
        if mask == 0 {
            return (from, (from < to).then(|| batch.at(from)));
        }
        // The one attribute index the fast path takes: the lowest the domain may use (in
        // practice its only normal one). Descriptors with another go the general way.
        let attr = u64::from(mask.trailing_zeros()) << d::ATTR_INDX_SHIFT;
        let (first, states) = self.frames.span_mut();
        let mut run = Run {
            first,
            states: Cell::from_mut(states).as_slice_of_cells(),
            shape: d::VALID | d::TABLE | attr | 1 << 9,
            table: u64::MAX,
            dropped: false,
        };
        let mut stopped = None;
        let mut i = from;
        while i < to {
            // Read once: the guest may be changing its copy meanwhile.
            let u = batch.at(i);
            if !run.apply(u, mem) {
                stopped = Some(u);
                break;
            }
            i += 1;
        }
        self.dropped |= run.dropped;
        (i, stopped)
    }
}
