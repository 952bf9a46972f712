//! The physical frame allocator: every 4 KiB frame of RAM that is not reserved, handed out in
//! naturally aligned power-of-two blocks (domains' memory and page tables come from here).
//!
//! A buddy allocator does the block bookkeeping. On top of it this module keeps a record of every
//! live allocation, which lets `free` reject addresses it never handed out, double frees and
//! mismatched counts instead of silently corrupting the buddy lists, and gives back the unused
//! tail of each power-of-two block so that an allocation costs exactly the frames asked for.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::region::{self, Region};

/// Size of a frame, the allocator's unit.
pub const PAGE_SIZE: u64 = 4096;
const PAGE_SHIFT: u32 = 12;

/// Orders of the buddy: blocks of up to 2^32 frames (16 TiB), more than any bank.
const BUDDY_ORDER: usize = 33;

/// Why a [`FrameAllocator::free`] was refused. The allocator is unchanged in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The address is not a multiple of [`PAGE_SIZE`].
    Misaligned(u64),
    /// A count of zero frames.
    ZeroCount,
    /// The range is not (entirely) inside RAM this allocator manages.
    NotManaged { addr: u64, count: usize },
    /// No allocation starts at this address: never allocated, or already freed.
    NotAllocated(u64),
    /// An allocation starts here, but with a different number of frames.
    CountMismatch {
        addr: u64,
        allocated: usize,
        freed: usize,
    },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Misaligned(addr) => write!(f, "free of {addr:#x}: not page-aligned"),
            Self::ZeroCount => write!(f, "free of zero frames"),
            Self::NotManaged { addr, count } => {
                write!(f, "free of {count} frame(s) at {addr:#x}: not managed RAM")
            }
            Self::NotAllocated(addr) => {
                write!(f, "free of {addr:#x}: not allocated (double free?)")
            }
            Self::CountMismatch {
                addr,
                allocated,
                freed,
            } => write!(
                f,
                "free of {freed} frame(s) at {addr:#x}: allocation there has {allocated}"
            ),
        }
    }
}

/// Owner of all free RAM frames.
pub struct FrameAllocator {
    buddy: buddy_system_allocator::FrameAllocator<BUDDY_ORDER>,
    /// RAM minus reservations, page-aligned inward, sorted and disjoint.
    regions: Vec<Region>,
    /// Live allocations: first frame number -> frame count.
    live: BTreeMap<usize, usize>,
    total: usize,
    used: usize,
}

impl FrameAllocator {
    /// Takes ownership of every whole page of `ram` outside `reserved` (Ferrite's image, the DTB,
    /// firmware reservations, boot modules: whatever must never be handed out).
    pub fn new(ram: &[Region], reserved: &[Region]) -> Self {
        let regions: Vec<Region> = region::subtract(ram, reserved)
            .iter()
            .filter_map(|r| r.align_inward(PAGE_SIZE))
            .collect();
        let mut buddy = buddy_system_allocator::FrameAllocator::new();
        let mut total = 0;
        for r in &regions {
            let (first, count) = (frame_number(r.start), frame_count(r.size));
            buddy.add_frame(first, first + count);
            total += count;
        }
        Self {
            buddy,
            regions,
            live: BTreeMap::new(),
            total,
            used: 0,
        }
    }

    /// Allocates `count` contiguous frames, returning the physical address of the first. The
    /// address is aligned to `count` rounded up to a power of two frames.
    pub fn alloc(&mut self, count: usize) -> Option<u64> {
        self.alloc_aligned(count, PAGE_SIZE)
    }

    /// Allocates `count` contiguous frames whose address is aligned to `align_bytes` (a power of
    /// two; anything up to a page means page alignment) as well as to `count` rounded up to a
    /// power of two frames.
    pub fn alloc_aligned(&mut self, count: usize, align_bytes: u64) -> Option<u64> {
        if count == 0 || !align_bytes.is_power_of_two() {
            return None;
        }
        let align_frames = usize::try_from(align_bytes >> PAGE_SHIFT).ok()?.max(1);
        let block = count.checked_next_power_of_two()?.max(align_frames);
        if block.trailing_zeros() as usize >= BUDDY_ORDER {
            return None;
        }
        let first = self.buddy.alloc(block)?;
        // The buddy hands out whole power-of-two blocks; what lies past `count` goes back now
        // rather than being wasted until the free.
        release_blocks(&mut self.buddy, first + count, block - count);
        self.live.insert(first, count);
        self.used += count;
        Some(frame_address(first))
    }

