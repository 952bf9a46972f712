//! Structural validation of a flattened device tree before the `fdt` crate sees it.
//!
//! `fdt` 0.1.5 trusts its input: it indexes out of bounds, `unwrap`s and `assert`s on malformed
//! blobs, recurses through aliases without limit, and mis-walks NOP tokens anywhere but before a
//! property. A firmware-provided blob must never bring the hypervisor down, so this module checks
//! every header offset, token, name and property first, and [`strip_nops`] rewrites a blob that
//! contains NOPs (as bootloaders leave behind when they delete properties) into one without.

use alloc::vec::Vec;

use super::DtError;
use crate::mm::region::Region;

pub(super) const FDT_MAGIC: u32 = 0xd00d_feed;
pub(super) const HEADER_SIZE: usize = 40;
/// Linux's limit for arm64 too: a header claiming more is garbage, not a device tree.
pub(super) const MAX_TOTAL_SIZE: usize = 2 << 20;
/// Deeper trees exist nowhere in practice, and `fdt` keeps a 64-entry ancestor stack.
const MAX_DEPTH: usize = 32;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// The header fields this crate relies on, each already bounds-checked against `total_size`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    pub total_size: usize,
    pub off_struct: usize,
    pub size_struct: usize,
    pub off_strings: usize,
    pub size_strings: usize,
    pub off_rsvmap: usize,
}

/// What a successful check learnt about the blob.
#[derive(Debug)]
pub(super) struct Checked {
    pub header: Header,
    /// `/memreserve/` entries (empty ones dropped).
    pub reservations: Vec<Region>,
    pub has_nops: bool,
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    Some((u64::from(be32(bytes, at)?) << 32) | u64::from(be32(bytes, at + 4)?))
}

/// The blob's total size from its first bytes, after checking magic, version and plausibility;
/// meant for sizing the slice of a blob known only by its address.
pub fn total_size(first_bytes: &[u8]) -> Result<usize, DtError> {
    if first_bytes.len() < HEADER_SIZE {
        return Err(DtError::TooShort {
            len: first_bytes.len(),
        });
    }
    let word = |i: usize| be32(first_bytes, i * 4).unwrap_or(0);
    if word(0) != FDT_MAGIC {
        return Err(DtError::BadMagic(word(0)));
    }
    let (version, last_compatible) = (word(5), word(6));
    // v17 added size_dt_struct, which the walk needs; later versions must stay readable by a
    // v17 reader to claim last_comp_version <= 17.
    if version < 17 || last_compatible > 17 {
        return Err(DtError::BadVersion {
            version,
            last_compatible,
        });
    }
    let size = word(1);
    if (size as usize) < HEADER_SIZE || size as usize > MAX_TOTAL_SIZE {
        return Err(DtError::BadTotalSize(size));
    }
    Ok(size as usize)
}

fn header(blob: &[u8]) -> Result<Header, DtError> {
    let total_size = total_size(blob)?;
    if blob.len() < total_size {
        return Err(DtError::Truncated {
            total_size,
            available: blob.len(),
        });
    }
    let word = |i: usize| be32(blob, i * 4).unwrap_or(0) as usize;
    let header = Header {
        total_size,
        off_struct: word(2),
        off_strings: word(3),
        off_rsvmap: word(4),
        size_strings: word(8),
        size_struct: word(9),
    };
    let within = |off: usize, size: usize| {
        off >= HEADER_SIZE && off.checked_add(size).is_some_and(|end| end <= total_size)
    };
    if !within(header.off_struct, header.size_struct) || !header.off_struct.is_multiple_of(4) {
        return Err(DtError::BadLayout(
            "structure block outside the blob or misaligned",
        ));
    }
    if !within(header.off_strings, header.size_strings) {
        return Err(DtError::BadLayout("strings block outside the blob"));
    }
    if !within(header.off_rsvmap, 16) || !header.off_rsvmap.is_multiple_of(8) {
        return Err(DtError::BadLayout(
            "reservation map outside the blob or misaligned",
        ));
    }
    Ok(header)
}

fn reservations(blob: &[u8], header: &Header) -> Result<Vec<Region>, DtError> {
    let mut out = Vec::new();
    let mut at = header.off_rsvmap;
    loop {
        let entry = (at + 16 <= header.total_size).then(|| (be64(blob, at), be64(blob, at + 8)));
        let Some((Some(address), Some(size))) = entry else {
            return Err(DtError::Malformed {
                offset: at,
                what: "unterminated reservation map",
            });
        };
        if address == 0 && size == 0 {
            return Ok(out);
        }
        if size != 0 {
            out.push(Region::new(address, size));
        }
        at += 16;
    }
}

