//! Grants in use: how many uses (copies in progress, mappings) each entry has, so the entry's
//! READING/WRITING mark is set by the first use and cleared by the last; and dom0's grant
//! window, the guest-physical pages where its mappings of granted frames go.

use super::{Access, begin_holding, end};
use crate::domain::DomId;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use ferrite_abi::Errno;
use ferrite_abi::grant::GrantEntry;

/// Uses of each (granter, reference): (reads, writes).
#[derive(Debug, Default)]
pub struct Active {
    uses: BTreeMap<(DomId, u64), (u32, u32)>,
}

impl Active {
    pub const fn new() -> Self {
        Self {
            uses: BTreeMap::new(),
        }
    }

    /// Starts a use of `e` (`granter`'s reference `gref`) by `grantee`: the entry is checked and
    /// marked by the first use of each kind; later uses check it still grants the same.
    pub fn acquire(
        &mut self,
        e: &GrantEntry,
        granter: DomId,
        gref: u64,
        grantee: DomId,
        access: Access,
    ) -> Result<u32, Errno> {
        let (r, w) = self.uses.get(&(granter, gref)).copied().unwrap_or((0, 0));
        let first = match access {
            Access::Read => r == 0,
            Access::Write => w == 0,
        };
        let frame = if first {
            let ours = match access {
                Access::Read if w > 0 => ferrite_abi::grant::flags::WRITING,
                Access::Write if r > 0 => ferrite_abi::grant::flags::READING,
                _ => 0,
            };
            begin_holding(e, grantee, access, ours)?
        } else {
            // Marked already: the granter may not have changed it (a well-behaved one cannot:
            // its end CAS fails while marked); check what it says anyway.
            recheck(e, grantee, access)?
        };
        let c = self.uses.entry((granter, gref)).or_insert((0, 0));
        match access {
            Access::Read => c.0 += 1,
            Access::Write => c.1 += 1,
        }
        Ok(frame)
    }

    /// Ends a use [`Active::acquire`] started.
    pub fn release(&mut self, e: &GrantEntry, granter: DomId, gref: u64, access: Access) {
        let Some(c) = self.uses.get_mut(&(granter, gref)) else {
            debug_assert!(false, "release without acquire");
            return;
        };
        let n = match access {
            Access::Read => &mut c.0,
            Access::Write => &mut c.1,
        };
        *n -= 1;
        if *n == 0 {
            end(e, access);
        }
        if *c == (0, 0) {
            self.uses.remove(&(granter, gref));
        }
    }

    /// How many of `granter`'s references are in use (by anyone).
    pub fn granter_uses(&self, granter: DomId) -> usize {
        self.uses.range((granter, 0)..=(granter, u64::MAX)).count()
    }

    /// Uses of `granter`'s reference `gref`: (reads, writes).
    pub fn uses(&self, granter: DomId, gref: u64) -> (u32, u32) {
        self.uses.get(&(granter, gref)).copied().unwrap_or((0, 0))
    }
}

fn recheck(e: &GrantEntry, grantee: DomId, access: Access) -> Result<u32, Errno> {
    use core::sync::atomic::Ordering;
    use ferrite_abi::grant::flags;
    let f = e.flags.load(Ordering::Acquire);
    if f & flags::PERMIT_ACCESS == 0 || e.domid.load(Ordering::Acquire) != grantee {
        return Err(Errno::Perm);
    }
    if access == Access::Write && f & flags::READONLY != 0 {
        return Err(Errno::Perm);
    }
    Ok(e.frame.load(Ordering::Acquire))
}

/// One mapping in dom0's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub granter: DomId,
    pub gref: u64,
    pub ma: u64,
    pub writable: bool,
}

/// dom0's grant window: `pages` guest-physical pages from `base`, each free or one mapping.
#[derive(Debug)]
pub struct Window {
    pub base: u64,
    slots: Vec<Option<Mapping>>,
}

impl Window {
    pub fn new(base: u64, pages: usize) -> Self {
        Self {
            base,
            slots: alloc::vec![None; pages],
        }
    }

    /// A free page for `m`: its guest-physical address. `NoSpc` when the window is full.
    pub fn insert(&mut self, m: Mapping) -> Result<u64, Errno> {
        let i = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(Errno::NoSpc)?;
        self.slots[i] = Some(m);
        Ok(self.base + i as u64 * 4096)
    }