    /// Returns `count` frames at `addr`, which must be exactly an earlier allocation.
    pub fn free(&mut self, addr: u64, count: usize) -> Result<(), FreeError> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(FreeError::Misaligned(addr));
        }
        if count == 0 {
            return Err(FreeError::ZeroCount);
        }
        let span = Region::new(addr, (count as u64).saturating_mul(PAGE_SIZE));
        let managed = span.size / PAGE_SIZE == count as u64
            && self.regions.iter().any(|r| r.contains_region(&span));
        if !managed {
            return Err(FreeError::NotManaged { addr, count });
        }
        let first = frame_number(addr);
        match self.live.get(&first) {
            None => return Err(FreeError::NotAllocated(addr)),
            Some(&allocated) if allocated != count => {
                return Err(FreeError::CountMismatch {
                    addr,
                    allocated,
                    freed: count,
                });
            }
            Some(_) => {}
        }
        self.live.remove(&first);
        release_blocks(&mut self.buddy, first, count);
        self.used -= count;
        Ok(())
    }

    /// Frames available for allocation.
    pub fn free_frames(&self) -> usize {
        self.total - self.used
    }

    /// Frames currently allocated.
    pub fn used_frames(&self) -> usize {
        self.used
    }

    /// All frames this allocator manages.
    pub fn total_frames(&self) -> usize {
        self.total
    }

    /// The managed RAM: sorted, disjoint, page-aligned.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
}

impl fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("regions", &self.regions)
            .field("total", &self.total)
            .field("used", &self.used)
            .field("allocations", &self.live.len())
            .finish()
    }
}

/// Gives `[first, first + count)` back to the buddy as naturally aligned power-of-two blocks,
/// the only shape its `dealloc` understands.
fn release_blocks(
    buddy: &mut buddy_system_allocator::FrameAllocator<BUDDY_ORDER>,
    mut first: usize,
    mut count: usize,
) {
    while count > 0 {
        let align = if first == 0 {
            usize::MAX
        } else {
            1 << first.trailing_zeros()
        };
        let size = align.min(prev_power_of_two(count));
        buddy.dealloc(first, size);
        first += size;
        count -= size;
    }
}

const fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

const fn frame_number(addr: u64) -> usize {
    (addr >> PAGE_SHIFT) as usize
}

const fn frame_count(bytes: u64) -> usize {
    (bytes >> PAGE_SHIFT) as usize
}

