//! Grant tables as portable policy: where each domain's table is, and the rules for using one of
//! its entries (`ferrite_abi::grant` is the guest's view, docs/abi.md the contract).
//!
//! A use of a grant ([`begin`]) checks the entry the granter wrote (it grants access, to this
//! grantee, writable if the use writes, nothing but the granter's bits set) and marks it in use
//! (READING or WRITING) with a compare-and-swap, so a granter that ends the grant at the same
//! moment either wins (the use fails) or sees the mark and waits. [`end`] clears the mark. The
//! machine side makes uses of one domain's entries one at a time (a lock around the copy), so a
//! mark needs no count. Whether the frame the entry names is the granter's, and not a page
//! table, is the machine side's check: it depends on the kind of domain.

pub mod active;

use crate::domain::DomId;
use core::sync::atomic::Ordering;
use ferrite_abi::Errno;
use ferrite_abi::grant::{ENTRIES_PER_PAGE, GrantEntry, GrantPtr, MAX_TABLE_PAGES, copy, flags};

/// Where a domain's grant table is: `pages` contiguous pages from `base` (a machine address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    pub base: u64,
    pub pages: u64,
}

impl Table {
    /// Checks a `SET_TABLE` request: page-aligned, 1..=MAX_TABLE_PAGES pages.
    pub fn new(base: u64, pages: u64) -> Result<Self, Errno> {
        if !base.is_multiple_of(4096) || pages == 0 || pages > MAX_TABLE_PAGES {
            return Err(Errno::Inval);
        }
        Ok(Self { base, pages })
    }

    pub fn entries(&self) -> u32 {
        self.pages as u32 * ENTRIES_PER_PAGE
    }

    /// Machine address of entry `gref`.
    pub fn entry_addr(&self, gref: u64) -> Result<u64, Errno> {
        if gref >= self.entries() as u64 {
            return Err(Errno::NoEnt);
        }
        Ok(self.base + gref * size_of::<GrantEntry>() as u64)
    }
}

/// The access one side of a copy needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Marks `e` in use by `grantee` for `access` and returns the granted frame number. `Perm` if
/// the entry does not grant it (no PERMIT_ACCESS, another domain, read-only for a write),
/// `Inval` if the granter set bits that are not its own (or the entry is already in use: only
/// a granter that wrote the marks itself can cause that, Ferrite's own uses are serialised).
pub fn begin(e: &GrantEntry, grantee: DomId, access: Access) -> Result<u32, Errno> {
    begin_holding(e, grantee, access, 0)
}

/// [`begin`] for an entry on which Ferrite already holds the marks in `ours` (another kind of
/// use in progress), which are then not the granter's doing.
pub fn begin_holding(
    e: &GrantEntry,
    grantee: DomId,
    access: Access,
    ours: u16,
) -> Result<u32, Errno> {
    let mark = match access {
        Access::Read => flags::READING,
        Access::Write => flags::WRITING,
    };
    let mut f = e.flags.load(Ordering::Acquire);
    loop {
        if f & flags::PERMIT_ACCESS == 0 {
            return Err(Errno::Perm);
        }
        if f & !(flags::GRANTER_BITS | ours) != 0 {
            return Err(Errno::Inval);
        }
        if access == Access::Write && f & flags::READONLY != 0 {
            return Err(Errno::Perm);
        }
        // The domid and frame were written before the flags (release); read after them.
        if e.domid.load(Ordering::Acquire) != grantee {
            return Err(Errno::Perm);
        }
        match e
            .flags
            .compare_exchange(f, f | mark, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break,
            Err(now) => f = now,
        }
    }
    // Read after the mark: from here on a well-behaved granter does not change the entry.
    Ok(e.frame.load(Ordering::Acquire))
}

/// Ends a use [`begin`] started.
pub fn end(e: &GrantEntry, access: Access) {
    let mark = match access {
        Access::Read => flags::READING,
        Access::Write => flags::WRITING,
    };
    e.flags.fetch_and(!mark, Ordering::AcqRel);
}

/// One side of a checked copy op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The caller's own memory at this guest virtual address.
    Local { va: u64 },
    /// Entry `gref` of `dom`'s table, from byte `offset` of the granted frame.
    Granted { dom: DomId, gref: u64, offset: u16 },
}

/// Checks a `GrantCopy` op's shape (not the grants themselves) and names its two sides.
/// `Inval`: a length over a page, or a granted side running past its frame's end.
pub fn decode(
    source: GrantPtr,
    dest: GrantPtr,
    len: u16,
    op_flags: u16,
    caller: DomId,
    self_id: DomId,
) -> Result<(Side, Side, usize), Errno> {
    if len as u64 > 4096 || op_flags & !(copy::SOURCE_GREF | copy::DEST_GREF) != 0 {
        return Err(Errno::Inval);
    }
    let side = |p: GrantPtr, gref: bool| -> Result<Side, Errno> {
        if !gref {
            return Ok(Side::Local { va: p.gref_or_va });
        }
        if p.offset as u64 + len as u64 > 4096 {
            return Err(Errno::Inval);
        }
        let dom = if p.domid == self_id { caller } else { p.domid };
        Ok(Side::Granted {
            dom,
            gref: p.gref_or_va,
            offset: p.offset,
        })
    };
    Ok((
        side(source, op_flags & copy::SOURCE_GREF != 0)?,
        side(dest, op_flags & copy::DEST_GREF != 0)?,
        len as usize,
    ))
}

#[cfg(test)]
mod tests;
