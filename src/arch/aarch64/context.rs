//! A vCPU's register state while it is off the CPU, and the world switch that saves one vCPU's
//! state and loads another's: general registers (from the exit's [`TrapFrame`]), the EL1
//! system registers, the virtual timer, FP/SIMD, pointer-authentication keys, the EL2 controls
//! that differ per vCPU (HCR, VTTBR, VMPIDR, CNTVOFF) and the GIC virtual interface's
//! priority state. The list registers themselves are not here: every exit already empties
//! them into the vGIC model (`vm::exit::after_exit`), so they hold nothing of a vCPU that is
//! not running.
//!
//! Ferrite is built soft-float and never touches FP/SIMD itself, so the guest's FP registers
//! are live in the hardware until the switch saves them.

use super::exceptions::TrapFrame;
use core::arch::{asm, global_asm};

/// EL1 registers in [`El1`] order; the assembly below stores and loads them in this order.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct El1 {
    pub sctlr: u64,
    pub cpacr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub tpidr_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub cntkctl: u64,
    pub mdscr: u64,
    pub csselr: u64,
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
}

/// FP/SIMD: V0..V31, FPSR, FPCR.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub struct Fp {
    pub v: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

/// EL2 controls that belong to the vCPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct El2 {
    pub hcr: u64,
    pub vttbr: u64,
    pub vmpidr: u64,
    pub cntvoff: u64,
}

/// The GIC virtual interface's state that outlives an exit: VMCR (the guest's priority mask,
/// binary point, enables) and the active-priority registers.
#[derive(Clone, Copy, Debug, Default)]
pub struct GicState {
    pub vmcr: u64,
    pub ap0r: [u32; 4],
    pub ap1r: [u32; 4],
}

/// Everything of a vCPU that is not in the hardware while it is off the CPU.
#[repr(C)]
pub struct Context {
    pub frame: TrapFrame,
    pub el1: El1,
    pub fp: Fp,
    /// APIA, APIB, APDA, APDB, APGA keys (lo, hi), where the CPU has pointer authentication.
    pub pauth: [u64; 10],
    pub el2: El2,
    pub gic: GicState,
}

/// SCTLR_EL1 at reset: RES1 bits only (MMU and caches off).
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// SPSR for entry: EL1h with D, A, I and F masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

impl Context {
    /// A vCPU at power-on: EL1h with interrupts masked at `pc`, x0 = `x0`, MMU off, FP/SIMD
    /// enabled at EL1 as firmware leaves it for Linux.
    pub fn reset(pc: u64, x0: u64, el2: El2) -> Self {
        let mut frame = TrapFrame {
            x: [0; 31],
            sp: 0,
            elr: pc,
            spsr: SPSR_EL1H_MASKED,
        };
        frame.x[0] = x0;
        Self {
            frame,
            el1: El1 {
                sctlr: SCTLR_EL1_RESET,
                cpacr: 3 << 20,
                ..El1::default()
            },
            fp: Fp::default(),
            pauth: [0; 10],
            el2,
            gic: GicState::default(),
        }
    }
}

