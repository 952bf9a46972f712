//! The current vCPU: its index, interrupt masking, TLB maintenance, waiting.
//!
//! The vCPU index (0 = the boot vCPU, as `VCPU_OP` numbers them) lives in TPIDR_EL1, set by the
//! entry code. Off aarch64 (host tests) these are inert stand-ins: index 0, no-ops.

/// The most vCPUs this library tracks: the shared-info page's slots.
pub const MAX_VCPUS: usize = ferrite_abi::shared_info::MAX_VCPUS;

#[cfg(target_arch = "aarch64")]
mod imp {
    use core::arch::asm;

    pub fn index() -> usize {
        let v: u64;
        // SAFETY: reading TPIDR_EL1 has no side effects.
        unsafe { asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
        v as usize
    }

    pub fn set_index(i: usize) {
        // SAFETY: TPIDR_EL1 is software's; only this library gives it a meaning.
        unsafe {
            asm!("msr tpidr_el1, {}", in(reg) i as u64, options(nomem, nostack, preserves_flags))
        };
    }

    pub fn irq_mask() {
        // SAFETY: masking IRQs only delays them.
        unsafe { asm!("msr daifset, #2", options(nomem, nostack, preserves_flags)) };
    }

    pub fn irq_unmask() {
        // SAFETY: the vectors are installed by the entry code before any Rust runs; the
        // barrier makes a pending IRQ be taken here, not some instructions later. Not
        // `nomem`: the handler may change memory the caller then reads.
        unsafe { asm!("msr daifclr, #2", "isb", options(nostack, preserves_flags)) };
    }

    pub fn irqs_masked() -> bool {
        let daif: u64;
        // SAFETY: reading DAIF has no side effects.
        unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
        daif & (1 << 7) != 0
    }

    pub fn tlbi_va(va: u64) {
        // SAFETY: invalidating TLB entries only makes the next access walk the tables.
        unsafe {
            asm!(
                "dsb ishst",
                "tlbi vaae1is, {}",
                in(reg) (va >> 12) & ((1 << 44) - 1),
                options(nostack, preserves_flags)
            )
        };
    }

    pub fn tlbi_all() {
        // SAFETY: as above, for every entry of this VMID.
        unsafe {
            asm!(
                "dsb ishst",
                "tlbi vmalle1is",
                options(nostack, preserves_flags)
            )
        };
    }

    pub fn tlb_sync() {
        // SAFETY: barriers only.
        unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }

    pub fn wfe() {
        // SAFETY: waits for an event; no memory effects.
        unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
    }

    pub fn wfi() {
        // SAFETY: waits for an interrupt (or traps to Ferrite, which blocks the vCPU); the
        // upcall is taken only once the caller unmasks, so no memory changes here.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }

    pub fn isb() {
        // SAFETY: barrier only.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };
    }
}

#[cfg(not(target_arch = "aarch64"))]
mod imp {
    pub fn index() -> usize {
        0
    }
    pub fn set_index(_i: usize) {}
    pub fn irq_mask() {}
    pub fn irq_unmask() {}
    pub fn irqs_masked() -> bool {
        true
    }
    pub fn tlbi_va(_va: u64) {}
    pub fn tlbi_all() {}
    pub fn tlb_sync() {}
    pub fn wfe() {}
    pub fn wfi() {}
    pub fn isb() {}
}

/// This vCPU's index (0 = the boot vCPU).
pub fn index() -> usize {
    imp::index()
}

/// Records this vCPU's index (the entry code does it; a guest with its own entry must too).
pub fn set_index(i: usize) {
    imp::set_index(i)
}

/// PSTATE.I = 1: upcalls wait.
pub fn irq_mask() {
    imp::irq_mask()
}

/// PSTATE.I = 0: a pending upcall is taken now.
pub fn irq_unmask() {
    imp::irq_unmask()
}

pub fn irqs_masked() -> bool {
    imp::irqs_masked()
}

/// Runs `f` with IRQs masked, restoring the previous state after.
pub fn with_irqs_masked<R>(f: impl FnOnce() -> R) -> R {
    let was = irqs_masked();
    irq_mask();
    let r = f();
    if !was {
        irq_unmask();
    }
    r
}

/// TLBI VAAE1IS: drops every CPU's entries for the page at `va`, in all ASIDs. Completes at the
/// next [`tlb_sync`].
pub fn tlbi_va(va: u64) {
    imp::tlbi_va(va)
}

/// TLBI VMALLE1IS: drops all of the domain's entries on every CPU. Completes at [`tlb_sync`].
pub fn tlbi_all() {
    imp::tlbi_all()
}

/// DSB ISH; ISB: waits for earlier TLB invalidations.
pub fn tlb_sync() {
    imp::tlb_sync()
}

pub fn isb() {
    imp::isb()
}

/// Waits for an interrupt: the idle wait of a vCPU with IRQs masked, as `SCHED_OP BLOCK`
/// (Ferrite traps it and blocks the vCPU until an upcall is pending), but with `vwfi=native`
/// and nothing else waiting for this pCPU it waits at EL1 without a trap, woken by the upcall
/// line (docs/abi.md: upcalls must then be unmasked in `vcpu_info`).
pub fn wfi() {
    imp::wfi()
}

/// Stops this vCPU for good, IRQs masked (it still runs: Ferrite sees a vCPU in WFE).
pub fn park() -> ! {
    irq_mask();
    loop {
        imp::wfe();
    }
}
