//! The current vCPU: identity, exception level, caches, interrupt masking, waiting.

use aarch64_cpu::registers::{CurrentEL, DAIF, ID_AA64MMFR0_EL1, MPIDR_EL1, TPIDR_EL1};
use core::arch::asm;
use tock_registers::interfaces::{Readable, Writeable};

/// MPIDR affinity fields (Aff3, Aff2, Aff1, Aff0), the vCPU's identity in the device tree.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// This vCPU's affinity (Aff3..Aff0), as the device tree's `cpu` nodes name it.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
}

/// dom0's index of this vCPU (0 = the boot vCPU), kept in TPIDR_EL1.
pub fn index() -> usize {
    TPIDR_EL1.get() as usize
}

pub fn set_index(i: usize) {
    TPIDR_EL1.set(i as u64);
}

/// ID_AA64MMFR0_EL1.PARange: 0 = 32 bits ... 5 = 48 bits, 6 = 52 bits.
pub fn pa_range_field() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange)
}

pub fn dcache_line_size() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    4 << ((ctr >> 16) & 0xf)
}

pub fn irq_enable() {
    // SAFETY: unmasking IRQs at EL1; the vectors are installed at entry.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack, preserves_flags)) };
}

pub fn irq_disable() {
    // SAFETY: masking IRQs only delays them.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack, preserves_flags)) };
}

pub fn irqs_masked() -> bool {
    DAIF.is_set(DAIF::I)
}

/// Runs `f` with IRQs masked on this vCPU, restoring the previous state after.
pub fn with_irqs_masked<R>(f: impl FnOnce() -> R) -> R {
    let was_masked = irqs_masked();
    irq_disable();
    let r = f();
    if !was_masked {
        irq_enable();
    }
    r
}

pub fn wfi() {
    // SAFETY: waits for an interrupt; no memory effects.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

pub fn wfe() {
    // SAFETY: waits for an event; no memory effects.
    unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

pub fn sev() {
    // SAFETY: signals an event to all vCPUs; no memory effects beyond the barrier.
    unsafe { asm!("dsb sy", "sev", options(nostack, preserves_flags)) };
}

/// Stops this vCPU for good, with interrupts masked.
pub fn park() -> ! {
    irq_disable();
    loop {
        wfe();
    }
}
