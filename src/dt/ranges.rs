//! Bus address translation: turning a `reg` address, which is in its parent bus's address space,
//! into a CPU physical address by applying the `ranges` of every bus between the node and the
//! root (the Raspberry Pi 4 puts its peripherals at bus address 0x7e00_0000 behind a `/soc`
//! whose `ranges` map them to 0xfe00_0000).
//!
//! The functions here work on raw property bytes and cell counts, so they are independent of
//! how the tree is walked.

use alloc::vec::Vec;
use core::fmt;

/// A bus between a node and the root, as seen by the translation.
#[derive(Clone, Copy, Debug)]
pub struct Bus<'a> {
    /// Path of the bus node, for messages.
    pub path: &'a str,
    /// The bus's `ranges` property: `None` if absent (the bus is not memory-mapped), empty for
    /// an identity mapping.
    pub ranges: Option<&'a [u8]>,
    /// `#address-cells` / `#size-cells` the bus gives its children.
    pub address_cells: u32,
    pub size_cells: u32,
}

/// One `ranges` entry: `size` bytes at child-bus address `child` appear at `parent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeEntry {
    pub child: u64,
    pub parent: u64,
    pub size: u64,
}

/// Why an address could not be translated or a property not decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// A property's length is not a whole number of entries.
    BadLength {
        property: &'static str,
        len: usize,
        entry: usize,
    },
    /// A value needs more than 64 bits (e.g. a PCI address with its space code).
    TooWide { property: &'static str },
    /// An entry with zero size cells where a size is required.
    NoSizeCells,
    /// The bus has no `ranges`: its children's addresses are not CPU addresses.
    NoRanges { bus: alloc::string::String },
    /// No `ranges` entry of the bus covers the address.
    NotMapped {
        bus: alloc::string::String,
        addr: u64,
    },
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength {
                property,
                len,
                entry,
            } => {
                write!(f, "{property} is {len} bytes, not a multiple of {entry}")
            }
            Self::TooWide { property } => write!(f, "{property} has a value wider than 64 bits"),
            Self::NoSizeCells => write!(f, "#size-cells is 0"),
            Self::NoRanges { bus } => write!(f, "bus {bus} has no ranges (not memory-mapped)"),
            Self::NotMapped { bus, addr } => {
                write!(f, "address {addr:#x} is outside every range of bus {bus}")
            }
        }
    }
}

/// Reads a big-endian number of `cells` 32-bit cells, which must fit in 64 bits: wider values
/// are accepted only if their extra high cells are zero.
pub fn read_cells(bytes: &[u8], cells: u32) -> Option<u64> {
    let len = cells as usize * 4;
    let bytes = bytes.get(..len)?;
    let mut value: u64 = 0;
    for (i, cell) in bytes.chunks_exact(4).enumerate() {
        let cell = u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]);
        if i + 2 < cells as usize {
            if cell != 0 {
                return None;
            }
        } else {
            value = (value << 32) | u64::from(cell);
        }
    }
    Some(value)
}

/// Splits a property into entries of the given cell counts, decoding each field.
fn entries<const N: usize>(
    value: &[u8],
    cells: [u32; N],
    property: &'static str,
) -> Result<Vec<[u64; N]>, TranslateError> {
    let entry: usize = cells.iter().map(|&c| c as usize * 4).sum();
    if cells.iter().any(|&c| c > 4) {
        return Err(TranslateError::TooWide { property });
    }
    if entry == 0 || !value.len().is_multiple_of(entry) {
        return Err(TranslateError::BadLength {
            property,
            len: value.len(),
            entry,
        });
    }
    value
        .chunks_exact(entry)
        .map(|chunk| {
            let mut out = [0; N];
            let mut at = 0;
            for (field, &c) in out.iter_mut().zip(&cells) {
                *field = read_cells(&chunk[at..], c).ok_or(TranslateError::TooWide { property })?;
                at += c as usize * 4;
            }
            Ok(out)
        })
        .collect()
}

/// Decodes a `reg` property into `(address, size)` pairs in the parent bus's space. With
/// `#size-cells = 0` every size is 0.
pub fn parse_reg(
    value: &[u8],
    address_cells: u32,
    size_cells: u32,
) -> Result<Vec<(u64, u64)>, TranslateError> {
    Ok(entries(value, [address_cells, size_cells], "reg")?
        .into_iter()
        .map(|[addr, size]| (addr, size))
        .collect())
}

/// Decodes a non-empty `ranges` property of a bus whose children use `child_cells`
/// (`#address-cells`, `#size-cells`) and whose own parent uses `parent_address_cells`.
pub fn parse_ranges(
    value: &[u8],
    child_cells: (u32, u32),
    parent_address_cells: u32,
) -> Result<Vec<RangeEntry>, TranslateError> {
    if child_cells.1 == 0 {
        return Err(TranslateError::NoSizeCells);
    }
    Ok(entries(
        value,
        [child_cells.0, parent_address_cells, child_cells.1],
        "ranges",
    )?
    .into_iter()
    .map(|[child, parent, size]| RangeEntry {
        child,
        parent,
        size,
    })
    .collect())
}

