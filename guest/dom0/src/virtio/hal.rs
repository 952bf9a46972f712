//! The `virtio-drivers` HAL: DMA memory from dom0's heap, which is dom0's RAM.
//!
//! dom0's RAM is identity-mapped in its own stage 1 and, under Ferrite, 1:1 in stage 2 too, so a
//! buffer's virtual address is the physical address a device must use: sharing a buffer is
//! handing over its address, with no bounce buffer. Devices are taken to be cache-coherent
//! (virtio-mmio on QEMU is); a board with non-coherent DMA would need cache maintenance here.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

pub struct Dom0Hal;

fn layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout")
}

// SAFETY: `dma_alloc` returns fresh, zeroed, page-aligned heap memory that nothing else aliases
// until `dma_dealloc`; the physical address equals the virtual one (identity map over RAM);
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
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