global_asm!(
    r#"
    .arch_extension fp
    .arch_extension simd

// x0: &mut [u64; 31], x1: &[u64; 31]. The general registers, in pairs (the generic memcpy
// costs four times as many instructions for these 248 bytes).
    .global ferrite_copy_gprs
ferrite_copy_gprs:
    ldp x2, x3, [x1, #0];   stp x2, x3, [x0, #0]
    ldp x2, x3, [x1, #16];  stp x2, x3, [x0, #16]
    ldp x2, x3, [x1, #32];  stp x2, x3, [x0, #32]
    ldp x2, x3, [x1, #48];  stp x2, x3, [x0, #48]
    ldp x2, x3, [x1, #64];  stp x2, x3, [x0, #64]
    ldp x2, x3, [x1, #80];  stp x2, x3, [x0, #80]
    ldp x2, x3, [x1, #96];  stp x2, x3, [x0, #96]
    ldp x2, x3, [x1, #112]; stp x2, x3, [x0, #112]
    ldp x2, x3, [x1, #128]; stp x2, x3, [x0, #128]
    ldp x2, x3, [x1, #144]; stp x2, x3, [x0, #144]
    ldp x2, x3, [x1, #160]; stp x2, x3, [x0, #160]
    ldp x2, x3, [x1, #176]; stp x2, x3, [x0, #176]
    ldp x2, x3, [x1, #192]; stp x2, x3, [x0, #192]
    ldp x2, x3, [x1, #208]; stp x2, x3, [x0, #208]
    ldp x2, x3, [x1, #224]; stp x2, x3, [x0, #224]
    ldr x2, [x1, #240];     str x2, [x0, #240]
    ret

// x0: &mut El1
    .global ferrite_save_el1
ferrite_save_el1:
    mrs x1, sctlr_el1;      mrs x2, cpacr_el1;      stp x1, x2, [x0, #0]
    mrs x1, ttbr0_el1;      mrs x2, ttbr1_el1;      stp x1, x2, [x0, #16]
    mrs x1, tcr_el1;        mrs x2, mair_el1;       stp x1, x2, [x0, #32]
    mrs x1, amair_el1;      mrs x2, vbar_el1;       stp x1, x2, [x0, #48]
    mrs x1, contextidr_el1; mrs x2, tpidr_el1;      stp x1, x2, [x0, #64]
    mrs x1, tpidr_el0;      mrs x2, tpidrro_el0;    stp x1, x2, [x0, #80]
    mrs x1, sp_el0;         mrs x2, sp_el1;         stp x1, x2, [x0, #96]
    mrs x1, elr_el1;        mrs x2, spsr_el1;       stp x1, x2, [x0, #112]
    mrs x1, esr_el1;        mrs x2, far_el1;        stp x1, x2, [x0, #128]
    mrs x1, afsr0_el1;      mrs x2, afsr1_el1;      stp x1, x2, [x0, #144]
    mrs x1, par_el1;        mrs x2, cntkctl_el1;    stp x1, x2, [x0, #160]
    mrs x1, mdscr_el1;      mrs x2, csselr_el1;     stp x1, x2, [x0, #176]
    mrs x1, cntv_ctl_el0;   mrs x2, cntv_cval_el0;  stp x1, x2, [x0, #192]
    // The timer stops with its vCPU: left enabled it would fire for whoever runs next.
    msr cntv_ctl_el0, xzr
    ret

// x0: &El1. TCR_EL1 is written only when it changes: QEMU empties its whole EL1 TLB on every
// TCR_EL1 write, which would hide whether a switch between two vCPUs of one domain invalidates
// what it must (`mm::tlb`), and costs a refill of every page after each switch.
    .global ferrite_load_el1
ferrite_load_el1:
    ldp x1, x2, [x0, #0];   msr sctlr_el1, x1;      msr cpacr_el1, x2
    ldp x1, x2, [x0, #16];  msr ttbr0_el1, x1;      msr ttbr1_el1, x2
    ldp x1, x2, [x0, #32];  mrs x3, tcr_el1;        cmp x1, x3
    b.eq 1f;                msr tcr_el1, x1
1:  msr mair_el1, x2
    ldp x1, x2, [x0, #48];  msr amair_el1, x1;      msr vbar_el1, x2
    ldp x1, x2, [x0, #64];  msr contextidr_el1, x1; msr tpidr_el1, x2
    ldp x1, x2, [x0, #80];  msr tpidr_el0, x1;      msr tpidrro_el0, x2
    ldp x1, x2, [x0, #96];  msr sp_el0, x1;         msr sp_el1, x2
    ldp x1, x2, [x0, #112]; msr elr_el1, x1;        msr spsr_el1, x2
    ldp x1, x2, [x0, #128]; msr esr_el1, x1;        msr far_el1, x2
    ldp x1, x2, [x0, #144]; msr afsr0_el1, x1;      msr afsr1_el1, x2
    ldp x1, x2, [x0, #160]; msr par_el1, x1;        msr cntkctl_el1, x2
    ldp x1, x2, [x0, #176]; msr mdscr_el1, x1;      msr csselr_el1, x2
    ldp x1, x2, [x0, #192]; msr cntv_cval_el0, x2;  msr cntv_ctl_el0, x1
    ret

// x0: &mut Fp
    .global ferrite_save_fp
ferrite_save_fp:
    stp q0, q1, [x0, #0];     stp q2, q3, [x0, #32]
    stp q4, q5, [x0, #64];    stp q6, q7, [x0, #96]
    stp q8, q9, [x0, #128];   stp q10, q11, [x0, #160]
    stp q12, q13, [x0, #192]; stp q14, q15, [x0, #224]
    stp q16, q17, [x0, #256]; stp q18, q19, [x0, #288]
    stp q20, q21, [x0, #320]; stp q22, q23, [x0, #352]
    stp q24, q25, [x0, #384]; stp q26, q27, [x0, #416]
    stp q28, q29, [x0, #448]; stp q30, q31, [x0, #480]
    mrs x1, fpsr; mrs x2, fpcr; add x0, x0, #512; stp x1, x2, [x0]
    ret

// x0: &Fp
    .global ferrite_load_fp
ferrite_load_fp:
    ldp q0, q1, [x0, #0];     ldp q2, q3, [x0, #32]
    ldp q4, q5, [x0, #64];    ldp q6, q7, [x0, #96]
    ldp q8, q9, [x0, #128];   ldp q10, q11, [x0, #160]
    ldp q12, q13, [x0, #192]; ldp q14, q15, [x0, #224]
    ldp q16, q17, [x0, #256]; ldp q18, q19, [x0, #288]
    ldp q20, q21, [x0, #320]; ldp q22, q23, [x0, #352]
    ldp q24, q25, [x0, #384]; ldp q26, q27, [x0, #416]
    ldp q28, q29, [x0, #448]; ldp q30, q31, [x0, #480]
    add x0, x0, #512; ldp x1, x2, [x0]; msr fpsr, x1; msr fpcr, x2
    ret

// x0: &mut [u64; 10]. APIAKey, APIBKey, APDAKey, APDBKey, APGAKey (lo, hi), by encoding.
    .global ferrite_save_pauth
ferrite_save_pauth:
    mrs x1, S3_0_C2_C1_0; mrs x2, S3_0_C2_C1_1; stp x1, x2, [x0, #0]
    mrs x1, S3_0_C2_C1_2; mrs x2, S3_0_C2_C1_3; stp x1, x2, [x0, #16]
    mrs x1, S3_0_C2_C2_0; mrs x2, S3_0_C2_C2_1; stp x1, x2, [x0, #32]
    mrs x1, S3_0_C2_C2_2; mrs x2, S3_0_C2_C2_3; stp x1, x2, [x0, #48]
    mrs x1, S3_0_C2_C3_0; mrs x2, S3_0_C2_C3_1; stp x1, x2, [x0, #64]
    ret

    .global ferrite_load_pauth
ferrite_load_pauth:
    ldp x1, x2, [x0, #0];  msr S3_0_C2_C1_0, x1; msr S3_0_C2_C1_1, x2
    ldp x1, x2, [x0, #16]; msr S3_0_C2_C1_2, x1; msr S3_0_C2_C1_3, x2
    ldp x1, x2, [x0, #32]; msr S3_0_C2_C2_0, x1; msr S3_0_C2_C2_1, x2
    ldp x1, x2, [x0, #48]; msr S3_0_C2_C2_2, x1; msr S3_0_C2_C2_3, x2
    ldp x1, x2, [x0, #64]; msr S3_0_C2_C3_0, x1; msr S3_0_C2_C3_1, x2
    ret
"#
);

unsafe extern "C" {
    fn ferrite_copy_gprs(dst: *mut [u64; 31], src: *const [u64; 31]);
    fn ferrite_save_el1(out: *mut El1);
    fn ferrite_load_el1(regs: *const El1);
    fn ferrite_save_fp(out: *mut Fp);
    fn ferrite_load_fp(regs: *const Fp);
    fn ferrite_save_pauth(out: *mut [u64; 10]);
    fn ferrite_load_pauth(regs: *const [u64; 10]);
}

const _: () = assert!(core::mem::offset_of!(El1, cntv_ctl) == 192);
const _: () = assert!(core::mem::offset_of!(Fp, fpsr) == 512);

/// Saves the state of the vCPU that ran on this CPU (its general registers are in `frame`).
/// The CPU's EL1 state is then free for another vCPU (its timer is stopped).
pub fn save(ctx: &mut Context, frame: &TrapFrame, pauth: bool) {
    ctx.frame.elr = frame.elr;
    ctx.frame.spsr = frame.spsr;
    // SAFETY: the routines store system and FP registers of this CPU into the structures they
    // are given, which are exclusively borrowed; the guest they belong to is not running. The
    // copy is between two distinct arrays of 31 words.
    unsafe {
        ferrite_copy_gprs(&mut ctx.frame.x, &frame.x);
        ferrite_save_el1(&mut ctx.el1);
        ferrite_save_fp(&mut ctx.fp);
        if pauth {
            ferrite_save_pauth(&mut ctx.pauth);
        }
    }
    super::vgic_hw::save_state(&mut ctx.gic);
}

/// Loads `ctx` into this CPU's EL1 and EL2 registers and `frame`, so that the exception return
/// enters that vCPU; `invalidate`: drop its domain's stage-1 TLB entries on this CPU first.
pub fn load(ctx: &Context, frame: &mut TrapFrame, pauth: bool, invalidate: bool) {
    frame.elr = ctx.frame.elr;
    frame.spsr = ctx.frame.spsr;
    load_el2(&ctx.el2, invalidate);
    // SAFETY: the routines load registers that belong to EL1 and FP, which nothing at EL2
    // uses, from structures that are only read; the copy is between two distinct arrays of
    // 31 words.
    unsafe {
        ferrite_copy_gprs(&mut frame.x, &ctx.frame.x);
        ferrite_load_el1(&ctx.el1);
        ferrite_load_fp(&ctx.fp);
        if pauth {
            ferrite_load_pauth(&ctx.pauth);
        }
    }
    super::vgic_hw::load_state(&ctx.gic);
}

fn load_el2(e: &El2, invalidate: bool) {
    super::stage2::activate(e.vttbr, invalidate);
    let midr: u64;
    // SAFETY: EL2 controls that affect only the guest about to be entered on this CPU.
    unsafe {
        asm!("mrs {}, midr_el1", out(reg) midr, options(nomem, nostack));
        asm!(
            "msr vpidr_el2, {midr}",
            "msr vmpidr_el2, {vmpidr}",
            "msr cntvoff_el2, {cntvoff}",
            "msr hcr_el2, {hcr}",
            "isb",
            midr = in(reg) midr,
            vmpidr = in(reg) e.vmpidr,
            cntvoff = in(reg) e.cntvoff,
            hcr = in(reg) e.hcr,
            options(nostack),
        );
    }
}

/// Writes HCR_EL2 for the running vCPU (the virtual IRQ line of a PV upcall).
pub fn set_hcr(hcr: u64) {
    // SAFETY: HCR_EL2 of the running guest; the caller keeps every trap its domain needs.
    unsafe { asm!("msr hcr_el2, {}", in(reg) hcr, options(nomem, nostack)) };
}

/// Lowers the virtual IRQ line (HCR_EL2.VI) that the last PV vCPU to run here may have left
/// raised (its upcall was pending at its last return). Nothing runs at EL1 while this pCPU
/// idles, and every vCPU load sets the line again for its own vCPU. Left raised, QEMU counts
/// it as work for a WFI at EL2, which then returns at once: the idle loop spun instead of
/// sleeping, and under `-icount` a run's idle time was executed rather than skipped (a system
/// test took 113 s instead of 32).
pub fn lower_virtual_irq() {
    let hcr: u64;
    // SAFETY: reading HCR_EL2 has no side effects.
    unsafe { asm!("mrs {}, hcr_el2", out(reg) hcr, options(nomem, nostack)) };
    if hcr & super::vcpu::HCR_VI != 0 {
        // SAFETY: only VI changes: no vCPU is loaded (the idle loop), and the next load writes
        // HCR_EL2 whole for its own vCPU.
        unsafe {
            asm!("msr hcr_el2, {}", "isb", in(reg) hcr & !super::vcpu::HCR_VI, options(nomem, nostack))
        };
    }
}

/// Traps the running vCPU's WFI (HCR_EL2.TWI) or lets it wait in WFI at EL1 (`vwfi=native`).
pub fn trap_wfi(trap: bool) {
    let hcr: u64;
    // SAFETY: reading HCR_EL2 has no side effects.
    unsafe { asm!("mrs {}, hcr_el2", out(reg) hcr, options(nomem, nostack)) };
    let want = if trap {
        hcr | super::vcpu::HCR_TWI
    } else {
        hcr & !super::vcpu::HCR_TWI
    };
    if want != hcr {
        set_hcr(want);
    }
}

/// Whether this CPU has pointer authentication (the keys are then switched too).
pub fn has_pauth() -> bool {
    // ID_AA64ISAR1_EL1: APA [7:4], API [11:8], GPA [27:24], GPI [31:28]; ISAR2: APA3 [15:12].
    let isar1 = super::cpu::read_id_reg(6, 1);
    let isar2 = super::cpu::read_id_reg(6, 2);
    isar1 & 0xff00_0ff0 != 0 || isar2 & 0xff00 != 0
}
