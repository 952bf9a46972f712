//! Entering a vCPU: the EL2 controls that confine each kind of guest, and the first exception
//! return into a vCPU on a CPU. Once a vCPU runs, every exit comes back through the EL2
//! vectors with its registers in a [`TrapFrame`] on this CPU's stack, and leaves by the same
//! path (possibly as another vCPU: see `arch::context` and `vm::sched`).

use super::boot::MAX_CPUS;
use super::context::SPSR_EL1H_MASKED;
use super::cpu;
use super::exceptions::TrapFrame;
use core::arch::{asm, global_asm};

/// HCR_EL2 while dom0 runs: stage 2 on (VM), set/way invalidates upgraded (SWIO),
/// interrupts routed to EL2 (IMO/FMO/AMO), SMC trapped (TSC), WFI trapped (TWI), ID registers
/// trapped for sanitising (TID3), TLB and barrier operations broadcast inner-shareable (FB,
/// BSU), EL1 is AArch64 (RW).
const HCR_GUEST: u64 = (1 << 0) // VM
    | (1 << 1) // SWIO
    | (1 << 3) // FMO
    | (1 << 4) // IMO
    | (1 << 5) // AMO
    | (1 << 9) // FB
    | (1 << 10) // BSU inner shareable
    | (1 << 13) // TWI
    | (1 << 18) // TID3
    | (1 << 19) // TSC
    | (1 << 31); // RW

/// HCR_EL2 for a PV domU: stage 2 off (its tables hold machine addresses, and validation
/// confines it), writes to the translation controls trapped (TVM) so they can be checked,
/// implementation-defined ACTLR_EL1 trapped (TACR); otherwise as [`HCR_GUEST`]. FB makes the
/// guest's own TLB invalidations reach every CPU it may migrate to; SWIO keeps a set/way
/// invalidate from discarding other domains' dirty lines.
const HCR_PV: u64 = (HCR_GUEST & !(1 << 0)) | (1 << 26) | (1 << 21);

/// HCR_EL2.TWI: a WFI at EL1 traps to EL2 (cleared while `vwfi=native` allows).
pub const HCR_TWI: u64 = 1 << 13;

/// HCR_EL2.VI: the virtual IRQ line (a PV upcall).
pub const HCR_VI: u64 = 1 << 7;

/// HCR_EL2.APK (bit 40) and API (bit 41): the guest uses pointer authentication (its keys and
/// instructions) without trapping, where the CPU has it; the world switch saves the keys.
fn hcr_pauth() -> u64 {
    if super::context::has_pauth() {
        (1 << 40) | (1 << 41)
    } else {
        0
    }
}

/// HCR_EL2 for dom0's vCPUs.
pub fn hcr_dom0() -> u64 {
    HCR_GUEST | hcr_pauth()
}

/// HCR_EL2 for a PV domU's vCPUs.
pub fn hcr_pv() -> u64 {
    HCR_PV | hcr_pauth()
}

global_asm!(
    r#"
    .global ferrite_enter_guest
// x0: the frame to load, x1: where on this CPU's stack to put it (its top minus the frame).
ferrite_enter_guest:
    mov     x2, #{words}
1:  ldr     x3, [x0], #8
    str     x3, [x1], #8
    subs    x2, x2, #1
    b.ne    1b
    sub     sp, x1, #{frame}
    b       ferrite_exception_return
"#,
    words = const core::mem::size_of::<TrapFrame>() / 8,
    frame = const core::mem::size_of::<TrapFrame>(),
);

unsafe extern "C" {
    fn ferrite_enter_guest(frame: *const TrapFrame, stack_slot: *mut TrapFrame) -> !;
}

static ENTRY_FRAMES: super::boot::BootShared<[TrapFrame; MAX_CPUS]> = super::boot::BootShared::new(
    [const {
        TrapFrame {
            x: [0; 31],
            sp: 0,
            elr: 0,
            spsr: 0,
        }
    }; MAX_CPUS],
);

/// Enters a vCPU on this CPU from the idle loop: `load` fills the frame (and loads the vCPU's
/// registers); the exception return then runs it. Never returns: from here on the CPU runs
/// guests and handles their exits.
pub fn enter(load: impl FnOnce(&mut TrapFrame)) -> ! {
    cpu::irq_disable();
    let i = cpu::index();
    // SAFETY: each CPU uses only its own slot, and only here, with interrupts masked.
    let frame = unsafe { &mut (*ENTRY_FRAMES.get())[i] };
    load(frame);
    let stack_top = super::smp::stack_top(i);
    let slot = (stack_top - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame;
    // SAFETY: `slot` is the top of this CPU's own EL2 stack; everything on the stack below it is
    // abandoned (this function does not return), and the frame is copied from a static.
    unsafe { ferrite_enter_guest(frame, slot) }
}

/// Makes the guest take an Undefined Instruction exception at EL1, as if the instruction at
/// `frame.elr` had been undefined: what the architecture says for an access the guest may
/// not make.
pub fn inject_undef(frame: &mut TrapFrame) {
    let vbar: u64;
    // SAFETY: reading and writing the guest's EL1 exception registers while it is stopped.
    unsafe {
        asm!("mrs {}, vbar_el1", out(reg) vbar, options(nomem, nostack));
        asm!(
            "msr elr_el1, {elr}",
            "msr spsr_el1, {spsr}",
            "msr esr_el1, {esr}",
            elr = in(reg) frame.elr,
            spsr = in(reg) frame.spsr,
            esr = in(reg) 1u64 << 25, // EC 0 (unknown), IL = 1
            options(nostack),
        );
    }
    // From EL1 with SP_EL1 (EL1h) the vector is +0x200, with SP_EL0 (EL1t) +0, from EL0 +0x400.
    let offset = match frame.spsr & 0xf {
        0 => 0x400,
        4 => 0,
        _ => 0x200,
    };
    frame.elr = vbar + offset;
    frame.spsr = SPSR_EL1H_MASKED;
}
