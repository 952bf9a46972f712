//! Stage-1 descriptors of the EL1&0 regime (4 KiB granule, 48-bit VA and PA, no LPA2) as the
//! validator sees them: what a raw 64-bit value at a given level and index means, and whether
//! Ferrite accepts it at all. Ownership and typing come later (`refs`); this is syntax.

use super::Errno;
use ferrite_abi::desc as d;

/// Table levels: 0 is the root (TTBR), 3 holds pages.
pub type Level = u8;
pub const LEVELS: Level = 4;
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
pub const ENTRIES: usize = 512;

/// Bits that must be zero in every valid leaf: NS (5), OA[51:48] (48, 49), DBM (51), PBHA
/// (59..62) and bit 63. DBM because hardware dirty-state management would let the MMU itself
/// turn a read-only entry writable; the others because Ferrite gives them no meaning and a
/// later architecture might.
pub(super) const LEAF_RES0: u64 = d::NS | (0b11 << 48) | d::DBM | (0xF << 59) | (1 << 63);
/// Bits that must be zero in a table descriptor: the ignored [11:2] (FEAT_HAFT would give
/// bit 10 a meaning), [58:48] and NSTable (63).
const TABLE_RES0: u64 = (0x3FF << 2) | (0x7FF << 48) | (1 << 63);

/// A descriptor's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Desc {
    /// Bit 0 clear: the MMU ignores the rest, which is the guest's.
    Invalid,
    /// A table descriptor: the next-level table's machine address.
    Table { next: u64 },
    /// A block or page, possibly with the contiguous hint.
    Leaf(Leaf),
}

/// A block or page descriptor, reduced to what ownership and typing need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First machine address the entry can make the MMU reach. With the contiguous hint this
    /// is the start of the 16-entry span: a TLB may serve any address of the span from this
    /// one entry, so the whole span counts as mapped by it.
    pub base: u64,
    /// Frames from `base` the entry covers: 1, 512 (2 MiB), 262144 (1 GiB), 16 times that
    /// with the contiguous hint.
    pub frames: u64,
    /// AP[2] clear: writable at EL1 (and at EL0 with AP[1]). APTable bits above are not
    /// counted on: the same table may sit under another parent without them.
    pub writable: bool,
    pub contiguous: bool,
}

/// The size one entry of a level-`level` table maps, as a shift.
pub const fn level_shift(level: Level) -> u32 {
    PAGE_SHIFT + 9 * (3 - level as u32)
}

