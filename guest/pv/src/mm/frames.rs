//! The domain's frames: pseudo-physical frame numbers (pfns), their machine addresses (the
//! frame list Ferrite gave), their place in the initial linear map (`virt_base + pfn * 4096`),
//! and a frame allocator for the free ones.

use ferrite_abi::desc::PAGE_SIZE;

/// pfn ↔ machine address ↔ initial-map VA, from the frame list.
#[derive(Clone, Copy, Debug)]
pub struct FrameMap<'a> {
    list: &'a [u64],
    virt_base: u64,
}

impl FrameMap<'static> {
    /// No frames (before start of day).
    pub const EMPTY: Self = Self {
        list: &[],
        virt_base: 0,
    };
}

impl<'a> FrameMap<'a> {
    /// `list[pfn]` is pfn's machine address; pfn is mapped at `virt_base + pfn * 4096`.
    pub const fn new(list: &'a [u64], virt_base: u64) -> Self {
        Self { list, virt_base }
    }

    pub const fn nr_pages(&self) -> u64 {
        self.list.len() as u64
    }

    pub const fn virt_base(&self) -> u64 {
        self.virt_base
    }

    /// pfn's machine address.
    pub fn ma(&self, pfn: u64) -> Option<u64> {
        self.list.get(pfn as usize).map(|&m| m & !(PAGE_SIZE - 1))
    }

    /// pfn's VA in the initial map.
    pub const fn va(&self, pfn: u64) -> u64 {
        self.virt_base + pfn * PAGE_SIZE
    }

    /// The pfn the initial-map address `va` falls in.
    pub fn pfn_of_va(&self, va: u64) -> Option<u64> {
        let pfn = va.checked_sub(self.virt_base)? / PAGE_SIZE;
        (pfn < self.nr_pages()).then_some(pfn)
    }

    /// The pfn of the frame holding machine address `ma`, if the domain owns it. Tries the
    /// place a contiguous frame list would put it first, then searches.
    pub fn pfn_of_ma(&self, ma: u64) -> Option<u64> {
        let page = ma & !(PAGE_SIZE - 1);
        let first = self.ma(0)?;
        if let Some(guess) = page.checked_sub(first).map(|d| d / PAGE_SIZE)
            && self.ma(guess) == Some(page)
        {
            return Some(guess);
        }
        self.list
            .iter()
            .position(|&m| m & !(PAGE_SIZE - 1) == page)
            .map(|p| p as u64)
    }

    /// Whether the domain owns the frame holding `ma`.
    pub fn owns(&self, ma: u64) -> bool {
        self.pfn_of_ma(ma).is_some()
    }

    /// The initial-map VA of machine address `ma` (offset within the page kept).
    pub fn ma_to_va(&self, ma: u64) -> Option<u64> {
        self.pfn_of_ma(ma)
            .map(|pfn| self.va(pfn) + (ma & (PAGE_SIZE - 1)))
    }

    /// The machine address behind initial-map VA `va`.
    pub fn va_to_ma(&self, va: u64) -> Option<u64> {
        self.pfn_of_va(va)
            .and_then(|pfn| self.ma(pfn))
            .map(|m| m + (va & (PAGE_SIZE - 1)))
    }

    /// The lowest machine address the domain owns.
    pub fn lowest_ma(&self) -> Option<u64> {
        self.list.iter().map(|&m| m & !(PAGE_SIZE - 1)).min()
    }

    /// The highest frame the domain owns (its machine address).
    pub fn highest_ma(&self) -> Option<u64> {
        self.list.iter().map(|&m| m & !(PAGE_SIZE - 1)).max()
    }
}

/// pfns never handed out, besides those below `first_free_pfn`.
const RESERVED_MAX: usize = 4;
/// Freed frames remembered for reuse.
const FREE_MAX: usize = 128;

/// A bump allocator of pfns from `first_free_pfn` to `nr_pages`, with a small stack of freed
/// frames and a few reserved pfns it skips (the shared-info page, which Ferrite keeps writable
/// and which can therefore never become a table).
#[derive(Clone, Debug)]
pub struct FrameAlloc {
    next: u64,
    end: u64,
    /// Reserved pfns plus one (0: an empty slot), so an empty allocator is all zeroes.
    reserved: [u64; RESERVED_MAX],
    free: [u64; FREE_MAX],
    nfree: usize,
}

impl FrameAlloc {
    /// Nothing to give.
    pub const EMPTY: Self = Self::new(0, 0);

    /// pfns `first..end` are free.
    pub const fn new(first: u64, end: u64) -> Self {
        Self {
            next: first,
            end,
            reserved: [0; RESERVED_MAX],
            free: [0; FREE_MAX],
            nfree: 0,
        }
    }

