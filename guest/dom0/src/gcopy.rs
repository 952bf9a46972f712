//! Grants for dom0's backends: copies (`GNTTAB_OP COPY`, one op at a time), and mappings into
//! Ferrite's grant window (`GNTTAB_OP MAP`/`UNMAP`) for rings that are read often and for data
//! a device moves by DMA (a mapped page's machine address is recorded for the virtio HAL).

use crate::psci::hypercall;
use ferrite_abi::call;
use ferrite_abi::grant::{self, GrantCopy, GrantPtr, copy};
use ferrite_abi::ring::Pod;
use ferrite_abi::{Errno, errno};

fn gref(gref: u32, dom: u16, offset: usize) -> GrantPtr {
    GrantPtr::granted(dom, gref, offset as u16)
}

fn local(p: *const u8) -> GrantPtr {
    GrantPtr::local(p as u64)
}

/// One grant copy; its status as a `Result`.
pub fn copy1(mut op: GrantCopy) -> Result<(), Errno> {
    let r = hypercall(call::GNTTAB_OP, grant::COPY, &raw mut op as u64, 1);
    errno::result(r as u64)?;
    if op.status != 0 {
        return Err(Errno::from_ret(op.status as i64).unwrap_or(Errno::Inval));
    }
    Ok(())
}

/// Copies from `dom`'s grant `g` at `offset` into `into`.
pub fn read_from(dom: u16, g: u32, offset: usize, into: &mut [u8]) -> Result<(), Errno> {
    copy1(GrantCopy {
        source: gref(g, dom, offset),
        dest: local(into.as_mut_ptr()),
        len: into.len() as u16,
        flags: copy::SOURCE_GREF,
        status: 0,
    })
}

/// Copies `from` into `dom`'s grant `g` at `offset`.
pub fn write_to(dom: u16, g: u32, offset: usize, from: &[u8]) -> Result<(), Errno> {
    copy1(GrantCopy {
        source: local(from.as_ptr()),
        dest: gref(g, dom, offset),
        len: from.len() as u16,
        flags: copy::DEST_GREF,
        status: 0,
    })
}

/// A `Pod` value read from a grant.
pub fn read_pod<T: Pod + Default>(dom: u16, g: u32, offset: usize) -> Result<T, Errno> {
    let mut v = T::default();
    // SAFETY: `T: Pod`: any bytes make a valid value; the slice covers exactly `v`.
    let raw = unsafe { core::slice::from_raw_parts_mut((&raw mut v).cast::<u8>(), size_of::<T>()) };
    read_from(dom, g, offset, raw)?;
    Ok(v)
}

/// A `Pod` value written to a grant.
pub fn write_pod<T: Pod>(dom: u16, g: u32, offset: usize, v: &T) -> Result<(), Errno> {
    // SAFETY: `Pod` types are plain integers; reading their bytes is fine.
    let raw = unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) };
    write_to(dom, g, offset, raw)
}

/// A ring index (u32) at `offset`.
pub fn read_u32(dom: u16, g: u32, offset: usize) -> Result<u32, Errno> {
    let mut b = [0u8; 4];
    read_from(dom, g, offset, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

pub fn write_u32(dom: u16, g: u32, offset: usize, v: u32) -> Result<(), Errno> {
    write_to(dom, g, offset, &v.to_le_bytes())
}

/// Maps `dom`'s grant `g` into the grant window: (guest-physical address, machine address).
pub fn map(dom: u16, g: u32, readonly: bool) -> Result<(u64, u64), Errno> {
    let mut ma = 0;
    let fl = if readonly { grant::MAP_READONLY } else { 0 };
    let r = crate::psci::hypercall4_x1(
        call::GNTTAB_OP,
        grant::MAP,
        dom as u64,
        g as u64,
        fl,
        &mut ma,
    );
    let ipa = errno::result(r as u64)?;
    crate::virtio::record_grant(ipa, ma);
    Ok((ipa, ma))
}

/// Undoes [`map`].
pub fn unmap(ipa: u64) -> Result<(), Errno> {
    crate::virtio::forget_grant(ipa);
    errno::result(hypercall(call::GNTTAB_OP, grant::UNMAP, ipa, 0) as u64).map(drop)
}
