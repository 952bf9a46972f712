//! Physical address ranges and the set arithmetic on them that turns the device tree's RAM banks
//! and reservations into the memory Ferrite may hand out.
//!
//! A [`Region`] may reach the very top of the 64-bit address space, where its exclusive end
//! (2^64) is not representable as a `u64`; the set operations therefore compute ends in `u128`.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// A range of physical addresses `[start, start + size)`.
///
/// Invariant kept by every constructor: `start + size <= 2^64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region {
    pub start: u64,
    pub size: u64,
}

/// One past the last address of the 64-bit space, the largest end a region can have.
const TOP: u128 = 1 << 64;

impl Region {
    /// A region of `size` bytes from `start`, clamped so that it ends at the top of the address
    /// space at the latest (firmware tables are not to be trusted to stay in range).
    pub const fn new(start: u64, size: u64) -> Self {
        let room = u64::MAX - start; // bytes after `start`, less one
        let size = if size > room && room < u64::MAX {
            room + 1
        } else {
            size
        };
        Self { start, size }
    }

    /// The region covering `range` (empty if the range is empty or reversed).
    pub const fn from_range(range: Range<u64>) -> Self {
        let size = range.end.saturating_sub(range.start);
        Self {
            start: range.start,
            size,
        }
    }

    /// The exclusive end address, saturated to `u64::MAX` for a region reaching the top of the
    /// address space (use [`Region::last`] where that distinction matters).
    pub const fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }

    /// The inclusive last address, or `None` if the region is empty.
    pub const fn last(&self) -> Option<u64> {
        if self.size == 0 {
            None
        } else {
            Some(self.start + (self.size - 1))
        }
    }

    pub const fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The exact exclusive end, which may be 2^64.
    const fn end_wide(&self) -> u128 {
        self.start as u128 + self.size as u128
    }

    /// Builds a region from a wide range, clamping to the address space.
    fn from_wide(start: u128, end: u128) -> Self {
        let end = end.min(TOP);
        if start >= end {
            return Self {
                start: start.min(u64::MAX as u128) as u64,
                size: 0,
            };
        }
        // `end - start` is at most 2^64 - start <= 2^64; only start == 0 with end == 2^64 could
        // exceed u64, and such a region cannot be represented, so it loses its last byte.
        let size = (end - start).min(u64::MAX as u128) as u64;
        Self {
            start: start as u64,
            size,
        }
    }

    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr - self.start < self.size
    }

    /// Whether `other` lies entirely within `self` (an empty region is within any region that
    /// contains its start or ends there).
    pub const fn contains_region(&self, other: &Region) -> bool {
        other.start >= self.start && other.end_wide() <= self.end_wide()
    }

    /// Whether the two regions share at least one address (empty regions overlap nothing).
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.size != 0
            && other.size != 0
            && (self.start as u128) < other.end_wide()
            && (other.start as u128) < self.end_wide()
    }

    /// The largest `align`-aligned region inside `self`, or `None` if no whole aligned block fits.
    ///
    /// # Panics
    /// If `align` is not a power of two (a programming error, not a property of the input).
    pub fn align_inward(&self, align: u64) -> Option<Region> {
        assert!(
            align.is_power_of_two(),
            "alignment {align:#x} is not a power of two"
        );
        let mask = align as u128 - 1;
        let start = (self.start as u128 + mask) & !mask;
        let end = self.end_wide() & !mask;
        (start < end).then(|| Region::from_wide(start, end))
    }

    /// The smallest `align`-aligned region covering `self`, clamped at the top of the address
    /// space. An empty region stays empty (at its start rounded down).
    ///
    /// # Panics
    /// If `align` is not a power of two.
    pub fn align_outward(&self, align: u64) -> Region {
        assert!(
            align.is_power_of_two(),
            "alignment {align:#x} is not a power of two"
        );
        let mask = align as u128 - 1;
        let start = self.start as u128 & !mask;
        if self.size == 0 {
            return Region {
                start: start as u64,
                size: 0,
            };
        }
        let end = (self.end_wide() + mask) & !mask;
        Region::from_wide(start, end)
    }
}

impl fmt::Display for Region {
    /// `0x40000000-0x7fffffff (1024 MiB)`: inclusive end, as firmware logs usually print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        let Some(last) = self.last() else {
            return write!(f, "{:#x} (empty)", self.start);
        };
        write!(f, "{:#x}-{:#x} ", self.start, last)?;
        if self.size >= MIB && self.size.is_multiple_of(MIB) {
            write!(f, "({} MiB)", self.size / MIB)
        } else if self.size.is_multiple_of(KIB) {
            write!(f, "({} KiB)", self.size / KIB)
        } else {
            write!(f, "({} bytes)", self.size)
        }
    }
}

/// Sorts `regions` and coalesces overlapping or adjacent ones; empty regions are dropped.
pub fn merge(regions: &mut Vec<Region>) {
    regions.retain(|r| !r.is_empty());
    regions.sort_unstable();
    let mut out: Vec<Region> = Vec::with_capacity(regions.len());
    for r in regions.iter() {
        match out.last_mut() {
            Some(prev) if r.start as u128 <= prev.end_wide() => {
                let end = prev.end_wide().max(r.end_wide());
                *prev = Region::from_wide(prev.start as u128, end);
            }
            _ => out.push(*r),
        }
    }
    *regions = out;
}

