//! The `virtio-drivers` HAL: DMA memory from dom0's heap, which is dom0's RAM, and the
//! translation of granted pages mapped in Ferrite's grant window to their machine addresses.
//!
//! dom0's RAM is identity-mapped in its own stage 1 and, under Ferrite, 1:1 in stage 2 too, so a
//! heap buffer's virtual address is the physical address a device must use: sharing it is
//! handing over its address, with no bounce buffer. A page of the grant window is different:
//! its guest-physical address is only where dom0 sees another domain's frame, and a device
//! (which sees machine addresses) must be given the frame's machine address, which Ferrite
//! returned when it mapped the page ([`record_grant`]). Devices are taken to be cache-coherent
//! (virtio-mmio on QEMU is); a board with non-coherent DMA would need cache maintenance here.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::collections::BTreeMap;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

pub struct Dom0Hal;

/// Mapped grant-window pages: guest-physical page -> machine page, for pages outside
/// [`WINDOW_MA`]'s reach (a window larger than it, or none declared).
static GRANT_PAGES: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
/// The grant window the device tree declares (its first page; `u64::MAX` for none) and, by
/// page, the machine page mapped there (0: none). Every buffer of every blkback request is
/// looked up here, so it is an index without a lock rather than a search under one.
static WINDOW_BASE: AtomicU64 = AtomicU64::new(u64::MAX);
const WINDOW_PAGES: usize = 4096;
static WINDOW_MA: [AtomicU64; WINDOW_PAGES] = [const { AtomicU64::new(0) }; WINDOW_PAGES];
/// The lowest page ever recorded: dom0's own buffers lie below the grant window (the top of
/// its largest RAM bank), so most of their lookups end here, without the lock.
static GRANT_LOW: AtomicU64 = AtomicU64::new(u64::MAX);

const PAGE: u64 = PAGE_SIZE as u64;

/// The grant window (from the device tree's `/hypervisor` node), before any page is mapped.
pub fn set_grant_window(start: u64, size: u64) {
    if start.is_multiple_of(PAGE) && size / PAGE <= WINDOW_PAGES as u64 {
        WINDOW_BASE.store(start, Ordering::Release);
    }
}

/// The slot of `page` in [`WINDOW_MA`], if the window holds it.
fn window_slot(page: u64) -> Option<&'static AtomicU64> {
    let i = page.checked_sub(WINDOW_BASE.load(Ordering::Acquire))? / PAGE;
    WINDOW_MA.get(usize::try_from(i).ok()?)
}

/// Remembers that the grant-window page at `ipa` is the frame at machine address `ma`, so a
/// buffer in it is shared with a device at `ma` (until [`forget_grant`]).
pub fn record_grant(ipa: u64, ma: u64) {
    let page = ipa & !(PAGE - 1);
    GRANT_LOW.fetch_min(page, Ordering::AcqRel);
    match window_slot(page) {
        Some(slot) => slot.store(ma & !(PAGE - 1), Ordering::Release),
        None => {
            GRANT_PAGES.lock().insert(page, ma & !(PAGE - 1));
        }
    }
}

/// Undoes [`record_grant`], before the page is unmapped.
pub fn forget_grant(ipa: u64) {
    let page = ipa & !(PAGE - 1);
    match window_slot(page) {
        Some(slot) => slot.store(0, Ordering::Release),
        None => {
            GRANT_PAGES.lock().remove(&page);
        }
    }
}

/// The address a device must use for `va`: a grant-window page's machine address, or (dom0's
/// own RAM) `va` itself. A buffer in a granted page must not cross the page's end: the next
/// page of the window is another frame, anywhere.
fn device_address(va: u64, len: usize) -> u64 {
    let page = va & !(PAGE - 1);
    if page < GRANT_LOW.load(Ordering::Acquire) {
        return va;
    }
    let ma = match window_slot(page) {
        Some(slot) => Some(slot.load(Ordering::Acquire)).filter(|&ma| ma != 0),
        None => GRANT_PAGES.lock().get(&page).copied(),
    };
    match ma {
        Some(ma) => {
            assert!(
                (va - page) + len as u64 <= PAGE,
                "virtio: a buffer crosses the end of a granted page"
            );
            ma + (va - page)
        }
        None => va,
    }
}

fn layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout")
}

// SAFETY: `dma_alloc` returns fresh, zeroed, page-aligned heap memory that nothing else aliases
// until `dma_dealloc`; the physical address equals the virtual one (identity map over RAM), and
// a shared grant-window buffer is given its frame's machine address (`device_address`);
// `mmio_phys_to_virt` returns the identity-mapped device address it is given.
unsafe impl Hal for Dom0Hal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has a non-zero size (pages >= 1, as the driver asks).
        let p = unsafe { alloc_zeroed(layout(pages.max(1))) };
        let p = NonNull::new(p).expect("dom0: out of memory for virtio DMA");
        (p.as_ptr() as PhysAddr, p)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the caller passes back what `dma_alloc` returned, with the same page count.
        unsafe { dealloc(vaddr.as_ptr(), layout(pages.max(1))) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("virtio: MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        device_address(buffer.as_ptr() as *mut u8 as u64, buffer.len()) as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
