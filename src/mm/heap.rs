//! Ferrite's heap (`buddy_system_allocator`), for its own data: page tables, device-tree
//! results, and later domains and vCPUs.
//!
//! It starts on an arena in the image's BSS, so it works before the frame allocator exists;
//! [`grow`] adds frames to it later.

use super::region::Region;
use buddy_system_allocator::LockedHeap;

const ARENA_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena([u8; ARENA_SIZE]);

#[unsafe(link_section = ".noinit.heap")]
static ARENA: crate::arch::boot::BootShared<Arena> =
    crate::arch::boot::BootShared::new(Arena([0; ARENA_SIZE]));

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// The boot arena's place in memory (it is inside the image's BSS).
pub fn arena() -> Region {
    Region::new(ARENA.get() as u64, ARENA_SIZE as u64)
}

/// Gives the boot arena to the allocator. Called once, on the boot CPU, with the MMU on.
pub fn init() {
    let a = arena();
    // SAFETY: the arena is a static used for nothing else, and this runs once.
    unsafe { HEAP.lock().init(a.start as usize, a.size as usize) };
}

/// Adds memory (frames handed over by the frame allocator, never to be returned) to the heap.
///
/// # Safety
/// `r` must be mapped normal memory that nothing else uses.
#[allow(dead_code)] // the first user is the domain builder
pub unsafe fn grow(r: Region) {
    // SAFETY: forwarded from the caller.
    unsafe { HEAP.lock().add_to_heap(r.start as usize, r.end() as usize) };
}

/// (bytes in use, bytes managed).
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.stats_alloc_actual(), h.stats_total_bytes())
}
