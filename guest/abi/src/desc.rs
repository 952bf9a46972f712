//! aarch64 stage-1 descriptors (EL1&0 regime, 4 KiB granule, 48-bit VA and PA) as a PV guest
//! writes them through `MMU_UPDATE`: the bit positions, the attribute index Ferrite's MAIR_EL1
//! gives normal memory, and constructors for the shapes Ferrite accepts. The rules themselves
//! (which bits must be zero, what may be mapped) are in docs/abi.md.

/// Bit 0: the descriptor is valid. An invalid descriptor's other bits are the guest's.
pub const VALID: u64 = 1 << 0;
/// Bit 1 at levels 0..2: a table descriptor (else a block); at level 3 it must be set (page).
pub const TABLE: u64 = 1 << 1;
/// Bit 1 at level 3: a page descriptor.
pub const PAGE: u64 = 1 << 1;
pub const ATTR_INDX_SHIFT: u32 = 2;
pub const ATTR_INDX_MASK: u64 = 0b111 << ATTR_INDX_SHIFT;
/// Bit 5: NS; must be 0.
pub const NS: u64 = 1 << 5;
/// AP[1] (bit 6): accessible at EL0.
pub const AP_EL0: u64 = 1 << 6;
/// AP[2] (bit 7): read-only. A leaf without it is writable, which Ferrite counts as a writable
/// mapping of every frame it covers.
pub const AP_RO: u64 = 1 << 7;
pub const SH_SHIFT: u32 = 8;
pub const SH_MASK: u64 = 0b11 << SH_SHIFT;
/// Inner shareable: the shareability Ferrite expects for normal memory.
pub const SH_INNER: u64 = 0b11 << SH_SHIFT;
pub const SH_OUTER: u64 = 0b10 << SH_SHIFT;
/// Access flag.
pub const AF: u64 = 1 << 10;
/// Not global: the translation belongs to the current ASID.
pub const NG: u64 = 1 << 11;
/// Output address bits [47:12].
pub const OA_MASK: u64 = 0x0000_FFFF_FFFF_F000;
/// Bit 50: BTI guarded page.
pub const GP: u64 = 1 << 50;
/// Bit 51: dirty bit modifier; Ferrite refuses it (the MMU could make a read-only entry
/// writable).
pub const DBM: u64 = 1 << 51;
/// Bit 52: contiguous hint.
pub const CONTIGUOUS: u64 = 1 << 52;
pub const PXN: u64 = 1 << 53;
pub const UXN: u64 = 1 << 54;
/// Bits 55..58: ignored by the MMU, free for the guest's own use in leaf descriptors.
pub const SOFTWARE_MASK: u64 = 0xF << 55;

/// Table descriptor attributes (bits 59..63).
pub const PXN_TABLE: u64 = 1 << 59;
pub const UXN_TABLE: u64 = 1 << 60;
/// APTable[0]: no EL0 access below.
pub const AP_TABLE_NO_EL0: u64 = 1 << 61;
/// APTable[1]: read-only below.
pub const AP_TABLE_RO: u64 = 1 << 62;

/// Ferrite's MAIR_EL1 for PV guests (fixed, the guest cannot change it): index 0
/// Device-nGnRE, 1 Normal write-back read/write-allocate, 2 Normal non-cacheable.
pub const MAIR: u64 = 0x00_00_00_00_00_44_FF_04;
pub const ATTR_DEVICE: u64 = 0;
pub const ATTR_NORMAL_WB: u64 = 1;
pub const ATTR_NORMAL_NC: u64 = 2;
/// The attribute indexes Ferrite accepts in a PV guest's descriptors, as a bit mask: only
/// normal write-back memory (see docs/abi.md for why not non-cacheable).
pub const NORMAL_ATTR_MASK: u8 = 1 << ATTR_NORMAL_WB;

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Entries per table.
pub const ENTRIES: usize = 512;

/// log2 of the size one entry of a level-`level` table maps (39, 30, 21, 12).
pub const fn level_shift(level: u8) -> u32 {
    PAGE_SHIFT + 9 * (3 - level as u32)
}

/// The index of `va` in a level-`level` table.
pub const fn index(va: u64, level: u8) -> usize {
    ((va >> level_shift(level)) & 0x1FF) as usize
}

/// The attribute index field.
pub const fn attr_indx(i: u64) -> u64 {
    (i << ATTR_INDX_SHIFT) & ATTR_INDX_MASK
}

/// Normal write-back, inner shareable, accessed: the usual attributes of RAM.
pub const NORMAL: u64 = attr_indx(ATTR_NORMAL_WB) | SH_INNER | AF;

/// A table descriptor pointing at the next-level table at machine address `table`.
pub const fn table(table: u64) -> u64 {
    (table & OA_MASK) | TABLE | VALID
}

/// A level-3 page descriptor for the frame at machine address `pa` with `attrs` (e.g.
/// [`NORMAL`] `| AP_RO | UXN`).
pub const fn page(pa: u64, attrs: u64) -> u64 {
    (pa & OA_MASK) | attrs | PAGE | VALID
}

/// A block descriptor (level 1: 1 GiB, level 2: 2 MiB) for `pa`, which must be aligned to
/// the block's size.
pub const fn block(pa: u64, attrs: u64) -> u64 {
    (pa & OA_MASK) | attrs | VALID
}

/// The next-level table (or output address) a descriptor holds.
pub const fn output_address(desc: u64) -> u64 {
    desc & OA_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(table(0x4000_1000), 0x4000_1003);
        assert_eq!(page(0x4000_2000, NORMAL | AP_RO), 0x4000_2787);
        assert_eq!(block(0x4020_0000, NORMAL) & 0b11, 0b01);
        assert_eq!(output_address(page(0x1234_5000, NORMAL | UXN)), 0x1234_5000);
        assert_eq!(level_shift(0), 39);
        assert_eq!(level_shift(3), 12);
        let va = 0x0000_7f12_3456_7000u64;
        assert_eq!(index(va, 0), (va >> 39) as usize & 511);
        assert_eq!(index(va, 3), 0x167);
        assert_eq!((MAIR >> (8 * ATTR_NORMAL_WB)) & 0xff, 0xff);
        assert_eq!(MAIR & 0xff, 0x04);
    }
}
