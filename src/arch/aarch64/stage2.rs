//! Stage-2 translation: a domain's guest-physical (IPA) space, with `aarch64-paging`'s Stage2
//! regime, and the VTCR/VTTBR that select it.
//!
//! dom0 is mapped 1:1 (IPA == PA, as Xen does on Arm) so the DMA addresses its drivers give to
//! passed-through devices are right without an IOMMU. Tables come from Ferrite's heap, which is
//! identity-mapped, so a table's virtual address is its physical address.

use crate::mm::region::Region;
use aarch64_paging::descriptor::Stage2Attributes as S2;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{MemoryRegion, Stage2};
use core::arch::asm;

/// IPA bits and the level the walk starts at. With 44 or more PA bits, a level-0 root covers
/// them (up to 48). Below that (Cortex-A53: 40 bits) a level-0 start is not allowed and 40 bits
/// at level 1 would need concatenated root tables, which `aarch64-paging` does not build: such
/// CPUs get 39 bits (512 GiB) from a single level-1 root.
pub fn ipa_bits_and_root_level() -> (u32, usize) {
    match super::cpu::pa_bits() {
        b if b >= 44 => (b.min(48), 0),
        _ => (39, 1),
    }
}

pub fn ipa_bits() -> u32 {
    ipa_bits_and_root_level().0
}

