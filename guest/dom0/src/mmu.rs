//! dom0's stage-1 address space at EL1: an identity map, so that what dom0 hands a device for
//! DMA is the physical address (dom0's RAM is mapped 1:1 by Ferrite's stage 2 too).
//!
//! Two steps. [`early_enable`] runs with the MMU off and no heap: in 1 GiB blocks it maps the
//! GiBs holding the image and the device tree as normal memory and turns the MMU and caches on,
//! so that the console, the device-tree parser and the heap may use atomics and unaligned
//! accesses. [`AddressSpace::build`] then makes the real map with `aarch64-paging`: RAM normal
//! write-back (execute-never except dom0's text, which is read-only), each device Device-nGnRE,
//! nothing else.

use crate::cpu;
use crate::dt::Region;
use crate::entry::{BootShared, MMU_REGS, image_region, text_region};
use aarch64_paging::descriptor::El1Attributes as A;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El1And0, MemoryRegion};
use core::arch::asm;

/// MAIR_EL1: attribute 0 = Device-nGnRE, 1 = Normal write-back read/write-allocate,
/// 2 = Normal non-cacheable.
const MAIR: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
const ATTR_DEVICE: u64 = 0;
const ATTR_NORMAL: u64 = 1;

/// 48-bit virtual addresses, so the root table is at level 0.
const T0SZ: u64 = 16;

/// SCTLR_EL1: the ARMv8.0 RES1 bits (11, 20, 22, 23, 28, 29), plus M (MMU), C (data cache),
/// SA (stack alignment check) and I (instruction cache).
const SCTLR_RES1: u64 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);
const SCTLR: u64 = SCTLR_RES1 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);

/// TCR_EL1: TTBR0 only (EPD1 set: nothing lives in the upper half), 4 KiB granule,
/// inner-shareable write-back walks, IPS from the CPU's physical address range.
fn tcr() -> u64 {
    let ips = cpu::pa_range_field().min(5); // 48 bits is what a level-0 root covers
    (1 << 23) | (ips << 32) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | T0SZ
}

const GIB: u64 = 1 << 30;
const EARLY_L1_TABLES: usize = 4;

#[repr(C, align(4096))]
struct Table([u64; 512]);

static EARLY_L0: BootShared<Table> = BootShared::new(Table([0; 512]));
static EARLY_L1: BootShared<[Table; EARLY_L1_TABLES]> =
    BootShared::new([const { Table([0; 512]) }; EARLY_L1_TABLES]);
static EARLY_L1_USED: BootShared<usize> = BootShared::new(0);

fn block(pa: u64, attr: u64) -> u64 {
    let common = (pa & !(GIB - 1)) | 0b01 | (attr << 2) | (1 << 10);
    if attr == ATTR_DEVICE {
        common | (0b11 << 53) // PXN, UXN
    } else {
        common | (0b11 << 8) // inner shareable
    }
}

/// Maps the 1 GiB block holding `pa`, unless one is already mapped there (normal memory wins).
///
/// # Safety
/// One vCPU, nothing else touching the early tables: before the secondaries start. With the MMU
/// on, only invalid entries are filled (no break-before-make is needed for those).
unsafe fn early_map(pa: u64, attr: u64) {
    // SAFETY: see the function contract; these statics are only touched here during boot.
    let (l0, l1s, used) = unsafe {
        (
            &mut *EARLY_L0.get(),
            &mut *EARLY_L1.get(),
            &mut *EARLY_L1_USED.get(),
        )
    };
    let i0 = ((pa >> 39) & 511) as usize;
    let i1 = ((pa >> 30) & 511) as usize;
    if l0.0[i0] == 0 {
        if *used == EARLY_L1_TABLES {
            return;
        }
        l0.0[i0] = (&raw const l1s[*used] as u64) | 0b11;
        *used += 1;
    }
    let l1 = (l0.0[i0] & 0x0000_ffff_ffff_f000) as *mut u64;
    // SAFETY: l1 is one of EARLY_L1's tables and i1 < 512.
    unsafe {
        if *l1.add(i1) == 0 {
            *l1.add(i1) = block(pa, attr);
        }
    }
}

/// Builds the early map and turns the MMU on. Called once, on the boot vCPU, at EL1.
pub fn early_enable(dtb: usize) {
    let (start, end) = image_region();
    // SAFETY: MMU off, one vCPU (secondaries are not started yet).
    unsafe {
        let mut pa = start & !(GIB - 1);
        while pa < end {
            early_map(pa, ATTR_NORMAL);
            pa += GIB;
        }
        if dtb != 0 && dtb.is_multiple_of(8) {
            // The blob's size is in its header (an aligned, big-endian word); map every GiB it
            // spans. A bad size maps one GiB; the parser reports the rest.
            let size = u32::from_be(*(dtb as *const u32).add(1)) as u64;
            let size = if size == 0 || size > 64 << 20 {
                1
            } else {
                size
            };
            let mut pa = dtb as u64 & !(GIB - 1);
            while pa < dtb as u64 + size {
                early_map(pa, ATTR_NORMAL);
                pa += GIB;
            }
        }
        let regs = &mut *MMU_REGS.get();
        regs.ttbr0 = EARLY_L0.get() as u64;
        regs.tcr = tcr();
        regs.mair = MAIR;
        regs.sctlr = SCTLR;
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            mair = in(reg) regs.mair,
            tcr = in(reg) regs.tcr,
            ttbr = in(reg) regs.ttbr0,
            sctlr = in(reg) regs.sctlr,
            options(nostack),
        );
    }
}