/// Checks the whole blob (the first `totalsize` bytes of `blob`) so that the `fdt` crate can walk
/// it without panicking once any NOPs are gone.
pub(super) fn check(blob: &[u8]) -> Result<Checked, DtError> {
    let header = header(blob)?;
    let reservations = reservations(blob, &header)?;
    let structure = &blob[header.off_struct..header.off_struct + header.size_struct];
    let strings = &blob[header.off_strings..header.off_strings + header.size_strings];
    let bad = |at: usize, what| DtError::Malformed {
        offset: header.off_struct + at,
        what,
    };

    let mut at = 0;
    let mut depth = 0;
    // Per open node: whether a child node has been seen (properties must precede children).
    let mut seen_child = [false; MAX_DEPTH + 1];
    let mut has_nops = false;
    let mut root_done = false;
    loop {
        let token =
            be32(structure, at).ok_or_else(|| bad(at, "structure block ends without FDT_END"))?;
        let token_at = at;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                if root_done {
                    return Err(bad(token_at, "second root node"));
                }
                let name_len = structure[at..]
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| bad(at, "unterminated node name"))?;
                let name = &structure[at..at + name_len];
                if core::str::from_utf8(name).is_err() {
                    return Err(bad(at, "node name is not UTF-8"));
                }
                if depth == 0 && !name.is_empty() {
                    return Err(bad(at, "root node has a name"));
                }
                if depth > 0 && name.is_empty() {
                    return Err(bad(at, "node without a name"));
                }
                at = align4(at + name_len + 1);
                if depth > 0 {
                    seen_child[depth] = true;
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(bad(token_at, "nodes nested too deeply"));
                }
                seen_child[depth] = false;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(bad(token_at, "FDT_END_NODE without a node"));
                }
                depth -= 1;
                root_done = depth == 0;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(bad(token_at, "property outside a node"));
                }
                if seen_child[depth] {
                    return Err(bad(token_at, "property after a child node"));
                }
                let (Some(len), Some(name_off)) = (be32(structure, at), be32(structure, at + 4))
                else {
                    return Err(bad(at, "truncated property header"));
                };
                at += 8;
                let end = at
                    .checked_add(len as usize)
                    .filter(|&end| end <= structure.len())
                    .ok_or_else(|| bad(token_at, "property value runs past the structure block"))?;
                let name = strings
                    .get(name_off as usize..)
                    .and_then(|s| s.iter().position(|&b| b == 0).map(|n| &s[..n]))
                    .ok_or_else(|| {
                        bad(token_at, "property name offset outside the strings block")
                    })?;
                if core::str::from_utf8(name).is_err() {
                    return Err(bad(token_at, "property name is not UTF-8"));
                }
                at = align4(end);
            }
            FDT_NOP => has_nops = true,
            FDT_END => {
                if !root_done {
                    return Err(bad(token_at, "FDT_END inside a node or before the root"));
                }
                return Ok(Checked {
                    header,
                    reservations,
                    has_nops,
                });
            }
            _ => return Err(bad(token_at, "unknown token")),
        }
    }
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A copy of a [`check`]ed blob with every NOP token removed from the structure block; the
/// header, reservation map and strings block are rebuilt around it.
pub(super) fn strip_nops(blob: &[u8], header: &Header) -> Vec<u8> {
    let structure = &blob[header.off_struct..header.off_struct + header.size_struct];
    let mut compact = Vec::with_capacity(structure.len());
    let mut at = 0;
    // `check` has vouched for every token and length, so this walk only needs to know where
    // each token ends.
    while let Some(token) = be32(structure, at) {
        let next = match token {
            FDT_BEGIN_NODE => {
                let len = structure[at + 4..]
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(0);
                align4(at + 4 + len + 1)
            }
            FDT_PROP => align4(at + 12 + be32(structure, at + 4).unwrap_or(0) as usize),
            _ => at + 4,
        }
        .min(structure.len());
        if token != FDT_NOP {
            compact.extend_from_slice(&structure[at..next]);
        }
        if token == FDT_END {
            break;
        }
        at = next;
    }

    let rsvmap = &blob[header.off_rsvmap..];
    let rsv_len = rsvmap
        .chunks_exact(16)
        .position(|e| e.iter().all(|&b| b == 0))
        .unwrap_or(0)
        * 16
        + 16;
    let strings = &blob[header.off_strings..header.off_strings + header.size_strings];

    let off_rsvmap = HEADER_SIZE;
    let off_struct = off_rsvmap + rsv_len;
    let off_strings = off_struct + compact.len();
    let total = off_strings + strings.len();
    let mut out = Vec::with_capacity(total);
    for word in [
        FDT_MAGIC,
        total as u32,
        off_struct as u32,
        off_strings as u32,
        off_rsvmap as u32,
        17,
        16,
        be32(blob, 28).unwrap_or(0), // boot_cpuid_phys
        strings.len() as u32,
        compact.len() as u32,
    ] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(&rsvmap[..rsv_len]);
    out.extend_from_slice(&compact);
    out.extend_from_slice(strings);
    out
}