/// VTCR_EL2: 4 KiB granule, inner-shareable write-back walks, 8-bit VMIDs.
pub fn vtcr() -> u64 {
    let (bits, level) = ipa_bits_and_root_level();
    let t0sz = 64 - bits as u64;
    let sl0 = if level == 0 { 0b10 } else { 0b01 };
    let ps = super::cpu::pa_range_field().min(5);
    (1 << 31) | (ps << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | (sl0 << 6) | t0sz
}

pub struct Stage2Map {
    map: IdMap<Stage2>,
    vmid: u16,
}

#[derive(Debug)]
pub struct MapError(pub Region);

fn ram() -> S2 {
    S2::VALID
        | S2::ACCESS_FLAG
        | S2::SH_INNER
        | S2::MEMATTR_NORMAL_OUTER_WB
        | S2::MEMATTR_NORMAL_INNER_WB
        | S2::S2AP_ACCESS_RW
}

fn device() -> S2 {
    S2::VALID | S2::ACCESS_FLAG | S2::MEMATTR_DEVICE_nGnRE | S2::S2AP_ACCESS_RW | S2::XN
}

impl Stage2Map {
    pub fn new(vmid: u16) -> Self {
        Self {
            map: IdMap::new(ipa_bits_and_root_level().1, Stage2),
            vmid,
        }
    }

    fn map(&mut self, r: &Region, flags: S2) -> Result<(), MapError> {
        let limit = 1u64 << ipa_bits();
        if r.end() > limit {
            return Err(MapError(*r));
        }
        self.map
            .map_range(
                &MemoryRegion::new(r.start as usize, r.end() as usize),
                flags,
            )
            .map_err(|_| MapError(*r))
    }

    /// Maps RAM 1:1 (normal write-back memory, read/write/execute).
    pub fn map_ram(&mut self, r: &Region) -> Result<(), MapError> {
        self.map(r, ram())
    }

    /// Maps a passed-through device 1:1.
    pub fn map_device(&mut self, r: &Region) -> Result<(), MapError> {
        self.map(r, device())
    }

    /// Maps `ipa` to a different physical frame range (the GICv2 virtual CPU interface appears
    /// to the guest at the CPU interface's address).
    pub fn map_device_at(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), MapError> {
        let r = Region::new(ipa, size);
        // A linear offset is all aarch64-paging's IdMap cannot express, so build the entries
        // at the identity address and rewrite their output address.
        self.map(&r, device())?;
        let delta = pa.wrapping_sub(ipa) as usize;
        self.map
            .modify_range(
                &MemoryRegion::new(r.start as usize, r.end() as usize),
                &|_, d| {
                    if d.is_table() || !d.flags().contains(S2::VALID) {
                        return Ok(());
                    }
                    let out = d.output_address().0.wrapping_add(delta);
                    d.set(aarch64_paging::descriptor::PhysicalAddress(out), d.flags())
                },
            )
            .map_err(|_| MapError(r))
    }

    /// Maps the 4 KiB page at `ipa` to the machine frame `pa` (normal memory, never
    /// executable; read-only unless `writable`): a granted frame in dom0's grant window. The
    /// entry is written invalid, then given its frame and made valid, so no walk ever sees it
    /// point anywhere else; `ipa` must be unmapped.
    pub fn map_page_at(&mut self, ipa: u64, pa: u64, writable: bool) -> Result<(), MapError> {
        let r = Region::new(ipa, 4096);
        if r.end() > 1u64 << ipa_bits() || !ipa.is_multiple_of(4096) || !pa.is_multiple_of(4096) {
            return Err(MapError(r));
        }
        let range = MemoryRegion::new(ipa as usize, ipa as usize + 4096);
        let ap = if writable {
            S2::S2AP_ACCESS_RW
        } else {
            S2::S2AP_ACCESS_RO
        };
        let flags = (ram() - S2::VALID - S2::S2AP_ACCESS_RW) | ap | S2::XN;
        self.map.map_range(&range, flags).map_err(|_| MapError(r))?;
        self.map
            .modify_range(&range, &|_, d| {
                if d.is_table() {
                    return Ok(());
                }
                // Our attributes, as map_range left them, made a valid level-3 page.
                d.set(
                    aarch64_paging::descriptor::PhysicalAddress(pa as usize),
                    d.flags() | S2::VALID | S2::TABLE_OR_PAGE,
                )
            })
            .map_err(|_| MapError(r))?;
        // The walker must see the new entry before the guest is told where it is.
        // SAFETY: barriers only.
        unsafe { asm!("dsb ishst", "isb", options(nostack)) };
        Ok(())
    }

    /// Unmaps the page at `ipa` (the caller invalidates the TLBs: [`flush_ipa`]).
    pub fn unmap_page(&mut self, ipa: u64) -> Result<(), MapError> {
        let r = Region::new(ipa, 4096);
        let range = MemoryRegion::new(ipa as usize, ipa as usize + 4096);
        self.map
            .modify_range(&range, &|_, d| {
                if d.is_table() {
                    return Ok(());
                }
                d.set(aarch64_paging::descriptor::PhysicalAddress(0), S2::empty())
            })
            .map_err(|_| MapError(r))
    }

    /// VTTBR_EL2: the root table and the VMID.
    pub fn vttbr(&self) -> u64 {
        self.map.root_address().0 as u64 | ((self.vmid as u64) << 48)
    }
}

/// Invalidates, on every CPU, what the current VMID's TLBs hold for guest-physical page `ipa`
/// (its stage-2 entry and the combined entries built on it). The caller's domain is the one
/// loaded (VTTBR_EL2), as it is during its own hypercall.
pub fn flush_ipa(ipa: u64) {
    // SAFETY: TLB maintenance for the current VMID only: it drops cached translations, never
    // makes any memory reachable.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi ipas2e1is, {ipa}",
            "dsb ish",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            ipa = in(reg) ipa >> 12,
            options(nostack),
        );
    }
}

/// Loads a domain's stage 2 on this CPU; with `invalidate`, first drops this VMID's stage-1
/// entries on this CPU (another vCPU of the domain made them: `mm::tlb`).
pub fn activate(vttbr: u64, invalidate: bool) {
    // SAFETY: VTCR/VTTBR only affect EL1/EL0 translation, which runs only when a vCPU is
    // entered; the invalidation is local and of the VMID just loaded, so it only makes later
    // walks re-read that domain's tables.
    unsafe {
        asm!(
            "msr vtcr_el2, {vtcr}",
            "msr vttbr_el2, {vttbr}",
            "isb",
            vtcr = in(reg) vtcr(),
            vttbr = in(reg) vttbr,
            options(nostack),
        );
        if invalidate {
            asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack));
        }
    }
}
