//! Grant tables: how a domain lets another domain reach one of its frames, as Xen's grant
//! tables (version 1 entries).
//!
//! A domain keeps its grant table in its own memory: [`SET_TABLE`] tells Ferrite where (one to
//! [`MAX_TABLE_PAGES`] pages of [`GrantEntry`], 512 per page). To grant frame `f` to domain `d`
//! it writes entry `r` (the grant reference): `domid = d`, `frame = f`, then, last and with
//! release ordering, `flags = PERMIT_ACCESS` (plus [`flags::READONLY`]). It passes `r` to `d`
//! (a ring, a start-info field). To end the grant it clears `flags` with a compare-and-swap
//! that expects no [`flags::READING`]/[`flags::WRITING`] bit: while Ferrite copies through an
//! entry it holds those bits set, so a granter that sees them must retry (Xen's
//! `gnttab_end_foreign_access`). A frame is the granter's machine frame number (PV domU) or
//! guest-physical frame number (dom0, whose guest-physical and machine addresses are equal).
//!
//! The grantee uses the grant with [`COPY`]: Ferrite copies between a granted frame and the
//! caller's own memory (or between two granted frames), after checking the entry names the
//! caller, permits the access and covers the bytes. Copying into a frame never writes a page
//! table: a PV granter's frame that is one is refused (`-EPERM`).
//!
//! Reserved references, set up by the domain builder in every domU: [`GREF_CONSOLE`] grants
//! the console ring page to dom0 ([`crate::console_ring`]).

use core::mem::size_of;
use core::sync::atomic::{AtomicU16, AtomicU32};

/// x2 = address of the table's first page (PV domU: a machine address of a frame it owns, that
/// Ferrite then holds writable, so it can never become a page table; dom0: guest-physical),
/// x3 = number of pages, 1..=[`MAX_TABLE_PAGES`], contiguous. Once per domain (`-EEXIST` after).
pub const SET_TABLE: u64 = 0;
/// x2 = guest VA of an array of [`GrantCopy`], x3 = count. Ferrite does up to [`MAX_COPY_OPS`]
/// of them and returns how many it did; each op's `status` says how it went (0 or a negated
/// errno). A bad array address: `-EFAULT`.
pub const COPY: u64 = 1;
/// Returns the number of entries the caller's table has (0 before [`SET_TABLE`]).
pub const QUERY_SIZE: u64 = 2;
/// x2 = granter, x3 = reference, x4 = [`MAP_READONLY`] or 0. The entry stays marked in use
/// (the granter cannot end the grant) and a PV granter's frame stays held (it cannot become a
/// page table or be given back) until [`UNMAP`].
///
/// - dom0: maps the granted frame at a free page of its grant window (the `/hypervisor` node's
///   `ferrite,grant-window`) and returns the page's guest-physical address; x1 = the frame's
///   machine address, for DMA by a device dom0 drives. A full window: `-ENOSPC`.
/// - PV domU: returns the frame's machine address, which it may then put in one of its own
///   page-table leaf entries with `MMU_UPDATE` (writable only after a writable map; 4 KiB pages
///   only) until it calls [`UNMAP`]. Mapping its own grants: `-EINVAL`.
pub const MAP: u64 = 3;
/// x2 = what [`MAP`] returned (dom0: the guest-physical address; PV domU: the machine address).
/// dom0's page is unmapped; a PV domU must have removed every entry that maps the frame first
/// (`-EBUSY` otherwise). Every CPU's TLB forgets the frame before the grant's use ends.
pub const UNMAP: u64 = 4;
/// [`MAP`] flag: map read-only (needs only a read grant).
pub const MAP_READONLY: u64 = 1;

/// The most pages a grant table may have (2048 entries).
pub const MAX_TABLE_PAGES: u64 = 4;
/// Entries per 4 KiB page.
pub const ENTRIES_PER_PAGE: u32 = 512;
/// The most [`GrantCopy`] ops one [`COPY`] call does.
pub const MAX_COPY_OPS: usize = 64;

/// The grant reference of each domU's console ring page, granted to dom0 by the builder.
pub const GREF_CONSOLE: u32 = 0;
/// Reserved for a future store ring.
pub const GREF_STORE: u32 = 1;
/// The first reference a guest may use for its own grants.
pub const GREF_FIRST_FREE: u32 = 8;

/// [`GrantEntry::flags`].
pub mod flags {
    /// The entry grants access (to `domid`, to `frame`).
    pub const PERMIT_ACCESS: u16 = 1;
    /// Only reading is allowed.
    pub const READONLY: u16 = 1 << 2;
    /// Set by Ferrite while it reads through the entry.
    pub const READING: u16 = 1 << 3;
    /// Set by Ferrite while it writes through the entry.
    pub const WRITING: u16 = 1 << 4;
    /// Bits a granter writes; anything else in them is `-EINVAL` at use.
    pub const GRANTER_BITS: u16 = PERMIT_ACCESS | READONLY;
}

/// One grant: 8 bytes.
#[repr(C)]
pub struct GrantEntry {
    pub flags: AtomicU16,
    /// The domain allowed to use the grant.
    pub domid: AtomicU16,
    /// The granted frame number.
    pub frame: AtomicU32,
}

/// One side of a [`GrantCopy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GrantPtr {
    /// A grant reference (with [`copy::SOURCE_GREF`] / [`copy::DEST_GREF`]) or the caller's own
    /// guest virtual address.
    pub gref_or_va: u64,
    /// The granting domain, for a grant reference.
    pub domid: u16,
    /// Byte offset in the granted frame, for a grant reference (`offset + len <= 4096`).
    pub offset: u16,
    pub pad: u32,
}

impl GrantPtr {
    /// `dom`'s grant `gref`, from byte `offset` of the granted frame.
    pub const fn granted(dom: u16, gref: u32, offset: u16) -> Self {
        Self {
            gref_or_va: gref as u64,
            domid: dom,
            offset,
            pad: 0,
        }
    }

    /// The caller's own memory at virtual address `va`.
    pub const fn local(va: u64) -> Self {
        Self {
            gref_or_va: va,
            domid: 0,
            offset: 0,
            pad: 0,
        }
    }
}

/// One copy: 40 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GrantCopy {
    pub source: GrantPtr,
    pub dest: GrantPtr,
    /// Bytes, at most 4096.
    pub len: u16,
    /// [`copy`] bits.
    pub flags: u16,
    /// Written by Ferrite: 0, or a negated errno.
    pub status: i32,
}

/// [`GrantCopy::flags`].
pub mod copy {
    /// `source` is a grant reference.
    pub const SOURCE_GREF: u16 = 1;
    /// `dest` is a grant reference.
    pub const DEST_GREF: u16 = 2;
}

const _: () = assert!(size_of::<GrantEntry>() == 8);
const _: () = assert!(size_of::<GrantPtr>() == 16);
const _: () = assert!(size_of::<GrantCopy>() == 40);
const _: () = assert!(core::mem::offset_of!(GrantCopy, status) == 36);
