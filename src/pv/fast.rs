//! The common case of `MMU_UPDATE` without the general machinery: a level-3 entry going from
//! nothing or a plain 4 KiB page of the domain's own to nothing or another such page, where no
//! frame changes type. It decides everything before it changes anything; whatever it does
//! not handle (a first writable mapping of a frame, the last one going, a granted frame, any
//! descriptor it does not recognise, including every malformed one) it leaves untouched for
//! the general path in `ops.rs`, which gives the same answer it always did. The host tests,
//! including the randomised model that audits every count after every operation, cover both.

use super::desc::LEAF_RES0;
use super::frames::{FrameTable, FrameType};
use super::{Errno, Grants, GuestMemory};
use ferrite_abi::desc as d;

/// A level-3 entry the fast path understands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entry {
    Invalid,
    Page { pa: u64, writable: bool },
}

/// `raw` as a level-3 entry, if it is invalid or a plain page the rules accept (otherwise the
/// general path decides, and refuses what it must).
#[inline]
fn plain(raw: u64, normal_attr_mask: u8) -> Option<Entry> {
    if raw & d::VALID == 0 {
        return Some(Entry::Invalid);
    }
    if raw & d::TABLE == 0 || raw & (LEAF_RES0 | d::CONTIGUOUS) != 0 {
        return None;
    }
    let attr = (raw & d::ATTR_INDX_MASK) >> d::ATTR_INDX_SHIFT;
    if normal_attr_mask & (1 << attr) == 0 || (raw & d::SH_MASK) >> d::SH_SHIFT < 0b10 {
        return None;
    }
    Some(Entry::Page {
        pa: raw & d::OA_MASK,
        writable: raw & d::AP_RO == 0,
    })
}

impl<G: Grants> FrameTable<G> {
    /// Writes `new` at `pte`, an entry of one of the domain's level-3 tables, if the fast path
    /// applies: `Some` with the result, or `None` with nothing changed.
    #[inline]
    pub(super) fn update_l3_fast(
        &mut self,
        pte: u64,
        new: u64,
        mem: &mut impl GuestMemory,
    ) -> Option<Result<(), Errno>> {
        let mask = self.policy.normal_attr_mask;
        let n = plain(new, mask)?;
        let o = plain(mem.read_u64(pte)?, mask)?;
        if let Entry::Page { pa, writable } = n {
            let f = self.frames.get(pa >> 12)?;
            // A first writable mapping may need a TLB flush (the general path knows when).
            if f.info.refs == u32::MAX
                || writable && (f.info.ty != FrameType::Writable || f.info.type_count == u32::MAX)
            {
                return None;
            }
        }
        if let Entry::Page { pa, writable } = o {
            let f = self.frames.get(pa >> 12)?;
            let again = n == Entry::Page { pa, writable: true };
            // The last writable mapping going retypes the frame: the general path's job.
            if writable && f.info.type_count + u32::from(again) < 2 {
                return None;
            }
        }
        if !mem.write_u64(pte, new) {
            return Some(Err(Errno::Fault));
        }
        if let Entry::Page { pa, writable } = n {
            let f = self.frame_mut(pa);
            f.info.refs += 1;
            f.info.type_count += u32::from(writable);
        }
        if let Entry::Page { pa, writable } = o {
            let epoch = self.epoch;
            let f = self.frame_mut(pa);
            f.info.refs -= 1;
            f.info.type_count -= u32::from(writable);
            f.unref_epoch = epoch;
        }
        Some(Ok(()))
    }
}
