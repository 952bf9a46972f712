//! Ferrite's own (EL2 stage-1) address space: an identity map.
//!
//! Two steps. [`early_enable`] runs with the MMU off and no heap: it maps, in 1 GiB blocks, the
//! image, the device tree and the early console, and turns the MMU and caches on so that the
//! rest of boot may use atomics and the heap. [`build`] then makes the real map with
//! `aarch64-paging` from what the device tree says: RAM as normal write-back memory (execute-never
//! except Ferrite's text, which is read-only), devices as Device-nGnRE, nothing else mapped.

use super::boot::{BootShared, MMU_REGS, image_region};
use crate::mm::region::Region;
use aarch64_paging::descriptor::El23Attributes as A;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion};
use core::arch::asm;

/// MAIR_EL2: attribute 0 = Device-nGnRE, 1 = Normal write-back read/write-allocate,
/// 2 = Normal non-cacheable.
const MAIR: u64 = 0x04 | (0xff << 8) | (0x44 << 16);
const ATTR_DEVICE: u64 = 0;
const ATTR_NORMAL: u64 = 1;

/// 48-bit virtual addresses, so the root table is at level 0.
const T0SZ: u64 = 16;

/// SCTLR_EL2 (non-VHE): RES1 bits, plus M (MMU), C (data cache), SA (stack alignment check),
/// I (instruction cache). WXN stays off: the map gives W^X itself.
const SCTLR_RES1: u64 = 0x30c5_0830;
const SCTLR: u64 = SCTLR_RES1 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);