    /// The mapping at guest-physical `ipa` (page-aligned, in the window), removed.
    pub fn remove(&mut self, ipa: u64) -> Result<Mapping, Errno> {
        let i = self.index(ipa)?;
        self.slots[i].take().ok_or(Errno::NoEnt)
    }

    fn index(&self, ipa: u64) -> Result<usize, Errno> {
        if !ipa.is_multiple_of(4096) || ipa < self.base {
            return Err(Errno::Inval);
        }
        let i = ((ipa - self.base) / 4096) as usize;
        if i >= self.slots.len() {
            return Err(Errno::Inval);
        }
        Ok(i)
    }

    /// Every mapping of `granter`'s frames, with its address (a dying granter's are undone).
    pub fn of(&self, granter: DomId) -> Vec<(u64, Mapping)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                m.filter(|m| m.granter == granter)
                    .map(|m| (self.base + i as u64 * 4096, m))
            })
            .collect()
    }

    pub fn in_use(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};
    use ferrite_abi::grant::flags;

    fn entry(f: u16, dom: DomId, frame: u32) -> GrantEntry {
        GrantEntry {
            flags: AtomicU16::new(f),
            domid: AtomicU16::new(dom),
            frame: AtomicU32::new(frame),
        }
    }

    #[test]
    fn the_mark_lasts_from_the_first_use_to_the_last() {
        let mut a = Active::new();
        let e = entry(flags::PERMIT_ACCESS, 0, 5);
        assert_eq!(a.acquire(&e, 3, 9, 0, Access::Write), Ok(5));
        assert_eq!(a.acquire(&e, 3, 9, 0, Access::Write), Ok(5), "a second use");
        assert_eq!(a.acquire(&e, 3, 9, 0, Access::Read), Ok(5));
        assert_eq!(a.uses(3, 9), (1, 2));
        a.release(&e, 3, 9, Access::Write);
        assert_ne!(
            e.flags.load(Ordering::Relaxed) & flags::WRITING,
            0,
            "still one writer"
        );
        a.release(&e, 3, 9, Access::Write);
        assert_eq!(e.flags.load(Ordering::Relaxed) & flags::WRITING, 0);
        assert_ne!(e.flags.load(Ordering::Relaxed) & flags::READING, 0);
        // The granter cannot end the grant while it is read.
        assert!(
            e.flags
                .compare_exchange(flags::PERMIT_ACCESS, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        );
        a.release(&e, 3, 9, Access::Read);
        assert_eq!(e.flags.load(Ordering::Relaxed), flags::PERMIT_ACCESS);
        assert_eq!(a.uses(3, 9), (0, 0));
    }

    #[test]
    fn a_read_only_grant_refuses_a_writer_even_while_read() {
        let mut a = Active::new();
        let e = entry(flags::PERMIT_ACCESS | flags::READONLY, 0, 5);
        a.acquire(&e, 1, 8, 0, Access::Read).unwrap();
        assert_eq!(a.acquire(&e, 1, 8, 0, Access::Write), Err(Errno::Perm));
        assert_eq!(
            a.acquire(&e, 1, 8, 2, Access::Read),
            Err(Errno::Perm),
            "another grantee"
        );
        assert_eq!(a.uses(1, 8), (1, 0));
    }

    #[test]
    fn the_window_hands_out_pages_and_takes_them_back() {
        let mut w = Window::new(0x10_0000_0000, 2);
        let m = |g| Mapping {
            granter: 1,
            gref: g,
            ma: 0x4000_0000 + g * 4096,
            writable: true,
        };
        assert_eq!(w.insert(m(8)), Ok(0x10_0000_0000));
        assert_eq!(w.insert(m(9)), Ok(0x10_0000_1000));
        assert_eq!(w.insert(m(10)), Err(Errno::NoSpc));
        assert_eq!(w.of(1).len(), 2);
        assert_eq!(w.remove(0x10_0000_0000), Ok(m(8)));
        assert_eq!(w.remove(0x10_0000_0000), Err(Errno::NoEnt));
        assert_eq!(w.remove(0x10_0000_2000), Err(Errno::Inval));
        assert_eq!(w.remove(0x10_0000_0008), Err(Errno::Inval));
        assert_eq!(w.remove(0xfff_0000), Err(Errno::Inval));
        assert_eq!(w.insert(m(10)), Ok(0x10_0000_0000), "reused");
        assert_eq!(w.in_use(), 2);
    }
}
