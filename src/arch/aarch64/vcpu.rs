//! Entering a vCPU: its reset state at EL1, the EL2 controls that confine it, and the first
//! exception return into it. Once a vCPU runs, every exit comes back through the EL2 vectors
//! with its registers in a [`TrapFrame`] on this CPU's stack, and leaves by the same path.

use super::boot::MAX_CPUS;
use super::exceptions::TrapFrame;
use super::{cpu, stage2};
use core::arch::{asm, global_asm};

/// SPSR for entry: EL1h with D, A, I and F masked, as the Linux boot protocol requires.
const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// SCTLR_EL1 at reset: RES1 bits only (MMU and caches off).
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// HCR_EL2 while a guest runs: stage 2 on (VM), set/way invalidates upgraded (SWIO),
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

/// HCR_EL2.APK (bit 40) and API (bit 41): the guest uses pointer authentication (its keys and
/// instructions) without trapping, where the CPU has it. A vCPU switch must then save and
/// restore the APxxKEY registers (the scheduler's world switch does).
fn hcr_pauth() -> u64 {
    // ID_AA64ISAR1_EL1: APA [7:4], API [11:8], GPA [27:24], GPI [31:28]; ISAR2: APA3 [15:12].
    let isar1 = cpu::read_id_reg(6, 1);
    let isar2 = cpu::read_id_reg(6, 2);
    let pauth = isar1 & 0xff00_0ff0 != 0 || isar2 & 0xff00 != 0;
    if pauth { (1 << 40) | (1 << 41) } else { 0 }
}

/// Where a vCPU starts.
pub struct Start {
    pub pc: u64,
    pub x0: u64,
    /// Affinity the guest sees in MPIDR_EL1 (its vCPU index).
    pub vmpidr: u64,
    pub vttbr: u64,
    pub cntvoff: u64,
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

fn reset_el1_state() {
    // SAFETY: these registers belong to EL1, which is not running; resetting them is what a
    // vCPU's power-on does.
    unsafe {
        asm!(
            "msr sctlr_el1, {sctlr}",
            "msr tcr_el1, xzr",
            "msr ttbr0_el1, xzr",
            "msr ttbr1_el1, xzr",
            "msr mair_el1, xzr",
            "msr amair_el1, xzr",
            "msr vbar_el1, xzr",
            "msr contextidr_el1, xzr",
            "msr tpidr_el1, xzr",
            "msr tpidr_el0, xzr",
            "msr tpidrro_el0, xzr",
            "msr sp_el0, xzr",
            "msr sp_el1, xzr",
            "msr elr_el1, xzr",
            "msr spsr_el1, xzr",
            "msr esr_el1, xzr",
            "msr far_el1, xzr",
            "msr afsr0_el1, xzr",
            "msr afsr1_el1, xzr",
            "msr par_el1, xzr",
            "msr cntkctl_el1, xzr",
            "msr cntv_ctl_el0, xzr",
            "msr mdscr_el1, xzr",
            // FP/SIMD enabled at EL1, as firmware leaves it for Linux.
            "msr cpacr_el1, {cpacr}",
            sctlr = in(reg) SCTLR_EL1_RESET,
            cpacr = in(reg) 3u64 << 20,
            options(nostack),
        );
    }
}

/// Starts a vCPU on this CPU. Never returns: from here on the CPU runs the guest and handles
/// its exits.
pub fn enter(start: &Start, stack_top: u64) -> ! {
    cpu::irq_disable();
    reset_el1_state();
    stage2::activate(start.vttbr);
    let midr: u64;
    // SAFETY: configures how EL1 sees this CPU and which traps apply: EL2-only registers that
    // affect only the guest about to be entered.
    unsafe {
        asm!("mrs {}, midr_el1", out(reg) midr, options(nomem, nostack));
        asm!(
            "msr vpidr_el2, {midr}",
            "msr vmpidr_el2, {vmpidr}",
            "msr cntvoff_el2, {cntvoff}",
            "msr hcr_el2, {hcr}",
            "isb",
            midr = in(reg) midr,
            vmpidr = in(reg) (1u64 << 31) | start.vmpidr,
            cntvoff = in(reg) start.cntvoff,
            hcr = in(reg) HCR_GUEST | hcr_pauth(),
            options(nostack),
        );
    }
    let i = cpu::index();
    // SAFETY: each CPU uses only its own slot, and only here.
    let frame = unsafe { &mut (*ENTRY_FRAMES.get())[i] };
    frame.x = [0; 31];
    frame.x[0] = start.x0;
    frame.elr = start.pc;
    frame.spsr = SPSR_EL1H_MASKED;
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
    // From EL1 with SP_EL1 the vector is +0x200, from EL0 (AArch64) +0x400.
    let from_el0 = frame.spsr & 0xf == 0;
    frame.elr = vbar + if from_el0 { 0x400 } else { 0x200 };
    frame.spsr = SPSR_EL1H_MASKED;
}
