//! The current CPU: identity, exception level, caches, interrupt masking, waiting.

use aarch64_cpu::registers::{CurrentEL, ID_AA64MMFR0_EL1, MPIDR_EL1, TPIDR_EL2};
use core::arch::asm;
use tock_registers::interfaces::{Readable, Writeable};

use super::boot::MPIDR_AFFINITY_MASK;

pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// This CPU's affinity (Aff3..Aff0), as the device tree's `cpu` nodes name it.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & MPIDR_AFFINITY_MASK
}

/// Ferrite's index of this CPU (0 = the boot CPU), kept in TPIDR_EL2.
pub fn index() -> usize {
    TPIDR_EL2.get() as usize
}

pub fn set_index(i: usize) {
    TPIDR_EL2.set(i as u64);
}

/// ID_AA64MMFR0_EL1.PARange: 0 = 32 bits ... 5 = 48 bits, 6 = 52 bits.
pub fn pa_range_field() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange)
}

pub fn pa_bits() -> u32 {
    match pa_range_field() {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

pub fn dcache_line_size() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Zeroes `len` bytes of RAM at `pa`, a cache block at a time with `DC ZVA` (64 bytes per
/// instruction on the Cortex-A72, against 8 or 16 for stores: zeroing a new domain's memory was
/// most of its creation), falling back to stores where the CPU forbids it (DCZID_EL0.DZP) and
/// for the unaligned ends.
///
/// # Safety
/// `[pa, pa + len)` must be RAM in Ferrite's identity map (Normal memory: `DC ZVA` on Device
/// memory faults) that nothing else uses meanwhile.
pub unsafe fn zero_ram(pa: u64, len: u64) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    let block = 4u64 << (dczid & 0xf);
    let end = pa + len;
    // Eight blocks per loop turn, so the loop's own instructions are a small part.
    let chunk = block * 8;
    let first = pa.next_multiple_of(chunk).min(end);
    let last = (end / chunk * chunk).max(first);
    if dczid & (1 << 4) != 0 || first == last {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, len as usize) };
        return;
    }
    // SAFETY: the caller's contract, for the unaligned head and tail.
    unsafe {
        core::ptr::write_bytes(pa as *mut u8, 0, (first - pa) as usize);
        core::ptr::write_bytes(last as *mut u8, 0, (end - last) as usize);
    }
    let mut a = first;
    while a < last {
        // SAFETY: eight whole blocks inside the caller's range (`a` is chunk-aligned and below
        // `last`), which is Normal RAM nothing else uses.
        unsafe {
            asm!(
                "dc zva, {a}", "add {a}, {a}, {b}",
                "dc zva, {a}", "add {a}, {a}, {b}",
                "dc zva, {a}", "add {a}, {a}, {b}",
                "dc zva, {a}", "add {a}, {a}, {b}",
                "dc zva, {a}", "add {a}, {a}, {b}",
                "dc zva, {a}", "add {a}, {a}, {b}",
                "dc zva, {a}", "add {a}, {a}, {b}",
                "dc zva, {a}", "add {a}, {a}, {b}",
                a = inout(reg) a,
                b = in(reg) block,
                options(nostack, preserves_flags)
            )
        };
    }
}