    /// Never hands out `pfn`. Returns false if the reserved list is full.
    pub fn reserve(&mut self, pfn: u64) -> bool {
        match self.reserved.iter_mut().find(|r| **r == 0) {
            Some(slot) => {
                *slot = pfn + 1;
                true
            }
            None => false,
        }
    }

    fn is_reserved(&self, pfn: u64) -> bool {
        self.reserved.contains(&(pfn + 1))
    }

    /// A free pfn (its contents are whatever the last user left).
    pub fn alloc(&mut self) -> Option<u64> {
        if self.nfree > 0 {
            self.nfree -= 1;
            return Some(self.free[self.nfree]);
        }
        self.alloc_contiguous(1)
    }

    /// `n` consecutive pfns (consecutive VAs in the initial map), from the never-used ones.
    pub fn alloc_contiguous(&mut self, n: u64) -> Option<u64> {
        let mut start = self.next;
        loop {
            let end = start.checked_add(n)?;
            if n == 0 || end > self.end {
                return None;
            }
            match (start..end).rev().find(|&p| self.is_reserved(p)) {
                Some(r) => start = r + 1,
                None => {
                    self.next = end;
                    return Some(start);
                }
            }
        }
    }

    /// Gives `pfn` back for reuse. If the free stack is full the frame is forgotten.
    pub fn free(&mut self, pfn: u64) {
        if self.nfree < FREE_MAX {
            self.free[self.nfree] = pfn;
            self.nfree += 1;
        }
    }

    /// Frames still available.
    pub fn remaining(&self) -> u64 {
        let reserved_ahead = self
            .reserved
            .iter()
            .filter(|&&r| r > self.next && r <= self.end)
            .count() as u64;
        self.end.saturating_sub(self.next) - reserved_ahead + self.nfree as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VB: u64 = 0xffff_8000_0000_0000;

    #[test]
    fn contiguous_list() {
        let list: Vec<u64> = (0..16).map(|i| 0x4800_0000 + i * 0x1000).collect();
        let f = FrameMap::new(&list, VB);
        assert_eq!(f.nr_pages(), 16);
        assert_eq!(f.ma(3), Some(0x4800_3000));
        assert_eq!(f.ma(16), None);
        assert_eq!(f.va(3), VB + 0x3000);
        assert_eq!(f.pfn_of_ma(0x4800_3abc), Some(3));
        assert_eq!(f.pfn_of_ma(0x4801_0000), None);
        assert_eq!(f.pfn_of_ma(0x47ff_f000), None);
        assert_eq!(f.ma_to_va(0x4800_3010), Some(VB + 0x3010));
        assert_eq!(f.va_to_ma(VB + 0x5008), Some(0x4800_5008));
        assert_eq!(f.va_to_ma(VB + 0x10_000), None);
        assert_eq!(f.va_to_ma(VB - 8), None);
        assert!(f.owns(0x4800_f000));
        assert!(!f.owns(0x4000_0000));
        assert_eq!(f.lowest_ma(), Some(0x4800_0000));
        assert_eq!(f.highest_ma(), Some(0x4800_f000));
    }

    #[test]
    fn scattered_list() {
        // Two banks, the second below the first.
        let list = [0x6000_0000, 0x6000_1000, 0x5000_0000, 0x5000_1000];
        let f = FrameMap::new(&list, VB);
        assert_eq!(f.pfn_of_ma(0x6000_1000), Some(1));
        assert_eq!(f.pfn_of_ma(0x5000_1008), Some(3));
        assert_eq!(f.pfn_of_ma(0x5000_2000), None);
        assert_eq!(f.lowest_ma(), Some(0x5000_0000));
        assert_eq!(FrameMap::EMPTY.pfn_of_ma(0), None);
    }

    #[test]
    fn allocator_skips_reserved_and_reuses() {
        let mut a = FrameAlloc::new(10, 16);
        assert!(a.reserve(12));
        assert_eq!(a.remaining(), 5);
        assert_eq!(a.alloc(), Some(10));
        assert_eq!(a.alloc(), Some(11));
        assert_eq!(a.alloc(), Some(13));
        // 3 in a row: 14, 15 are all that is left.
        assert_eq!(a.alloc_contiguous(3), None);
        a.free(11);
        assert_eq!(a.remaining(), 3);
        assert_eq!(a.alloc(), Some(11));
        assert_eq!(a.alloc_contiguous(2), Some(14));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.remaining(), 0);
    }

    #[test]
    fn contiguous_runs_step_over_reserved() {
        let mut a = FrameAlloc::new(0, 100);
        a.reserve(5);
        assert_eq!(a.alloc_contiguous(4), Some(0));
        assert_eq!(a.alloc_contiguous(4), Some(6));
        assert_eq!(a.alloc(), Some(10));
        assert_eq!(FrameAlloc::EMPTY.clone().alloc(), None);
    }
}