fn tcr() -> u64 {
    let parange = super::cpu::pa_range_field().min(5); // 48 bits is what a level-0 root covers
    (1 << 31) | (1 << 23) | (parange << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | T0SZ
}

const GIB: u64 = 1 << 30;
const EARLY_L1_TABLES: usize = 4;

#[repr(C, align(4096))]
struct Table([u64; 512]);

static EARLY_L0: BootShared<Table> = BootShared::new(Table([0; 512]));
static EARLY_L1: BootShared<[Table; EARLY_L1_TABLES]> =
    BootShared::new([const { Table([0; 512]) }; EARLY_L1_TABLES]);

/// The console the build names for its board (`FERRITE_EARLY_UART`), used until the device tree
/// names one, and the only one when the device tree is missing.
pub fn early_uart() -> Option<usize> {
    let s = option_env!("FERRITE_EARLY_UART")?;
    let s = s.trim_start_matches("0x");
    usize::from_str_radix(s, 16).ok().filter(|&a| a != 0)
}

fn block(pa: u64, attr: u64) -> u64 {
    let common = (pa & !(GIB - 1)) | 0b01 | (attr << 2) | (1 << 6) | (1 << 10);
    if attr == ATTR_DEVICE {
        common | (1 << 54)
    } else {
        common | (0b11 << 8)
    }
}

/// Maps the 1 GiB block holding `pa`, unless one is already mapped there (normal memory wins).
///
/// # Safety
/// MMU off, one CPU: plain stores to the early tables, nothing else running.
unsafe fn early_map(pa: u64, attr: u64, used: &mut usize) {
    // SAFETY: see the function contract; these statics are only touched here during boot.
    let (l0, l1s) = unsafe { (&mut *EARLY_L0.get(), &mut *EARLY_L1.get()) };
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

/// Builds the early map and turns the MMU on. Called once, on the boot CPU, at EL2.
pub fn early_enable(dtb: usize) {
    let (start, end) = image_region();
    let mut used = 0;
    // SAFETY: MMU off, single CPU (secondaries are not started yet).
    unsafe {
        let mut pa = start & !(GIB - 1);
        while pa < end {
            early_map(pa, ATTR_NORMAL, &mut used);
            pa += GIB;
        }
        if dtb != 0 {
            // The blob's size is in its header; map every GiB it spans.
            let size = u32::from_be(*(dtb as *const u32).add(1)) as u64;
            let size = if size == 0 || size > 64 << 20 {
                1
            } else {
                size
            };
            let mut pa = dtb as u64 & !(GIB - 1);
            while pa < dtb as u64 + size {
                early_map(pa, ATTR_NORMAL, &mut used);
                pa += GIB;
            }
        }
        if let Some(uart) = early_uart() {
            early_map(uart as u64, ATTR_DEVICE, &mut used);
        }
        let regs = &mut *MMU_REGS.get();
        regs.ttbr0 = EARLY_L0.get() as u64;
        regs.tcr = tcr();
        regs.mair = MAIR;
        regs.sctlr = SCTLR;
        asm!(
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr}",
            "isb",
            "tlbi alle2",
            "dsb nsh",
            "isb",
            "msr sctlr_el2, {sctlr}",
            "isb",
            mair = in(reg) regs.mair,
            tcr = in(reg) regs.tcr,
            ttbr = in(reg) regs.ttbr0,
            sctlr = in(reg) regs.sctlr,
            options(nostack),
        );
    }
}

/// Ferrite's final address space. Kept for the life of the system: later work maps more device
/// frames into it.
pub struct AddressSpace {
    map: IdMap<El2>,
}

fn normal() -> A {
    A::VALID | A::ACCESSED | A::INNER_SHAREABLE | A::ATTRIBUTE_INDEX_1 | A::USER_RES1
}

fn device() -> A {
    A::VALID | A::ACCESSED | A::ATTRIBUTE_INDEX_0 | A::USER_RES1 | A::XN
}

fn mem(r: &Region) -> MemoryRegion {
    MemoryRegion::new(r.start as usize, r.end() as usize)
}

#[derive(Debug)]
pub struct MapFailed {
    pub what: &'static str,
    pub region: Region,
}

impl AddressSpace {
    /// Builds the map: `ram` as normal memory (execute-never), Ferrite's text executable and
    /// read-only, each of `devices` as device memory.
    pub fn build(ram: &[Region], devices: &[Region]) -> Result<Self, MapFailed> {
        let mut map = IdMap::new(0, El2);
        let (text_start, text_end) = super::boot::text_region();
        let (start, end) = image_region();
        let image = Region::new(start, end - start);
        let text = Region::new(text_start, text_end - text_start);
        let mut put = |r: &Region, flags: A, what| {
            map.map_range(&mem(r), flags)
                .map_err(|_| MapFailed { what, region: *r })
        };
        for r in ram {
            put(r, normal() | A::XN, "RAM")?;
        }
        // The image is always mapped, even if the device tree's memory nodes missed it.
        put(&image, normal() | A::XN, "Ferrite's image")?;
        put(&text, normal() | A::READ_ONLY, "Ferrite's text")?;
        for d in devices {
            put(d, device(), "a device")?;
        }
        Ok(Self { map })
    }

    /// Switches every later CPU start, and this CPU, to this map.
    ///
    /// The switch from the early map runs with the MMU briefly off: the two maps translate the
    /// same addresses with different block sizes, and holding both in the TLB at once could
    /// raise a TLB-conflict abort on real hardware.
    pub fn activate(&mut self) {
        let root = self.map.root_address().0 as u64;
        // SAFETY: MMU_REGS is read by secondaries that are not started yet.
        unsafe { (*MMU_REGS.get()).ttbr0 = root };
        // SAFETY: the new map covers everything the old one did (image, heap, stack, console),
        // with the same attributes. While the MMU is off the sequence makes no data access, so
        // dirty cache lines need no cleaning: the table walks after it are cacheable.
        unsafe {
            asm!(
                "dsb sy",
                "mrs {tmp}, sctlr_el2",
                "bic {tmp}, {tmp}, #1",
                "bic {tmp}, {tmp}, #4",
                "msr sctlr_el2, {tmp}",
                "isb",
                "msr ttbr0_el2, {root}",
                "isb",
                "tlbi alle2",
                "dsb nsh",
                "isb",
                "orr {tmp}, {tmp}, #1",
                "orr {tmp}, {tmp}, #4",
                "msr sctlr_el2, {tmp}",
                "isb",
                root = in(reg) root,
                tmp = out(reg) _,
                options(nostack),
            );
        }
        self.map.mark_active();
    }

    /// Maps one more device region (drivers added after boot).
    #[allow(dead_code)] // first user: dom0's device pass-through
    pub fn map_device(&mut self, r: &Region) -> Result<(), MapFailed> {
        self.map
            .map_range(&mem(r), device())
            .map_err(|_| MapFailed {
                what: "a device",
                region: *r,
            })?;
        super::cpu::tlb_flush_el2();
        Ok(())
    }
}

/// Cleans and invalidates the data cache over [start, end) to the point of coherency.
pub fn clean_dcache(start: u64, end: u64) {
    let line = super::cpu::dcache_line_size();
    let mut a = start & !(line - 1);
    while a < end {
        // SAFETY: cache maintenance by VA on mapped memory has no other effect.
        unsafe { asm!("dc civac, {a}", a = in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}
