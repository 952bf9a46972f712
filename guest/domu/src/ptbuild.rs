//! `ptbuild`: builds a new lower-half address space the PV way (docs/abi.md, "Building and
//! switching address spaces") and takes it down again:
//!
//! 1. four fresh frames become L0..L3: their entries are written through the ordinary writable
//!    map, then those mappings are made read-only ("sealed") with one `MMU_UPDATE`;
//! 2. `PIN_L0_TABLE` the root (Ferrite validates the tree) and `NEW_TTBR0` with ASID 1;
//! 3. 512 pages at [`VA`] mapped writable to free frames with one `MMU_UPDATE` of 512 entries;
//!    the descriptors are read back through the initial map;
//! 4. patterns written through the new mapping are read back through the initial map;
//! 5. `NEW_TTBR0` 0, `UNPIN_TABLE`, TLB flush; the old VA must fault now;
//! 6. the four frames are made writable again (they are ordinary frames once more) and
//!    written.

use ferrite_abi::desc::{self, AP_RO, NG, NORMAL, PXN, UXN};
use ferrite_abi::mmu::{MmuextOp, ext};
use ferrite_pv::exceptions::{TrapKind, try_insn};
use ferrite_pv::mm::{Machine, MmError};

/// Where the new address space maps its pages (level-0 index 0, level-1 index 256).
pub const VA: u64 = 0x40_0000_0000;
/// Pages mapped with one call.
const PAGES: u64 = 512;
/// Frames left alone for other uses.
const KEEP_FREE: u64 = 16;
const PATTERN: u64 = 0x5afe_f00d_0000_0000;

/// A failed step: its name and what went wrong.
struct Fail {
    step: &'static str,
    why: Why,
}

enum Why {
    Mm(MmError),
    Text(&'static str),
    Mismatch { at: u64, got: u64, want: u64 },
}

trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, Fail>;
}

impl<T> Step<T> for Result<T, MmError> {
    fn step(self, step: &'static str) -> Result<T, Fail> {
        self.map_err(|e| Fail {
            step,
            why: Why::Mm(e),
        })
    }
}

fn fail<T>(step: &'static str, why: &'static str) -> Result<T, Fail> {
    Err(Fail {
        step,
        why: Why::Text(why),
    })
}

fn check(step: &'static str, at: u64, got: u64, want: u64) -> Result<(), Fail> {
    if got == want {
        Ok(())
    } else {
        Err(Fail {
            step,
            why: Why::Mismatch { at, got, want },
        })
    }
}

pub fn run() {
    match build() {
        Ok((n, k)) => out!("ptbuild: ok ({n} entries in {k} calls)"),
        Err(Fail { step, why }) => match why {
            Why::Mm(e) => match e.errno() {
                Some(errno) => out!("ptbuild: FAIL at {step}: {errno} ({e})"),
                None => out!("ptbuild: FAIL at {step}: {e}"),
            },
            Why::Text(t) => out!("ptbuild: FAIL at {step}: {t}"),
            Why::Mismatch { at, got, want } => {
                out!("ptbuild: FAIL at {step}: {at:#x} holds {got:#x}, expected {want:#x}")
            }
        },
    }
}