/// Every guest's (EL1&0, every VMID) TLB entries, on every CPU: a destroyed domain's VMID is
/// given to the next domain with its id, which must not see the old translations.
pub fn tlb_flush_guests() {
    // SAFETY: invalidating TLB entries only makes later walks re-read the tables.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi alle1is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

pub fn tlb_flush_el2() {
    // SAFETY: invalidating EL2 TLB entries only makes later walks re-read the tables.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi alle2is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

pub fn irq_enable() {
    // SAFETY: unmasking IRQs at EL2; the vectors are installed before this is called.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack, preserves_flags)) };
}

pub fn irq_disable() {
    // SAFETY: masking IRQs only delays them.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack, preserves_flags)) };
}

/// Whether IRQs are masked at EL2 on this CPU (PSTATE.I).
pub fn irqs_masked() -> bool {
    let daif: u64;
    // SAFETY: reading DAIF has no side effects.
    unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
    daif & (1 << 7) != 0
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
    // SAFETY: signals an event to all CPUs; no memory effects.
    unsafe { asm!("dsb sy", "sev", options(nostack, preserves_flags)) };
}

/// Stops this CPU for good, with interrupts masked.
pub fn park() -> ! {
    irq_disable();
    loop {
        wfe();
    }
}

/// Per-CPU EL2 configuration: physical interrupts are taken at EL2 (HCR_EL2.IMO/FMO/AMO; without
/// them an IRQ would target EL1 and stay masked while Ferrite runs), lower ELs are AArch64.
pub fn init_el2() {
    use aarch64_cpu::registers::HCR_EL2;
    HCR_EL2.write(
        HCR_EL2::RW::EL1IsAarch64 + HCR_EL2::IMO::SET + HCR_EL2::FMO::SET + HCR_EL2::AMO::SET,
    );
    // An event stream from counter bit 9 (every 1024 ticks: 16 us at 62.5 MHz) bounds every
    // `wfe` wait, so waits sleep instead of spinning and still see timeouts.
    let cnthctl: u64;
    // SAFETY: read-modify-write of this CPU's CNTHCTL_EL2: EVNTI = 9, EVNTDIR = 0, EVNTEN = 1.
    unsafe {
        asm!("mrs {}, cnthctl_el2", out(reg) cnthctl, options(nomem, nostack));
        // EL1PCEN (bit 1) clear: guests may not program the EL1 physical timer, which is
        // not switched with them; they use the virtual timer. EL1PCTEN (bit 0): they may read
        // the physical counter.
        let v = (cnthctl & !((0xf << 4) | (1 << 3) | (1 << 1))) | (9 << 4) | (1 << 2) | 1;
        asm!("msr cnthctl_el2, {}", in(reg) v, options(nomem, nostack));
    }
    // HCRX_EL2 (FEAT_HCX, ID_AA64MMFR1_EL1.HCX [43:40]) all zero: in particular TCR2En = 0,
    // so TCR2_EL1 (permission indirection, 128-bit descriptors and the like) stays disabled for
    // guests and a PV guest's descriptors mean what Ferrite validated.
    if (read_id_reg(7, 1) >> 40) & 0xf != 0 {
        // SAFETY: HCRX_EL2 (S3_4_C1_C2_2) only affects guests.
        unsafe { asm!("msr S3_4_C1_C2_2, xzr", options(nomem, nostack)) };
    }
    // SAFETY: barrier only.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// Reads the ID register `S3_0_C0_C<crm>_<op2>` (CRm 1..=7), as EL2 sees it: the real value.
/// Encodings the CPU leaves unallocated read as zero.
pub fn read_id_reg(crm: u8, op2: u8) -> u64 {
    macro_rules! id {
        ($($crm:literal: $($op2:literal)+;)+) => {
            match (crm, op2) {
                $($(($crm, $op2) => {
                    let v: u64;
                    // SAFETY: reading an ID register has no side effects.
                    unsafe {
                        asm!(concat!("mrs {}, S3_0_C0_C", $crm, "_", $op2), out(reg) v,
                            options(nomem, nostack, preserves_flags))
                    };
                    v
                })+)+
                _ => 0,
            }
        };
    }
    id! {
        1: 0 1 2 3 4 5 6 7;
        2: 0 1 2 3 4 5 6 7;
        3: 0 1 2 3 4 5 6 7;
        4: 0 1 2 3 4 5 6 7;
        5: 0 1 2 3 4 5 6 7;
        6: 0 1 2 3 4 5 6 7;
        7: 0 1 2 3 4 5 6 7;
    }
}

/// Invalidates all instruction caches to the point of unification (after loading guest code).
pub fn invalidate_icache() {
    // SAFETY: cache maintenance only.
    unsafe {
        asm!(
            "dsb ish",
            "ic ialluis",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
