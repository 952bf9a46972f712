//! Ferrite's heap (`buddy_system_allocator`), for its own data: page tables, device-tree
//! results, domains, vCPUs and each domain's per-frame records.
//!
//! It starts on an arena in the image's BSS, so it works before the frame allocator exists.
//! An allocation the heap cannot satisfy grows it from the frame allocator and is tried once
//! more ([`Heap::alloc`]): a domain's records grow with its memory (about 16 bytes per 4 KiB
//! frame, more while it is built), so a fixed arena would cap the size of a domain. Frames
//! given to the heap stay there, reused by later allocations.

use super::region::Region;
use buddy_system_allocator::LockedHeap;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};

const ARENA_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct Arena([u8; ARENA_SIZE]);

#[unsafe(link_section = ".noinit.heap")]
static ARENA: crate::arch::boot::BootShared<Arena> =
    crate::arch::boot::BootShared::new(Arena([0; ARENA_SIZE]));

#[global_allocator]
static HEAP: Heap = Heap(LockedHeap::empty());

/// Bytes the heap took from the frame allocator since boot.
static GROWN: AtomicU64 = AtomicU64::new(0);

/// The smallest growth: one 2 MiB block, so that small allocations do not each take frames.
const MIN_GROWTH: usize = 2 << 20;

/// The buddy heap, grown on demand.
struct Heap(LockedHeap<32>);

// SAFETY: allocation and deallocation are the buddy heap's; growth only adds memory that the
// frame allocator handed over for good (`crate::boot::heap_frames`), mapped normal RAM.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            return p;
        }
        // The heap's lock is released here, so taking the frame allocator's cannot deadlock
        // with a CPU that holds it and waits for the heap.
        let want = (layout.size() + layout.align())
            .next_power_of_two()
            .max(MIN_GROWTH);
        let Some(r) = crate::boot::heap_frames(want) else {
            return p;
        };
        // SAFETY: the frames are the heap's from now on, mapped and used by nothing else.
        unsafe { grow(r) };
        GROWN.fetch_add(r.size, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// The boot arena's place in memory (it is inside the image's BSS).
pub fn arena() -> Region {
    Region::new(ARENA.get() as u64, ARENA_SIZE as u64)
}

/// Gives the boot arena to the allocator. Called once, on the boot CPU, with the MMU on.
pub fn init() {
    let a = arena();
    // SAFETY: the arena is a static used for nothing else, and this runs once.
    unsafe { HEAP.0.lock().init(a.start as usize, a.size as usize) };
}

/// Adds memory (frames handed over by the frame allocator, never to be returned) to the heap.
///
/// # Safety
/// `r` must be mapped normal memory that nothing else uses.
unsafe fn grow(r: Region) {
    // SAFETY: forwarded from the caller.
    unsafe {
        HEAP.0
            .lock()
            .add_to_heap(r.start as usize, r.end() as usize)
    };
}

/// Bytes the heap took from the frame allocator since boot (its arena is not counted).
pub fn grown() -> u64 {
    GROWN.load(Ordering::Relaxed)
}

/// (bytes in use, bytes managed).
pub fn usage() -> (usize, usize) {
    let h = HEAP.0.lock();
    (h.stats_alloc_actual(), h.stats_total_bytes())
}
