//! The PMU's retired-instruction counter, filtered to EL2: how much work Ferrite itself does.
//! Under QEMU with `-icount shift=0` it counts exactly, which is what `make bench` reads.

use core::arch::asm;

const INST_RETIRED: u64 = 0x08;
/// PMEVTYPER filter: P (exclude EL1), U (exclude EL0), NSH (include EL2).
const EL2_ONLY: u64 = (1 << 31) | (1 << 30) | (1 << 27);

/// Starts event counter 0 counting instructions retired at EL2 on this CPU, from zero.
pub fn start() {
    // SAFETY: programs this CPU's PMU only; nothing else in Ferrite uses it.
    unsafe {
        asm!(
            "mrs {t}, mdcr_el2",
            "bic {t}, {t}, #(1 << 17)", // HPMD: allow counting at EL2
            "msr mdcr_el2, {t}",
            "msr pmselr_el0, xzr",
            "msr pmxevtyper_el0, {ev}",
            "msr pmevcntr0_el0, xzr",
            "mov {t}, #1",
            "msr pmcntenset_el0, {t}",
            "mrs {t}, pmcr_el0",
            "orr {t}, {t}, #1", // E: enable
            "msr pmcr_el0, {t}",
            "isb",
            t = out(reg) _,
            ev = in(reg) INST_RETIRED | EL2_ONLY,
            options(nostack),
        );
    }
}

/// Instructions retired at EL2 on this CPU since [`start`].
pub fn instructions() -> u64 {
    let v: u64;
    // SAFETY: reading this CPU's event counter 0.
    unsafe { asm!("isb", "mrs {}, pmevcntr0_el0", out(reg) v, options(nostack)) };
    v
}
