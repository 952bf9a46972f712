//! dom0's heap (`buddy_system_allocator`) on part of its RAM: page tables, device-tree results,
//! vCPU stacks and the virtio rings and buffers (dom0's RAM is identity-mapped, so heap memory
//! is also valid DMA memory).
//!
//! The heap goes right after the image, in the GiB the early map already covers, clear of the
//! device tree and of every reserved range, so it works before the real map is built.

use crate::dt::Region;
use buddy_system_allocator::LockedHeap;

/// How much RAM the heap takes when there is room.
pub const HEAP_SIZE: u64 = 32 << 20;
/// Less than this is not worth booting with.
const MIN_HEAP: u64 = 2 << 20;
const ALIGN: u64 = 2 << 20;

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Picks the heap's place: the first 2 MiB-aligned stretch of RAM at or after `after` that
/// avoids every range in `avoid`, and is accepted by `usable` (mapped by the early map).
pub fn choose(
    ram: impl Iterator<Item = Region>,
    avoid: &[Region],
    after: u64,
    usable: impl Fn(u64) -> bool,
) -> Option<Region> {
    for bank in ram {
        let mut start = after.max(bank.start).next_multiple_of(ALIGN);
        while start < bank.end() {
            let end = (start + HEAP_SIZE).min(bank.end());
            let want = Region::new(start, end - start);
            match avoid
                .iter()
                .filter(|a| a.overlaps(&want))
                .map(|a| a.end())
                .max()
            {
                Some(past) => start = past.next_multiple_of(ALIGN),
                None => {
                    // Clip to the early-mapped GiBs: the heap is used before the real map.
                    let mut usable_end = start;
                    while usable_end < end && usable(usable_end) {
                        usable_end = (usable_end + ALIGN).min(end);
                    }
                    if usable_end - start >= MIN_HEAP {
                        return Some(Region::new(start, usable_end - start));
                    }
                    start = end.next_multiple_of(ALIGN);
                }
            }
        }
    }
    None
}

/// Gives `r` to the allocator. Called once, on the boot vCPU, with the MMU on.
///
/// # Safety
/// `r` must be mapped normal memory that nothing else uses, for the rest of dom0's life.
pub unsafe fn init(r: Region) {
    // SAFETY: forwarded from the caller.
    unsafe { HEAP.lock().init(r.start as usize, r.size as usize) };
}

/// (bytes in use, bytes managed).
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.stats_alloc_actual(), h.stats_total_bytes())
}