/// `ranges` minus every hole: sorted, merged, with empty pieces dropped. Neither input needs to
/// be sorted or disjoint.
pub fn subtract(ranges: &[Region], holes: &[Region]) -> Vec<Region> {
    let mut ranges = ranges.to_vec();
    merge(&mut ranges);
    let mut holes = holes.to_vec();
    merge(&mut holes);

    let mut out = Vec::with_capacity(ranges.len() + holes.len());
    // Both lists are sorted and disjoint, so one sweep suffices: holes wholly before the current
    // range can never matter to a later one.
    let mut first_hole = 0;
    for range in &ranges {
        let mut cursor = range.start as u128;
        let end = range.end_wide();
        while first_hole < holes.len() && holes[first_hole].end_wide() <= cursor {
            first_hole += 1;
        }
        for hole in &holes[first_hole..] {
            let (hole_start, hole_end) = (hole.start as u128, hole.end_wide());
            if hole_start >= end {
                break;
            }
            if hole_start > cursor {
                out.push(Region::from_wide(cursor, hole_start));
            }
            cursor = cursor.max(hole_end);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            out.push(Region::from_wide(cursor, end));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn r(start: u64, size: u64) -> Region {
        Region::new(start, size)
    }

    #[test]
    fn basic_accessors() {
        let a = r(0x4000_0000, GIB);
        assert_eq!(a.end(), 0x8000_0000);
        assert_eq!(a.last(), Some(0x7fff_ffff));
        assert!(a.contains(0x4000_0000));
        assert!(a.contains(0x7fff_ffff));
        assert!(!a.contains(0x8000_0000));
        assert!(!a.contains(0x3fff_ffff));
        assert_eq!(Region::from_range(0x1000..0x3000), r(0x1000, 0x2000));
        let (start, end) = (0x3000, 0x1000);
        assert!(Region::from_range(start..end).is_empty(), "reversed");
        assert_eq!(r(5, 0).last(), None);
        assert!(!r(5, 0).contains(5));
    }

    #[test]
    fn new_clamps_at_top_of_address_space() {
        let a = r(u64::MAX - 0xfff, 0x10_0000);
        assert_eq!(a.size, 0x1000);
        assert_eq!(a.last(), Some(u64::MAX));
        assert_eq!(a.end(), u64::MAX, "end saturates");
        assert!(a.contains(u64::MAX));
        assert_eq!(r(0, u64::MAX).size, u64::MAX);
        assert_eq!(r(u64::MAX, 5).size, 1);
    }

    #[test]
    fn overlaps() {
        let a = r(0x1000, 0x1000);
        assert!(a.overlaps(&r(0x1fff, 1)));
        assert!(a.overlaps(&r(0, 0x1001)));
        assert!(
            !a.overlaps(&r(0x2000, 0x1000)),
            "adjacent is not overlapping"
        );
        assert!(!a.overlaps(&r(0, 0x1000)));
        assert!(!a.overlaps(&r(0x1800, 0)), "empty overlaps nothing");
        let top = r(u64::MAX - 0xfff, 0x1000);
        assert!(top.overlaps(&r(u64::MAX, 1)));
        assert!(r(0, u64::MAX).overlaps(&top));
    }

    #[test]
    fn contains_region() {
        let a = r(0x1000, 0x3000);
        assert!(a.contains_region(&r(0x1000, 0x3000)));
        assert!(a.contains_region(&r(0x2000, 0x1000)));
        assert!(!a.contains_region(&r(0x2000, 0x3000)));
        assert!(!a.contains_region(&r(0x0, 0x2000)));
    }

    #[test]
    fn align_inward_and_outward() {
        let a = r(0x1234, 0x5000);
        assert_eq!(a.align_inward(0x1000), Some(r(0x2000, 0x4000)));
        assert_eq!(a.align_outward(0x1000), r(0x1000, 0x6000));
        assert_eq!(r(0x1001, 0xffe).align_inward(0x1000), None);
        assert_eq!(
            r(0x1000, 0x1000).align_inward(0x1000),
            Some(r(0x1000, 0x1000))
        );
        assert_eq!(r(0x1fff, 0).align_outward(0x1000), r(0x1000, 0));
        // At the top, outward rounding must clamp instead of overflowing.
        let top = r(u64::MAX - 0x1800, 0x1000);
        assert_eq!(top.align_outward(0x1000), r(u64::MAX - 0x1fff, 0x2000));
        let last = r(u64::MAX, 1);
        assert_eq!(last.align_outward(0x1000), r(u64::MAX - 0xfff, 0x1000));
        assert_eq!(last.align_inward(0x1000), None);
        assert_eq!(
            r(u64::MAX - 0xfff, 0x1000).align_inward(0x1000),
            Some(r(u64::MAX - 0xfff, 0x1000))
        );
        assert_eq!(
            r(0, u64::MAX).align_inward(GIB),
            Some(r(0, u64::MAX - (GIB - 1)))
        );
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn align_rejects_non_power_of_two() {
        let _ = r(0, 0x1000).align_inward(0x3000);
    }

    #[test]
    fn display() {
        assert_eq!(
            format!("{}", r(0x4000_0000, GIB)),
            "0x40000000-0x7fffffff (1024 MiB)"
        );
        assert_eq!(
            format!("{}", r(0x9000000, 0x1000)),
            "0x9000000-0x9000fff (4 KiB)"
        );
        assert_eq!(format!("{}", r(0, MIB + 0x1000)), "0x0-0x100fff (1028 KiB)");
        assert_eq!(format!("{}", r(0x10, 0x10)), "0x10-0x1f (16 bytes)");
        assert_eq!(format!("{}", r(0x10, 0)), "0x10 (empty)");
        assert_eq!(
            format!("{}", r(u64::MAX - (MIB - 1), MIB)),
            "0xfffffffffff00000-0xffffffffffffffff (1 MiB)"
        );
    }

    #[test]
    fn merge_sorts_coalesces_and_drops_empty() {
        let mut v = vec![
            r(0x5000, 0x1000),
            r(0x1000, 0x1000),
            r(0x2000, 0x1000),
            r(0x9000, 0),
            r(0x1800, 0x100),
        ];
        merge(&mut v);
        assert_eq!(v, vec![r(0x1000, 0x2000), r(0x5000, 0x1000)]);

        let mut nested = vec![r(0x1000, 0x10000), r(0x2000, 0x1000), r(0x10000, 0x2000)];
        merge(&mut nested);
        assert_eq!(nested, vec![r(0x1000, 0x11000)]);

        let mut empty: Vec<Region> = vec![];
        merge(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn merge_at_top_of_address_space() {
        let mut v = vec![
            r(u64::MAX - 0xfff, 0x1000),
            r(u64::MAX - 0x1fff, 0x1000),
            r(u64::MAX - 0x17ff, 0x1800),
        ];
        merge(&mut v);
        assert_eq!(v, vec![r(u64::MAX - 0x1fff, 0x2000)]);
    }

    #[test]
    fn subtract_basic() {
        let ram = [r(0x4000_0000, GIB)];
        assert_eq!(subtract(&ram, &[]), ram.to_vec());
        // Hole in the middle.
        assert_eq!(
            subtract(&ram, &[r(0x4800_0000, MIB)]),
            vec![r(0x4000_0000, 0x800_0000), r(0x4810_0000, GIB - 0x810_0000)]
        );
        // Holes at both edges and one overhanging the start.
        assert_eq!(
            subtract(
                &ram,
                &[r(0x3000_0000, 0x1000_1000), r(0x7fff_f000, 0x10_0000)]
            ),
            vec![r(0x4000_1000, GIB - 0x2000)]
        );
        // A hole covering everything.
        assert!(subtract(&ram, &[r(0, 0x1_0000_0000)]).is_empty());
        // Holes elsewhere change nothing.
        assert_eq!(
            subtract(&ram, &[r(0, 0x1000), r(0x9000_0000, 0x1000)]),
            ram.to_vec()
        );
    }

    #[test]
    fn subtract_multiple_banks_unsorted_overlapping_holes() {
        let ram = [
            r(0x8_8000_0000, 2 * GIB),
            r(0x4000_0000, GIB),
            r(0x4000_0000, 0x1000),
        ];
        let holes = [
            r(0x8_8000_0000, 0x1000),
            r(0x4000_2000, 0x1000),
            r(0x4000_2800, 0x1000), // overlaps the previous hole
            r(0x4000_1000, 0),      // empty: ignored
            r(0x8_ffff_f000, 0x10_0000),
        ];
        assert_eq!(
            subtract(&ram, &holes),
            vec![
                r(0x4000_0000, 0x2000),
                r(0x4000_3800, GIB - 0x3800),
                r(0x8_8000_1000, 2 * GIB - 0x1000 - 0x1000),
            ]
        );
    }

    #[test]
    fn subtract_one_hole_spanning_banks() {
        let ram = [r(0x1000, 0x1000), r(0x3000, 0x1000), r(0x5000, 0x1000)];
        assert_eq!(
            subtract(&ram, &[r(0x1800, 0x4000)]),
            vec![r(0x1000, 0x800), r(0x5800, 0x800)]
        );
    }

    #[test]
    fn subtract_at_top_of_address_space() {
        let ram = [r(u64::MAX - 0xffff, 0x10000)];
        assert_eq!(
            subtract(&ram, &[r(u64::MAX, 1)]),
            vec![r(u64::MAX - 0xffff, 0xffff)]
        );
        assert_eq!(
            subtract(&ram, &[r(u64::MAX - 0xffff, 1)]),
            vec![r(u64::MAX - 0xfffe, 0xffff)]
        );
        let all = [r(0, u64::MAX)];
        assert_eq!(
            subtract(&all, &[r(0x1000, 0x1000)]),
            vec![r(0, 0x1000), r(0x2000, u64::MAX - 0x2000)]
        );
    }
}
