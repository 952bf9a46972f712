//! `evil`'s instruction attempts: writes to the translation registers Ferrite owns (it must
//! answer with an Undefined exception) and stores into page tables through their read-only
//! mappings (a permission fault, taken by this domain's own vectors). Each runs under
//! [`try_insn`], which records the exception and skips the instruction; a filler instruction
//! follows each `msr`/`mrs`, so the skip lands well whether an injected exception returns to
//! the instruction or to the one after it.

use super::{Evil, Outcome};
use core::arch::asm;
use ferrite_abi::mmu::ext;
use ferrite_pv::exceptions::try_insn;
use ferrite_pv::hypercall::{self, DOMID_SELF};

/// Reads a system register under [`try_insn`]: `(value, exception)`.
macro_rules! try_mrs {
    ($reg:literal) => {{
        let mut v: u64 = 0;
        // SAFETY: reading a system register changes nothing; if it traps, try_insn skips it.
        let t = try_insn(|| unsafe {
            asm!(concat!("mrs {}, ", $reg), "nop", out(reg) v, options(nostack))
        });
        (v, t)
    }};
}

/// Writes a system register under [`try_insn`]; the exception, if one came back.
macro_rules! try_msr {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the writes here are ones Ferrite must refuse; each value is chosen to be
        // harmless if it does not (and is then written back), except SCTLR_EL1.M = 0, tried
        // last on purpose.
        try_insn(|| unsafe { asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) v, options(nostack)) })
    }};
}

/// Tries changing a register Ferrite fixes: refused (undef) or, if allowed, written back.
macro_rules! change_and_restore {
    ($e:expr, $name:literal, $reg:literal, $change:expr) => {{
        let (old, t) = try_mrs!($reg);
        if t.is_some() {
            $e.report(
                $name,
                "undef",
                Outcome::Skip(concat!("mrs ", $reg, " trapped")),
            );
        } else {
            let change: fn(u64) -> u64 = $change;
            let t = try_msr!($reg, change(old));
            if t.is_none() {
                try_msr!($reg, old);
            }
            $e.report($name, "undef", Outcome::of_trap(t));
        }
    }};
}

pub fn system_registers(e: &mut Evil) {
    // TTBR0 := the initial root with ASID 5: a change whatever TTBR0 holds (it is empty).
    let t = try_msr!("ttbr0_el1", e.s.si.pt_base_ma | (5 << 48));
    if t.is_none() {
        // SAFETY: back to an empty lower half, which nothing of ours uses.
        unsafe {
            let op = [ferrite_abi::mmu::MmuextOp::new(ext::NEW_TTBR0, 0, 0)];
            hypercall::mmuext_op(&op, DOMID_SELF);
        }
    }
    e.report("msr ttbr0", "undef", Outcome::of_trap(t));
    // TTBR1's ASID field is ignored (TCR_EL1.A1 = 0): changing it would be harmless.
    change_and_restore!(e, "msr ttbr1", "ttbr1_el1", |v| v ^ (1 << 48));
    // T0SZ + 1: only the (empty) lower half would change.
    change_and_restore!(e, "msr tcr", "tcr_el1", |v| (v & !0x3f) | ((v & 0x3f) + 1));
    // Attribute index 3, which nothing uses.
    change_and_restore!(e, "msr mair", "mair_el1", |v| v ^ (0xff << 24));
    change_and_restore!(e, "msr amair", "amair_el1", |v| v ^ 1);
}

/// Stores into page tables through their read-only mappings, writing back what is there.
pub fn memory(e: &mut Evil) {
    let root = (e.s.si.pt_base + 511 * 8) as *mut u64;
    let scratch = e.s.frames.ma_to_va(e.s.t3).map(|va| va as *mut u64);
    for (name, p) in [
        ("write page table directly (initial root)", Some(root)),
        ("write page table directly (pinned table)", scratch),
    ] {
        let Some(p) = p else {
            e.report(name, "fault", Outcome::Skip("no mapping of the table"));
            continue;
        };
        // SAFETY: the page is mapped (read-only) in the initial map.
        let v = unsafe { core::ptr::read_volatile(p) };
        // SAFETY: the store must fault; if it does not, it wrote back the same value.
        let t = try_insn(|| unsafe { core::ptr::write_volatile(p, v) });
        e.report(name, "fault", Outcome::of_trap(t));
    }
}

/// SCTLR_EL1.M = 0: if Ferrite allowed it the domain would lose its MMU (and, here, its
/// next instruction), so it is the very last attempt.
pub fn sctlr_mmu_off(e: &mut Evil) {
    let (sctlr, t) = try_mrs!("sctlr_el1");
    if t.is_some() {
        e.report(
            "msr sctlr mmu off",
            "undef",
            Outcome::Skip("mrs sctlr_el1 trapped"),
        );
        return;
    }
    let t = try_msr!("sctlr_el1", sctlr & !1);
    e.report("msr sctlr mmu off", "undef", Outcome::of_trap(t));
}
