//! Reference and type counting, the heart of the validator: taking and dropping what one
//! descriptor holds, and validating or releasing a whole table when its type count leaves or
//! reaches zero. A table's entries hold their references exactly while the table is typed as
//! a table, so dropping the last reference to a table releases everything below it.

use super::desc::{self, Desc, ENTRIES, Leaf, Level, PAGE_SHIFT};
use super::frames::{FrameTable, FrameType};
use super::{Errno, Grants, GuestMemory};

impl<G: Grants> FrameTable<G> {
    #[inline]
    pub(super) fn get_ref(&mut self, pa: u64) -> Result<(), Errno> {
        let s = self.state_mut(pa);
        *s = s.with_ref().ok_or(Errno::Busy)?;
        Ok(())
    }

    #[inline]
    pub(super) fn put_ref(&mut self, pa: u64) {
        let s = self.state_mut(pa);
        *s = s.without_ref();
        self.dropped = true;
    }

    /// One more use of the frame as `want`. A frame with no type takes it (a table is
    /// validated first); one with the same type counts one more; any other type is `Busy`.
    pub(super) fn get_type(
        &mut self,
        pa: u64,
        want: FrameType,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Errno> {
        let s = self.state_mut(pa);
        if s.ty() == want {
            *s = s.with_use().ok_or(Errno::Busy)?;
            return Ok(());
        }
        if s.ty() != FrameType::None {
            return Err(Errno::Busy);
        }
        *s = s.retyped(want).with_count(1);
        // A TLB may still hold the frame in its old use (a writable page, or a table whose
        // walks are cached): flush before it starts another, and before a table's contents
        // are read for validation, so no stale writer can change them afterwards.
        if self.frames.lost(pa >> 12).conflicts(want, self.epoch) {
            self.flush(mem);
        }
        if let FrameType::PageTable(level) = want {
            // Typed before its entries are checked, so an entry mapping the table itself
            // writable, or as a table of another level, is refused like any other.
            if let Err(e) = self.validate_table(pa, level, mem) {
                let s = self.state_mut(pa);
                *s = s.retyped(FrameType::None).with_count(0);
                return Err(e);
            }
        }
        Ok(())
    }

    /// One use fewer. At zero the frame loses its type; a table first releases what its
    /// entries hold.
    pub(super) fn put_type(&mut self, pa: u64, mem: &mut impl GuestMemory) {
        let s = self.state_mut(pa);
        *s = s.without_use();
        if s.type_count() > 0 {
            return;
        }
        let ty = s.ty();
        if let FrameType::PageTable(level) = ty {
            self.release_table(pa, level, mem);
        }
        let s = self.state_mut(pa);
        *s = s.retyped(FrameType::None);
        self.set_lost(pa, ty);
    }

    /// Takes, entry by entry, what a table's valid descriptors hold; on the first refusal
    /// gives back what the earlier entries took.
    fn validate_table(
        &mut self,
        pa: u64,
        level: Level,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Errno> {
        for i in 0..ENTRIES {
            let taken = mem
                .read_u64(pa + 8 * i as u64)
                .ok_or(Errno::Fault)
                .and_then(|raw| desc::decode(raw, level, i, self.policy.normal_attr_mask))
                .and_then(|d| self.take(d, level, mem));
            if let Err(e) = taken {
                for j in 0..i {
                    self.drop_entry_at(pa, level, j, mem);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn release_table(&mut self, pa: u64, level: Level, mem: &mut impl GuestMemory) {
        for i in 0..ENTRIES {
            self.drop_entry_at(pa, level, i, mem);
        }
    }

    /// Drops what entry `i` of a validated table holds.
    pub(super) fn drop_entry_at(
        &mut self,
        pa: u64,
        level: Level,
        i: usize,
        mem: &mut impl GuestMemory,
    ) {
        // A validated table changes only through `mmu_update`, which keeps the counts in step,
        // so it reads and decodes as it did when validated. Were it ever not to, keeping the
        // references (a leak) is the safe side: the frames stay typed and owned.
        let Some(raw) = mem.read_u64(pa + 8 * i as u64) else {
            debug_assert!(false, "validated table {pa:#x} unreadable");
            return;
        };
        match desc::decode(raw, level, i, self.policy.normal_attr_mask) {
            Ok(d) => self.drop(d, mem),
            Err(_) => debug_assert!(false, "validated entry {pa:#x}[{i}] = {raw:#x} now refused"),
        }
    }

    /// Takes what a descriptor at `level` holds: for a table descriptor, a reference on the
    /// next table typed one level down (validating it if new); for a leaf, a reference on
    /// every frame it can reach and, if writable, a writable type on each.
    pub(super) fn take(
        &mut self,
        d: Desc,
        level: Level,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Errno> {
        match d {
            Desc::Invalid => Ok(()),
            Desc::Table { next } => {
                // Tables are always the domain's own frames, never granted ones.
                if !self.owns(next) {
                    return Err(Errno::Perm);
                }
                self.get_ref(next)?;
                // Exactly the next level: this refuses a table linking itself, a table of
                // another level (the "linear page table" trick) and with it any cycle, since
                // levels only grow downwards.
                if let Err(e) = self.get_type(next, FrameType::PageTable(level + 1), mem) {
                    self.put_ref(next);
                    return Err(e);
                }
                Ok(())
            }
            Desc::Leaf(l) => self.take_leaf(l, mem),
        }
    }

    pub(super) fn drop(&mut self, d: Desc, mem: &mut impl GuestMemory) {
        match d {
            Desc::Invalid => {}
            Desc::Table { next } => {
                self.put_type(next, mem);
                self.put_ref(next);
            }
            Desc::Leaf(l) => self.drop_leaf(l, mem),
        }
    }

    #[inline]
    fn take_leaf(&mut self, l: Leaf, mem: &mut impl GuestMemory) -> Result<(), Errno> {
        if l.frames == 1 {
            if !self.owns(l.base) {
                let dom = self.dom;
                return if self.grants.map(dom, l.base, l.writable) {
                    Ok(())
                } else {
                    Err(Errno::Perm)
                };
            }
        } else if !self.frames.contains_all(l.base >> PAGE_SHIFT, l.frames) {
            // Blocks and contiguous spans: all of it owned, which also makes it RAM and
            // contiguous in the domain's memory. Checked before anything is taken.
            return Err(Errno::Perm);
        }
        for k in 0..l.frames {
            let pa = l.base + (k << PAGE_SHIFT);
            if let Err(e) = self.take_frame(pa, l.writable, mem) {
                for j in 0..k {
                    self.drop_frame(l.base + (j << PAGE_SHIFT), l.writable, mem);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    #[inline]
    fn drop_leaf(&mut self, l: Leaf, mem: &mut impl GuestMemory) {
        if l.frames == 1 && !self.owns(l.base) {
            let dom = self.dom;
            self.grants.unmap(dom, l.base, l.writable);
            return;
        }
        for k in 0..l.frames {
            self.drop_frame(l.base + (k << PAGE_SHIFT), l.writable, mem);
        }
    }

    /// A leaf's hold on one frame: a reference, and the writable type if the leaf is
    /// writable (refused for a page-table page: `Busy`). Read-only mappings of tables are how
    /// the guest reads its own tables.
    #[inline]
    fn take_frame(
        &mut self,
        pa: u64,
        writable: bool,
        mem: &mut impl GuestMemory,
    ) -> Result<(), Errno> {
        self.get_ref(pa)?;
        if writable && let Err(e) = self.get_type(pa, FrameType::Writable, mem) {
            self.put_ref(pa);
            return Err(e);
        }
        Ok(())
    }

    #[inline]
    fn drop_frame(&mut self, pa: u64, writable: bool, mem: &mut impl GuestMemory) {
        if writable {
            self.put_type(pa, mem);
        }
        self.put_ref(pa);
    }
}