/// Translates `addr` from the address space of `buses[0]` (the node's parent) to the CPU's,
/// through each bus's `ranges` in turn; `buses` runs from the parent up to the root, whose
/// space is the CPU's and whose `ranges` are therefore not consulted.
///
/// Like Linux, only the start address is checked against each range.
pub fn translate(addr: u64, buses: &[Bus<'_>]) -> Result<u64, TranslateError> {
    let mut addr = addr;
    for pair in buses.windows(2) {
        let (bus, parent) = (&pair[0], &pair[1]);
        let Some(ranges) = bus.ranges else {
            return Err(TranslateError::NoRanges {
                bus: bus.path.into(),
            });
        };
        if ranges.is_empty() {
            continue;
        }
        let map = parse_ranges(
            ranges,
            (bus.address_cells, bus.size_cells),
            parent.address_cells,
        )?;
        addr = map
            .iter()
            .find(|r| addr >= r.child && addr - r.child < r.size)
            .and_then(|r| r.parent.checked_add(addr - r.child))
            .ok_or_else(|| TranslateError::NotMapped {
                bus: bus.path.into(),
                addr,
            })?;
    }
    Ok(addr)
}

/// The inverse of [`translate`]: turns CPU physical address `addr` into an address in the space
/// of `buses[0]`, through each bus's `ranges` from the root down. Used to write a `reg` that the
/// CPU side has chosen (such as the GIC frames dom0 sees) back into a node's own bus.
pub fn untranslate(addr: u64, buses: &[Bus<'_>]) -> Result<u64, TranslateError> {
    let mut addr = addr;
    for pair in buses.windows(2).rev() {
        let (bus, parent) = (&pair[0], &pair[1]);
        let Some(ranges) = bus.ranges else {
            return Err(TranslateError::NoRanges {
                bus: bus.path.into(),
            });
        };
        if ranges.is_empty() {
            continue;
        }
        let map = parse_ranges(
            ranges,
            (bus.address_cells, bus.size_cells),
            parent.address_cells,
        )?;
        addr = map
            .iter()
            .find(|r| addr >= r.parent && addr - r.parent < r.size)
            .and_then(|r| r.child.checked_add(addr - r.parent))
            .ok_or_else(|| TranslateError::NotMapped {
                bus: bus.path.into(),
                addr,
            })?;
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn cells(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    fn root(address_cells: u32) -> Bus<'static> {
        Bus {
            path: "/",
            ranges: None,
            address_cells,
            size_cells: 1,
        }
    }

    #[test]
    fn read_cells_widths() {
        let b = cells(&[0x1, 0x2, 0x3]);
        assert_eq!(read_cells(&b, 0), Some(0));
        assert_eq!(read_cells(&b, 1), Some(1));
        assert_eq!(read_cells(&b, 2), Some(0x1_0000_0002));
        assert_eq!(read_cells(&b, 3), None, "high cell non-zero");
        assert_eq!(
            read_cells(&cells(&[0, 0x8, 0x8000_0000]), 3),
            Some(0x8_8000_0000)
        );
        assert_eq!(read_cells(&b, 4), None, "too short");
    }

    #[test]
    fn reg_decoding() {
        let v = cells(&[
            0x0,
            0x4000_0000,
            0x0,
            0x4000_0000,
            0x8,
            0x8000_0000,
            0x1,
            0x0,
        ]);
        assert_eq!(
            parse_reg(&v, 2, 2).unwrap(),
            vec![(0x4000_0000, 0x4000_0000), (0x8_8000_0000, 0x1_0000_0000)]
        );
        assert_eq!(parse_reg(&cells(&[0x100]), 1, 0).unwrap(), vec![(0x100, 0)]);
        assert!(matches!(
            parse_reg(&v[..12], 2, 2),
            Err(TranslateError::BadLength { .. })
        ));
        assert!(matches!(
            parse_reg(&v, 0, 0),
            Err(TranslateError::BadLength { .. })
        ));
        assert!(matches!(
            parse_reg(&cells(&[0x0200_0000, 0, 0, 0, 0x1000]), 3, 2),
            Err(TranslateError::TooWide { .. })
        ));
        assert!(matches!(
            parse_reg(&v, 8, 0),
            Err(TranslateError::TooWide { .. })
        ));
        assert_eq!(parse_reg(&[], 2, 1).unwrap(), vec![]);
    }

    #[test]
    fn raspberry_pi_4_soc() {
        let ranges = cells(&[
            0x7e00_0000,
            0x0,
            0xfe00_0000,
            0x0180_0000, //
            0x7c00_0000,
            0x0,
            0xfc00_0000,
            0x0200_0000, //
            0x4000_0000,
            0x0,
            0xff80_0000,
            0x0080_0000,
        ]);
        let soc = Bus {
            path: "/soc",
            ranges: Some(&ranges),
            address_cells: 1,
            size_cells: 1,
        };
        let buses = [soc, root(2)];
        assert_eq!(translate(0x7e20_1000, &buses), Ok(0xfe20_1000));
        assert_eq!(translate(0x4004_1000, &buses), Ok(0xff84_1000));
        assert_eq!(translate(0x7c00_0000, &buses), Ok(0xfc00_0000));
        assert_eq!(
            translate(0x7f80_0000, &buses),
            Err(TranslateError::NotMapped {
                bus: "/soc".into(),
                addr: 0x7f80_0000
            })
        );
    }

    #[test]
    fn untranslate_inverts_translate() {
        let ranges = cells(&[
            0x7e00_0000,
            0x0,
            0xfe00_0000,
            0x0180_0000, //
            0x4000_0000,
            0x0,
            0xff80_0000,
            0x0080_0000,
        ]);
        let soc = Bus {
            path: "/soc",
            ranges: Some(&ranges),
            address_cells: 1,
            size_cells: 1,
        };
        let buses = [soc, root(2)];
        for bus_addr in [0x7e20_1000, 0x4004_1000, 0x4004_2000] {
            let phys = translate(bus_addr, &buses).unwrap();
            assert_eq!(untranslate(phys, &buses), Ok(bus_addr));
        }
        assert!(matches!(
            untranslate(0x1000, &buses),
            Err(TranslateError::NotMapped { .. })
        ));
        assert_eq!(untranslate(0x1234, &[root(2)]), Ok(0x1234));
        let no_ranges = [
            Bus {
                ranges: None,
                ..soc
            },
            root(2),
        ];
        assert!(matches!(
            untranslate(0xfe20_1000, &no_ranges),
            Err(TranslateError::NoRanges { .. })
        ));
    }

    #[test]
    fn nested_buses_and_identity() {
        let outer = cells(&[0x0, 0x6, 0x0, 0x1000_0000]); // 1 address cell -> 2 parent cells
        let inner = cells(&[0x100, 0x2000, 0x100]);
        let buses = [
            Bus {
                path: "/a/b/c",
                ranges: Some(&[]),
                address_cells: 1,
                size_cells: 1,
            },
            Bus {
                path: "/a/b",
                ranges: Some(&inner),
                address_cells: 1,
                size_cells: 1,
            },
            Bus {
                path: "/a",
                ranges: Some(&outer),
                address_cells: 1,
                size_cells: 1,
            },
            root(2),
        ];
        assert_eq!(translate(0x180, &buses), Ok(0x6_0000_2080));
        assert!(matches!(
            translate(0x200, &buses),
            Err(TranslateError::NotMapped { .. })
        ));
        assert_eq!(
            translate(0x1234, &[root(2)]),
            Ok(0x1234),
            "root children need no translation"
        );
        assert_eq!(translate(0x1234, &[]), Ok(0x1234));
    }

    #[test]
    fn missing_or_bad_ranges() {
        let buses = [
            Bus {
                path: "/i2c",
                ranges: None,
                address_cells: 1,
                size_cells: 0,
            },
            root(2),
        ];
        assert_eq!(
            translate(0x50, &buses),
            Err(TranslateError::NoRanges { bus: "/i2c".into() })
        );
        let bad = cells(&[0x1, 0x2]);
        let buses = [
            Bus {
                path: "/x",
                ranges: Some(&bad),
                address_cells: 1,
                size_cells: 1,
            },
            root(2),
        ];
        assert!(matches!(
            translate(0x1, &buses),
            Err(TranslateError::BadLength { .. })
        ));
        let buses = [
            Bus {
                path: "/x",
                ranges: Some(&bad),
                address_cells: 1,
                size_cells: 0,
            },
            root(1),
        ];
        assert_eq!(translate(0x1, &buses), Err(TranslateError::NoSizeCells));
    }

    #[test]
    fn translation_overflow_is_an_error() {
        let r = cells(&[0x0, 0xffff_ffff, 0xffff_f000, 0x0, 0x10_0000]);
        let buses = [
            Bus {
                path: "/x",
                ranges: Some(&r),
                address_cells: 1,
                size_cells: 2,
            },
            root(2),
        ];
        // size_cells 2 makes each entry 5 cells: child(1) parent(2) size(2).
        assert_eq!(translate(0xfff, &buses), Ok(0xffff_ffff_ffff_ffff));
        assert!(translate(0x1000, &buses).is_err());
    }
}