/// Decodes `raw` found (or to be written) at entry `index` of a level-`level` table.
/// `normal_attr_mask` has bit i set when MAIR attribute index i is normal memory the domain
/// may use. Every refusal is `Inval` (malformed) or `Perm` (a device attribute).
#[inline]
pub fn decode(raw: u64, level: Level, index: usize, normal_attr_mask: u8) -> Result<Desc, Errno> {
    debug_assert!(level < LEVELS && index < ENTRIES);
    if raw & d::VALID == 0 {
        return Ok(Desc::Invalid);
    }
    let table_bit = raw & d::TABLE != 0;
    if table_bit && level < 3 {
        if raw & TABLE_RES0 != 0 {
            return Err(Errno::Inval);
        }
        return Ok(Desc::Table {
            next: raw & d::OA_MASK,
        });
    }
    // Blocks exist at levels 1 and 2 only for this granule (level 0 and level-3 "blocks" are
    // reserved encodings).
    if !table_bit && level != 1 && level != 2 {
        return Err(Errno::Inval);
    }
    if raw & LEAF_RES0 != 0 {
        return Err(Errno::Inval);
    }
    let attr = ((raw & d::ATTR_INDX_MASK) >> d::ATTR_INDX_SHIFT) as u8;
    if normal_attr_mask & (1 << attr) == 0 {
        return Err(Errno::Perm);
    }
    // Normal memory must be shareable: a non-shareable mapping need not be coherent with
    // Ferrite's view, so content Ferrite validated might not be what another CPU's walker
    // reads. 0b01 is reserved.
    let sh = (raw & d::SH_MASK) >> d::SH_SHIFT;
    if sh < 0b10 {
        return Err(Errno::Inval);
    }
    let shift = level_shift(level);
    let oa = raw & d::OA_MASK;
    // A block's low output-address bits must be zero (this also refuses nT, bit 16).
    if oa & ((1 << shift) - 1) != 0 {
        return Err(Errno::Inval);
    }
    let contiguous = raw & d::CONTIGUOUS != 0;
    let (base, frames) = if contiguous {
        // Only at levels 2 and 3: at level 1 the span would be 16 GiB. The entry must sit at
        // the position its output address implies, so the span is aligned and the TLB's
        // reach from it is exactly the 16 entries' worth of memory.
        if level < 2 || (oa >> shift) & 15 != (index & 15) as u64 {
            return Err(Errno::Inval);
        }
        let span = 16u64 << shift;
        (oa & !(span - 1), span >> PAGE_SHIFT)
    } else {
        (oa, 1 << (shift - PAGE_SHIFT))
    };
    Ok(Desc::Leaf(Leaf {
        base,
        frames,
        writable: raw & d::AP_RO == 0,
        contiguous,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use d::{AP_RO, NORMAL, block, page, table};

    const MASK: u8 = d::NORMAL_ATTR_MASK;

    fn leaf(raw: u64, level: Level, index: usize) -> Leaf {
        match decode(raw, level, index, MASK) {
            Ok(Desc::Leaf(l)) => l,
            other => panic!("{raw:#x} at L{level}: {other:?}"),
        }
    }

    #[test]
    fn shapes_by_level() {
        assert_eq!(decode(0, 0, 0, MASK), Ok(Desc::Invalid));
        // Invalid entries keep whatever the guest stores in them (swap entries, markers).
        assert_eq!(decode(0xdead_beef_0000_0002, 3, 5, MASK), Ok(Desc::Invalid));
        for level in 0..3 {
            assert_eq!(
                decode(table(0x4000_1000), level, 0, MASK),
                Ok(Desc::Table { next: 0x4000_1000 })
            );
        }
        let p = leaf(page(0x4000_5000, NORMAL), 3, 7);
        assert_eq!((p.base, p.frames, p.writable), (0x4000_5000, 1, true));
        assert!(!leaf(page(0x4000_5000, NORMAL | AP_RO), 3, 0).writable);
        assert_eq!(leaf(block(0x4020_0000, NORMAL), 2, 0).frames, 512);
        assert_eq!(leaf(block(0x4000_0000, NORMAL), 1, 0).frames, 262_144);
        // No level-0 blocks with this granule; 0b01 at level 3 is reserved.
        assert_eq!(decode(block(0, NORMAL), 0, 0, MASK), Err(Errno::Inval));
        assert_eq!(
            decode(block(0x4000_5000, NORMAL), 3, 0, MASK),
            Err(Errno::Inval)
        );
    }

    #[test]
    fn reserved_and_refused_bits() {
        let ok = page(0x4000_5000, NORMAL);
        for bit in [5, 48, 49, 51, 59, 60, 61, 62, 63] {
            assert_eq!(
                decode(ok | 1 << bit, 3, 0, MASK),
                Err(Errno::Inval),
                "bit {bit}"
            );
        }
        // Software bits, GP, XN, nG, EL0 access are the guest's choice.
        for bit in [6, 11, 50, 53, 54, 55, 58] {
            assert!(decode(ok | 1 << bit, 3, 0, MASK).is_ok(), "bit {bit}");
        }
        // No access flag is allowed too: the guest handles its own access faults.
        assert!(decode(ok & !d::AF, 3, 0, MASK).is_ok());
        // Device and non-cacheable attribute indexes are not in the mask.
        let dev = (ok & !d::ATTR_INDX_MASK) | d::attr_indx(d::ATTR_DEVICE);
        assert_eq!(decode(dev, 3, 0, MASK), Err(Errno::Perm));
        let nc = (ok & !d::ATTR_INDX_MASK) | d::attr_indx(d::ATTR_NORMAL_NC);
        assert_eq!(decode(nc, 3, 0, MASK), Err(Errno::Perm));
        assert!(decode(nc, 3, 0, MASK | 1 << 2).is_ok());
        // Non-shareable and the reserved shareability.
        for sh in [0, 1] {
            let v = (ok & !d::SH_MASK) | sh << d::SH_SHIFT;
            assert_eq!(decode(v, 3, 0, MASK), Err(Errno::Inval));
        }
        assert!(decode((ok & !d::SH_MASK) | d::SH_OUTER, 3, 0, MASK).is_ok());
        // Table descriptors: attributes allowed, ignored and reserved bits not.
        let t = table(0x4000_1000);
        let attrs = d::PXN_TABLE | d::UXN_TABLE | d::AP_TABLE_RO | d::AP_TABLE_NO_EL0;
        assert!(decode(t | attrs, 1, 0, MASK).is_ok());
        for bit in [2, 10, 11, 48, 52, 58, 63] {
            assert_eq!(
                decode(t | 1 << bit, 1, 0, MASK),
                Err(Errno::Inval),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn block_alignment() {
        assert_eq!(
            decode(block(0x4030_0000, NORMAL), 2, 0, MASK),
            Err(Errno::Inval)
        );
        assert_eq!(
            decode(block(0x4020_0000, NORMAL), 1, 0, MASK),
            Err(Errno::Inval)
        );
        // nT (bit 16) sits in the block's low address bits.
        assert_eq!(
            decode(block(0x4020_0000, NORMAL) | 1 << 16, 2, 0, MASK),
            Err(Errno::Inval)
        );
    }

    #[test]
    fn contiguous_hint() {
        let c = d::CONTIGUOUS;
        // Page 0x4001_3000 is entry 3 of its 64 KiB span: legal at index 3 (or 19, 35...).
        let l = leaf(page(0x4001_3000, NORMAL) | c, 3, 19);
        assert_eq!((l.base, l.frames, l.contiguous), (0x4001_0000, 16, true));
        assert_eq!(
            decode(page(0x4001_3000, NORMAL) | c, 3, 4, MASK),
            Err(Errno::Inval)
        );
        let b = leaf(block(0x4060_0000, NORMAL) | c, 2, 3);
        assert_eq!((b.base, b.frames), (0x4000_0000, 16 * 512));
        assert_eq!(
            decode(block(0x4000_0000, NORMAL) | c, 1, 0, MASK),
            Err(Errno::Inval)
        );
    }
}