const fn frame_address(frame: usize) -> u64 {
    (frame as u64) << PAGE_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn r(start: u64, size: u64) -> Region {
        Region::new(start, size)
    }

    fn frames(bytes: u64) -> usize {
        (bytes / PAGE_SIZE) as usize
    }

    /// Allocates single frames until exhaustion, checking each is managed, unique and aligned.
    fn drain(fa: &mut FrameAllocator) -> Vec<u64> {
        let mut got = Vec::new();
        while let Some(a) = fa.alloc(1) {
            assert_eq!(a % PAGE_SIZE, 0);
            assert!(
                fa.regions().iter().any(|r| r.contains(a)),
                "{a:#x} not managed"
            );
            got.push(a);
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "a frame was handed out twice");
        got
    }

    #[test]
    fn single_bank() {
        let mut fa = FrameAllocator::new(&[r(0x4000_0000, GIB)], &[]);
        assert_eq!(fa.total_frames(), frames(GIB));
        assert_eq!(fa.free_frames(), frames(GIB));
        assert_eq!(fa.used_frames(), 0);
        let a = fa.alloc(1).unwrap();
        assert!(r(0x4000_0000, GIB).contains(a));
        assert_eq!(fa.used_frames(), 1);
        assert_eq!(fa.free_frames(), frames(GIB) - 1);
        fa.free(a, 1).unwrap();
        assert_eq!(fa.free_frames(), frames(GIB));
    }

    #[test]
    fn multiple_banks_above_4g_with_holes() {
        let ram = [r(0x4000_0000, 256 * MIB), r(0x8_8000_0000, 512 * MIB)];
        let reserved = [
            r(0x4000_0000, 0x1000),      // start edge of bank 0
            r(0x4800_0000, 2 * MIB),     // middle of bank 0
            r(0x4fff_f000, 0x1000),      // end edge of bank 0
            r(0x8_8000_0000, 0x20_0000), // start edge of bank 1
            r(0x8_9000_0800, 0x1000),    // misaligned: costs two frames
        ];
        let fa = FrameAllocator::new(&ram, &reserved);
        assert_eq!(
            fa.regions(),
            &[
                r(0x4000_1000, 0x800_0000 - 0x1000),
                r(0x4820_0000, 0x7e0_0000 - 0x1000),
                r(0x8_8020_0000, 0x1000_0000 - 0x20_0000),
                r(0x8_9000_2000, 0x1000_0000 - 0x2000),
            ]
        );
        let expected = frames(256 * MIB) - 1 - frames(2 * MIB) - 1 + frames(512 * MIB) - 512 - 2;
        assert_eq!(fa.total_frames(), expected);
        assert_eq!(fa.free_frames(), expected);
    }

    #[test]
    fn misaligned_banks_lose_partial_pages() {
        let ram = [r(0x4000_0800, 0x4000), r(0x5000_0000, 0xfff)];
        let mut fa = FrameAllocator::new(&ram, &[]);
        assert_eq!(fa.regions(), &[r(0x4000_1000, 0x3000)]);
        assert_eq!(fa.total_frames(), 3);
        assert_eq!(drain(&mut fa).len(), 3);
    }

    #[test]
    fn no_ram_at_all() {
        let mut fa = FrameAllocator::new(&[], &[]);
        assert_eq!(fa.total_frames(), 0);
        assert_eq!(fa.alloc(1), None);
        let mut fa = FrameAllocator::new(&[r(0x4000_0000, MIB)], &[r(0, 0x1_0000_0000)]);
        assert_eq!(fa.total_frames(), 0);
        assert_eq!(fa.alloc(1), None);
    }

    #[test]
    fn alloc_is_naturally_aligned() {
        let mut fa = FrameAllocator::new(&[r(0x4000_1000, 64 * MIB)], &[]);
        for count in [1usize, 2, 3, 5, 8, 100, 512, 513] {
            let a = fa.alloc(count).unwrap();
            let align = count.next_power_of_two() as u64 * PAGE_SIZE;
            assert_eq!(a % align, 0, "alloc({count}) = {a:#x}");
        }
    }

    #[test]
    fn alloc_aligned_honours_alignment() {
        let mut fa = FrameAllocator::new(&[r(0x4000_1000, 64 * MIB)], &[]);
        let a = fa.alloc_aligned(1, 2 * MIB).unwrap();
        assert_eq!(a % (2 * MIB), 0);
        let b = fa.alloc_aligned(3, 64 * 1024).unwrap();
        assert_eq!(b % (64 * 1024), 0);
        // Sub-page alignment is just page alignment.
        assert!(fa.alloc_aligned(1, 8).is_some());
        assert_eq!(
            fa.alloc_aligned(1, 3 * PAGE_SIZE),
            None,
            "not a power of two"
        );
        // The padding used for alignment is not charged.
        assert_eq!(fa.used_frames(), 1 + 3 + 1);
        fa.free(a, 1).unwrap();
        fa.free(b, 3).unwrap();
        assert_eq!(fa.used_frames(), 1);
    }

    #[test]
    fn odd_counts_cost_exactly_their_frames() {
        let mut fa = FrameAllocator::new(&[r(0x4000_0000, MIB)], &[]);
        let total = fa.total_frames();
        let a = fa.alloc(129).unwrap();
        assert_eq!(fa.free_frames(), total - 129);
        // The trimmed tail of the 256-frame block is usable.
        let rest = drain(&mut fa);
        assert_eq!(rest.len(), total - 129);
        assert!(rest.iter().all(|&f| !r(a, 129 * PAGE_SIZE).contains(f)));
        for f in rest {
            fa.free(f, 1).unwrap();
        }
        fa.free(a, 129).unwrap();
        assert_eq!(fa.free_frames(), total);
        // Everything coalesced again: the whole MiB is one block.
        assert_eq!(fa.alloc(256), Some(0x4000_0000));
    }

    #[test]
    fn exhaustion_and_reuse() {
        let mut fa = FrameAllocator::new(
            &[
                r(0x4000_0000, 64 * PAGE_SIZE),
                r(0x8_8000_0000, 16 * PAGE_SIZE),
            ],
            &[],
        );
        let got = drain(&mut fa);
        assert_eq!(got.len(), 80);
        assert_eq!(fa.free_frames(), 0);
        assert_eq!(fa.alloc(1), None);
        fa.free(got[7], 1).unwrap();
        assert_eq!(fa.alloc(1), Some(got[7]));
        assert_eq!(fa.alloc(2), None);
        for a in got {
            fa.free(a, 1).unwrap();
        }
        assert_eq!(fa.free_frames(), 80);
        // Banks are not contiguous: the largest possible block is a bank.
        assert!(fa.alloc(128).is_none());
        assert_eq!(fa.alloc(64), Some(0x4000_0000));
        assert_eq!(fa.alloc(16), Some(0x8_8000_0000));
    }

    #[test]
    fn too_large_requests_fail() {
        let mut fa = FrameAllocator::new(&[r(0x4000_0000, MIB)], &[]);
        assert_eq!(fa.alloc(0), None);
        assert_eq!(fa.alloc(257), None);
        assert_eq!(fa.alloc(usize::MAX), None);
        assert_eq!(fa.alloc_aligned(1, 1 << 63), None);
        assert_eq!(fa.used_frames(), 0);
    }

    #[test]
    fn free_rejects_bad_requests() {
        let ram = [r(0x4000_0000, MIB)];
        let mut fa = FrameAllocator::new(&ram, &[r(0x4000_0000, PAGE_SIZE)]);
        let a = fa.alloc(4).unwrap();
        assert_eq!(fa.free(a + 1, 4), Err(FreeError::Misaligned(a + 1)));
        assert_eq!(fa.free(a, 0), Err(FreeError::ZeroCount));
        assert_eq!(
            fa.free(0x1000, 1),
            Err(FreeError::NotManaged {
                addr: 0x1000,
                count: 1
            })
        );
        assert_eq!(
            fa.free(0x4000_0000, 1),
            Err(FreeError::NotManaged {
                addr: 0x4000_0000,
                count: 1
            }),
            "reserved frame"
        );
        assert_eq!(
            fa.free(0x400f_f000, 2),
            Err(FreeError::NotManaged {
                addr: 0x400f_f000,
                count: 2
            }),
            "runs off the end of RAM"
        );
        assert!(matches!(
            fa.free(a, usize::MAX),
            Err(FreeError::NotManaged { .. })
        ));
        assert_eq!(
            fa.free(a + PAGE_SIZE, 1),
            Err(FreeError::NotAllocated(a + PAGE_SIZE))
        );
        assert_eq!(
            fa.free(a, 2),
            Err(FreeError::CountMismatch {
                addr: a,
                allocated: 4,
                freed: 2
            })
        );
        assert_eq!(fa.used_frames(), 4, "refused frees change nothing");
        fa.free(a, 4).unwrap();
        assert_eq!(
            fa.free(a, 4),
            Err(FreeError::NotAllocated(a)),
            "double free"
        );
        assert_eq!(fa.free_frames(), fa.total_frames());
    }

    #[test]
    fn create_destroy_cycles_restore_free_count() {
        let ram = [r(0x4000_0000, 128 * MIB), r(0x8_8000_0000, 64 * MIB)];
        let reserved = [r(0x4000_0000, 2 * MIB), r(0x4400_0000, 0x3000)];
        let mut fa = FrameAllocator::new(&ram, &reserved);
        let start = fa.free_frames();
        for cycle in 0..200usize {
            // A "domain": a big RAM block, some odd-sized pieces and many page-table frames.
            let mut held = vec![(
                fa.alloc_aligned(4096 + cycle % 7, 2 * MIB).unwrap(),
                4096 + cycle % 7,
            )];
            for i in 0..40 {
                let n = 1 + (i * 7 + cycle) % 13;
                held.push((fa.alloc(n).unwrap(), n));
            }
            assert_eq!(
                fa.used_frames(),
                held.iter().map(|&(_, n)| n).sum::<usize>()
            );
            // Free in an order unrelated to allocation to exercise buddy merging.
            held.sort_by_key(|&(a, _)| a ^ (cycle as u64 * 0x5000));
            for (a, n) in held {
                fa.free(a, n).unwrap();
            }
            assert_eq!(fa.free_frames(), start, "cycle {cycle}");
        }
        assert_eq!(fa.used_frames(), 0);
        // No fragmentation left behind: the largest block is allocatable again.
        assert!(fa.alloc(8192).is_some());
    }
}