fn build() -> Result<(u64, u64), Fail> {
    let mut mm = crate::mm();
    let start = mm.stats();

    // 1. Tables, written while still ordinary writable frames, then sealed.
    let mut t = [(0u64, 0u64); 4];
    for slot in &mut t {
        *slot = mm.alloc_zeroed().step("allocating table frames")?;
    }
    for l in 0..3 {
        let pte = t[l].1 + desc::index(VA, l as u8) as u64 * 8;
        // SAFETY: a frame just allocated, not yet a table: nothing else uses it.
        if !unsafe { mm.machine.write_u64(pte, desc::table(t[l + 1].1)) } {
            return fail(
                "writing tables",
                "a fresh frame is not writable in the initial map",
            );
        }
    }
    for &(pfn, _) in &t {
        // SAFETY: the frames are written; nothing writes them any more.
        unsafe { mm.set_initial_writable(pfn, false) }.step("sealing the tables")?;
    }
    mm.flush().step("sealing the tables")?;
    for &(pfn, _) in &t {
        let pte = mm.initial_pte(pfn).step("reading the initial map")?;
        let d = mm.read_desc(pte & !0xfff, ((pte & 0xfff) / 8) as usize);
        if d.step("reading the initial map")? & AP_RO == 0 {
            return fail("sealing the tables", "a table frame is still writable");
        }
    }

    // 2. Pin the root and make it TTBR0's base.
    let root = t[0].1;
    // SAFETY: nothing of ours lives in the lower half.
    unsafe {
        mm.ext(&[
            MmuextOp::pin(0, root),
            MmuextOp::new(ext::NEW_TTBR0, root, 1),
        ])
    }
    .step("PIN_L0_TABLE + NEW_TTBR0")?;

    // 3. 512 pages with one call.
    let avail = mm.alloc.remaining().saturating_sub(KEEP_FREE).min(PAGES);
    if avail == 0 {
        return fail("allocating data frames", "no free frames");
    }
    let mut data = [0u64; PAGES as usize];
    for d in data.iter_mut().take(avail as usize) {
        *d = mm.alloc_frame().step("allocating data frames")?.0;
    }
    let leaf = |ma: u64| desc::page(ma, NORMAL | NG | UXN | PXN);
    let before = mm.stats();
    for i in 0..PAGES {
        let ma = mm.frames.ma(data[(i % avail) as usize]).unwrap_or(0);
        // SAFETY: a new mapping in the lower half, which nothing of ours uses.
        unsafe { mm.queue(t[3].1 + i * 8, leaf(ma), None) }.step("mapping 512 pages")?;
    }
    mm.flush().step("mapping 512 pages")?;
    let after = mm.stats();
    if after.update_calls - before.update_calls != 1 {
        return fail(
            "mapping 512 pages",
            "the 512 entries took more than one call",
        );
    }
    for i in 0..PAGES {
        let ma = mm.frames.ma(data[(i % avail) as usize]).unwrap_or(0);
        let got = mm
            .read_desc(t[3].1, i as usize)
            .step("reading the new L3")?;
        check("reading the new L3", t[3].1 + i * 8, got, leaf(ma))?;
    }

    // 4. Write through the new mapping, read through the initial one (and the aliases).
    for i in 0..avail {
        let p = (VA + i * 4096 + (i % 512) * 8) as *mut u64;
        // SAFETY: VA + i pages maps data frame i, writable, used by nothing else.
        unsafe { core::ptr::write_volatile(p, PATTERN ^ i) };
    }
    for i in 0..avail {
        let va = mm.frames.va(data[i as usize]) + (i % 512) * 8;
        // SAFETY: the initial map covers every frame of the domain.
        let got = unsafe { core::ptr::read_volatile(va as *const u64) };
        check("reading back through the initial map", va, got, PATTERN ^ i)?;
    }
    for i in 0..PAGES {
        let k = i % avail;
        let va = VA + i * 4096 + (k % 512) * 8;
        // SAFETY: mapped above.
        let got = unsafe { core::ptr::read_volatile(va as *const u64) };
        check("reading back through the new map", va, got, PATTERN ^ k)?;
    }

    // 5. Back to an empty TTBR0; the tree goes with its pin.
    // SAFETY: nothing of ours lives in the lower half any more.
    unsafe {
        mm.ext(&[
            MmuextOp::new(ext::NEW_TTBR0, 0, 0),
            MmuextOp::unpin(root),
            MmuextOp::new(ext::TLB_FLUSH_LOCAL, 0, 0),
        ])
    }
    .step("NEW_TTBR0 0 + UNPIN_TABLE")?;
    // SAFETY: a read of an address that must now fault; try_insn skips it.
    let trap = try_insn(|| unsafe {
        core::ptr::read_volatile(VA as *const u64);
    });
    match trap.map(|t| t.kind()) {
        Some(TrapKind::Translation { .. }) => {}
        Some(_) => {
            return fail(
                "after NEW_TTBR0 0",
                "the old VA faults, but not by translation",
            );
        }
        None => return fail("after NEW_TTBR0 0", "the old VA is still mapped"),
    }

    // 6. The tables are ordinary frames again.
    for &(pfn, _) in &t {
        // SAFETY: making our own free frames writable again.
        unsafe { mm.set_initial_writable(pfn, true) }.step("making the tables writable again")?;
    }
    mm.flush().step("making the tables writable again")?;
    for (n, &(pfn, ma)) in t.iter().enumerate() {
        // SAFETY: the frame is ours and unused; writable again (a refusal returns false).
        if !unsafe { mm.machine.write_u64(ma + 8, PATTERN | n as u64) } {
            return fail("reusing the tables", "not writable");
        }
        let got = mm.read_desc(ma, 1).step("reusing the tables")?;
        check("reusing the tables", ma + 8, got, PATTERN | n as u64)?;
        mm.free_frame(pfn);
    }
    for &pfn in data.iter().take(avail as usize) {
        mm.free_frame(pfn);
    }
    let end = mm.stats();
    Ok((
        end.updates - start.updates,
        end.update_calls - start.update_calls,
    ))
}
