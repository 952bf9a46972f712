//! Checked access to a running vCPU's memory by its virtual addresses: the hypercall buffers
//! a guest names. The address is translated the way the guest's own access would be (stage 1
//! and stage 2, with AT S12E1R/W), and the result must lie in memory the domain owns, so a
//! guest can make Ferrite read or write nothing but its own pages.

use crate::mm::region::Region;
use core::arch::asm;

const PAGE: u64 = 4096;

/// The physical address of guest VA `va` for a read (or a write), if the guest could make that
/// access itself.
fn translate(va: u64, write: bool) -> Option<u64> {
    let (par, saved): (u64, u64);
    // SAFETY: address translation for the guest (EL1&0 regime, whose registers are the
    // guest's, live on this CPU). PAR_EL1 belongs to the guest, so it is put back.
    unsafe {
        asm!("mrs {}, par_el1", out(reg) saved, options(nomem, nostack));
        if write {
            asm!("at s12e1w, {}", "isb", in(reg) va, options(nostack));
        } else {
            asm!("at s12e1r, {}", "isb", in(reg) va, options(nostack));
        }
        asm!("mrs {}, par_el1", out(reg) par, options(nomem, nostack));
        asm!("msr par_el1, {}", in(reg) saved, options(nomem, nostack));
    }
    (par & 1 == 0).then_some((par & 0x000f_ffff_ffff_f000) | (va & (PAGE - 1)))
}

/// The physical address guest VA `va` reads, if the guest could read it itself. For a caller
/// that reads the memory in place once it has checked (and holds) that it is the domain's.
pub fn translate_read(va: u64) -> Option<u64> {
    translate(va, false)
}

/// Copies `out.len()` bytes from guest VA `va` into `out`. Every page must translate and lie
/// in `owned` (the domain's RAM). Returns false, copying nothing further, on the first page
/// that does not.
pub fn read(va: u64, out: &mut [u8], owned: &[Region]) -> bool {
    read_with(va, out, |r| owned.iter().any(|o| o.contains_region(&r)))
}

/// As [`read`], with `owns` deciding whether a piece of physical memory is the domain's.
pub fn read_with(va: u64, out: &mut [u8], owns: impl Fn(Region) -> bool) -> bool {
    let mut done = 0usize;
    while done < out.len() {
        let at = va.wrapping_add(done as u64);
        let chunk = ((PAGE - (at & (PAGE - 1))) as usize).min(out.len() - done);
        let Some(pa) = translate(at, false) else {
            return false;
        };
        if !owns(Region::new(pa, chunk as u64)) {
            return false;
        }
        copy_in(pa, &mut out[done..done + chunk]);
        done += chunk;
    }
    true
}

/// Copies guest RAM at `pa` into `out`.
fn copy_in(pa: u64, out: &mut [u8]) {
    // SAFETY: `pa..pa + out.len()` is the domain's RAM (checked by the caller), identity-mapped
    // in Ferrite's map; `out` is ours.
    unsafe { copy(out.as_mut_ptr(), pa as *const u8, out.len()) };
}

/// Copies `len` bytes, a 64-bit word at a time where source and destination are at the same
/// offset in a word (hypercall batches, grant copies of whole sectors and frames; a frame's
/// body after its 14-byte header: the bytes up to the next word boundary go one by one first):
/// this soft-float build's `memcpy` goes byte by byte. Guest memory may change meanwhile, which
/// only changes the bytes copied (volatile loads: the compiler may not assume otherwise).
///
/// # Safety
/// `src..src + len` must be readable and `dst..dst + len` writable, not overlapping.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    let mut i = 0;
    if (dst as usize ^ src as usize).is_multiple_of(8) {
        let head = ((8 - dst as usize % 8) % 8).min(len);
        while i < head {
            // SAFETY: the caller's contract.
            unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
            i += 1;
        }
        // Both 8-aligned from here.
        let blocks = (len - i) / 64;
        if blocks > 0 {
            // 64 bytes a turn in load/store pairs: 12 instructions where the word loop below
            // takes 40 (a saved page, a grant copy of a frame: a third of the time).
            // SAFETY: the caller's contract covers `blocks * 64` bytes from each pointer at
            // `i`; both are 8-aligned there, which is all LDP/STP of X registers need. The asm
            // reads and writes nothing else.
            unsafe {
                asm!(
                    "2:",
                    "ldp {a}, {b}, [{s}]",
                    "ldp {c}, {d}, [{s}, #16]",
                    "stp {a}, {b}, [{t}]",
                    "stp {c}, {d}, [{t}, #16]",
                    "ldp {a}, {b}, [{s}, #32]",
                    "ldp {c}, {d}, [{s}, #48]",
                    "stp {a}, {b}, [{t}, #32]",
                    "stp {c}, {d}, [{t}, #48]",
                    "add {s}, {s}, #64",
                    "add {t}, {t}, #64",
                    "subs {n}, {n}, #1",
                    "b.ne 2b",
                    s = inout(reg) src.add(i) => _,
                    t = inout(reg) dst.add(i) => _,
                    n = inout(reg) blocks => _,
                    a = out(reg) _, b = out(reg) _, c = out(reg) _, d = out(reg) _,
                    options(nostack)
                )
            };
            i += blocks * 64;
        }
        while i + 8 <= len {
            // SAFETY: the caller's contract; both pointers 8-aligned at `i`.
            unsafe {
                let w = core::ptr::read_volatile(src.add(i).cast::<u64>());
                core::ptr::write_volatile(dst.add(i).cast::<u64>(), w);
            }
            i += 8;
        }
    }
    while i < len {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
        i += 1;
    }
}

/// Copies `data` to guest VA `va`, which the guest must be able to write itself. `writable`
/// decides, for each piece of physical memory, whether Ferrite may write it for the domain
/// (the domain's RAM, and for a PV domain not one of its page tables) and performs the copy
/// while it holds whatever keeps that true (`copy` does the store). Returns false on the first
/// page that fails, with the pages before it written.
pub fn write_with(va: u64, data: &[u8], writable: impl Fn(Region, &dyn Fn()) -> bool) -> bool {
    // SAFETY: `data` is readable for its length and is not guest memory `va` names (the
    // borrow).
    unsafe { write_from(va, data.as_ptr(), data.len(), writable) }
}

/// As [`write_with`], from `len` bytes at `src` rather than a slice: for a copy straight out
/// of memory that is not Ferrite's (another domain's frame, read with volatile loads, so it
/// may change meanwhile) without a copy in between.
///
/// # Safety
/// `src..src + len` must be readable (RAM in Ferrite's identity map) for the whole call and
/// not overlap the memory `va` translates to.
pub unsafe fn write_from(
    va: u64,
    src: *const u8,
    len: usize,
    writable: impl Fn(Region, &dyn Fn()) -> bool,
) -> bool {
    let mut done = 0usize;
    while done < len {
        let at = va.wrapping_add(done as u64);
        let chunk = ((PAGE - (at & (PAGE - 1))) as usize).min(len - done);
        let Some(pa) = translate(at, true) else {
            return false;
        };
        let copy = || {
            // SAFETY: `pa..pa + chunk` is memory `writable` accepted for the domain (its RAM,
            // identity-mapped in Ferrite's map), and `writable` holds it in that state while
            // this runs; the source is readable and apart from it (the caller's contract).
            unsafe { copy(pa as *mut u8, src.add(done), chunk) };
        };
        if !writable(Region::new(pa, chunk as u64), &copy) {
            return false;
        }
        done += chunk;
    }
    true
}