/// Adds the console's GiB to the early map as device memory, so dom0 can report problems before
/// the real map exists. Does nothing if that GiB is already mapped (as RAM).
pub fn early_map_device(pa: u64) {
    // SAFETY: boot vCPU only, before the secondaries; an invalid entry becomes valid.
    unsafe {
        early_map(pa, ATTR_DEVICE);
        asm!("dsb ishst", "isb", options(nostack, preserves_flags));
    }
}

/// True if `pa` lies in a GiB the early map covers as normal memory (the heap must, until the
/// real map is on).
pub fn early_mapped_normal(pa: u64) -> bool {
    // SAFETY: reading the early tables on the one vCPU that writes them.
    let l0 = unsafe { &*EARLY_L0.get() };
    let e0 = l0.0[((pa >> 39) & 511) as usize];
    if e0 == 0 {
        return false;
    }
    let l1 = (e0 & 0x0000_ffff_ffff_f000) as *const u64;
    // SAFETY: l1 is one of EARLY_L1's tables; the index is below 512.
    let e1 = unsafe { *l1.add(((pa >> 30) & 511) as usize) };
    e1 != 0 && (e1 >> 2) & 7 == ATTR_NORMAL
}

/// dom0's final address space, kept for its whole life.
pub struct AddressSpace {
    map: IdMap<El1And0>,
}

fn normal() -> A {
    A::VALID | A::ACCESSED | A::INNER_SHAREABLE | A::ATTRIBUTE_INDEX_1
}

fn device() -> A {
    A::VALID | A::ACCESSED | A::ATTRIBUTE_INDEX_0 | A::UXN | A::PXN
}

fn mem(r: &Region) -> MemoryRegion {
    MemoryRegion::new(r.start as usize, r.end() as usize)
}

/// A region `aarch64-paging` refused.
#[derive(Debug)]
pub struct MapFailed {
    pub what: &'static str,
    pub region: Region,
}

impl AddressSpace {
    /// Builds the map: `ram` as normal memory (execute-never), dom0's text executable and
    /// read-only, each of `devices` as device memory. Nothing else is mapped, so a stray access
    /// is a translation fault that dom0 reports.
    pub fn build(ram: &[Region], devices: &[(&'static str, Region)]) -> Result<Self, MapFailed> {
        let mut map = IdMap::with_asid(0, 0, El1And0);
        let (text_start, text_end) = text_region();
        let (start, end) = image_region();
        let image = Region::new(start, end - start);
        let text = Region::new(text_start, text_end - text_start);
        let mut put = |r: &Region, flags: A, what| {
            map.map_range(&mem(r), flags)
                .map_err(|_| MapFailed { what, region: *r })
        };
        for r in ram {
            put(r, normal() | A::UXN | A::PXN, "RAM")?;
        }
        // The image is always mapped, even if the memory nodes missed it.
        put(&image, normal() | A::UXN | A::PXN, "dom0's image")?;
        put(&text, normal() | A::READ_ONLY | A::UXN, "dom0's text")?;
        for (what, d) in devices {
            put(d, device(), what)?;
        }
        Ok(Self { map })
    }

    /// Switches this vCPU, and every secondary started later, to this map.
    ///
    /// The switch from the early map runs with the MMU briefly off: the two maps translate the
    /// same addresses with different block sizes, and holding both in the TLB at once could
    /// raise a TLB-conflict abort.
    pub fn activate(&mut self) {
        let root = self.map.root_address().0 as u64;
        // SAFETY: MMU_REGS is read by secondaries that are not started yet.
        unsafe { (*MMU_REGS.get()).ttbr0 = root };
        // SAFETY: the new map covers all the old one did that is in use, with the same attributes;
        // with the MMU off the sequence makes no data access, and the walks after are cacheable.
        unsafe {
            asm!(
                "dsb sy",
                "mrs {tmp}, sctlr_el1",
                "bic {tmp}, {tmp}, #1",
                "bic {tmp}, {tmp}, #4",
                "msr sctlr_el1, {tmp}",
                "isb",
                "msr ttbr0_el1, {root}",
                "isb",
                "tlbi vmalle1",
                "dsb nsh",
                "isb",
                "orr {tmp}, {tmp}, #1",
                "orr {tmp}, {tmp}, #4",
                "msr sctlr_el1, {tmp}",
                "isb",
                root = in(reg) root,
                tmp = out(reg) _,
                options(nostack),
            );
        }
        self.map.mark_active();
    }
}

/// Cleans and invalidates the data cache over [start, end) to the point of coherency, for data
/// read by a vCPU whose MMU (and so cache) is still off.
pub fn clean_dcache(start: u64, end: u64) {
    let line = cpu::dcache_line_size();
    let mut a = start & !(line - 1);
    while a < end {
        // SAFETY: cache maintenance by VA on mapped memory has no other effect.
        unsafe { asm!("dc civac, {a}", a = in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}
