//! EL1's exception vectors, and running an instruction that is expected to be refused.
//!
//! The vector table saves a full [`TrapFrame`] (general registers, SP, ELR, SPSR, ESR, FAR and
//! the FP/SIMD registers, since the Rust handlers may use them) and dispatches:
//!
//! - IRQ from EL1: an upcall, handled by [`crate::events::handle_upcall`];
//! - synchronous from EL1 while [`try_insn`] is waiting for one on this vCPU: the syndrome is
//!   recorded and the faulting instruction skipped (ELR += 4), so a test can ask "was this
//!   `msr` refused with an Undefined exception?" or "did this store take a permission fault?";
//! - anything else is fatal: a report on the console, then `SCHED_OP SHUTDOWN` (crash).
//!
//! The decoding of a syndrome ([`Trap::kind`]) is portable and host-tested.

use crate::cpu::MAX_VCPUS;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, compiler_fence};

/// Registers saved on exception entry. The layout is shared with the assembly below.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TrapFrame {
    pub x: [u64; 31],
    /// SP before the exception.
    pub sp: u64,
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
    pub fpcr: u64,
    pub fpsr: u64,
    pub q: [u128; 32],
}

/// Bytes of a [`TrapFrame`] (a multiple of 16, as SP must stay aligned).
pub const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 816);
const _: () = assert!(core::mem::offset_of!(TrapFrame, esr) == 272);
const _: () = assert!(core::mem::offset_of!(TrapFrame, q) == 304);

/// A synchronous exception [`try_insn`] caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trap {
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
}

/// What a synchronous exception was, as far as tests care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapKind {
    /// EC 0: an undefined instruction (what Ferrite injects for a refused system-register
    /// write).
    Undefined,
    /// A data or instruction abort with a permission fault at `level`.
    Permission { level: u8 },
    /// A data or instruction abort with a translation fault at `level`.
    Translation { level: u8 },
    /// Another abort (access flag, external, alignment...): its fault status code.
    Abort { fsc: u8 },
    /// Another exception class.
    Other { ec: u8 },
}

impl Trap {
    /// ESR_EL1.EC.
    pub const fn ec(&self) -> u8 {
        ((self.esr >> 26) & 0x3f) as u8
    }

    pub const fn kind(&self) -> TrapKind {
        let ec = self.ec();
        if ec == 0 {
            return TrapKind::Undefined;
        }
        if !matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) {
            return TrapKind::Other { ec };
        }
        let fsc = (self.esr & 0x3f) as u8;
        let level = fsc & 3;
        match fsc & !3 {
            0b000100 => TrapKind::Translation { level },
            0b001100 => TrapKind::Permission { level },
            _ => TrapKind::Abort { fsc },
        }
    }

    /// For a data abort: whether it was a write (ISS.WnR).
    pub const fn is_write(&self) -> bool {
        matches!(self.ec(), 0x24 | 0x25) && self.esr & (1 << 6) != 0
    }
}

/// A short name of an exception class, for reports.
pub const fn ec_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "undefined instruction",
        0x01 => "WFI/WFE",
        0x07 => "FP/SIMD access",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "MSR/MRS/system instruction",
        0x20 | 0x21 => "instruction abort",
        0x22 => "PC alignment fault",
        0x24 | 0x25 => "data abort",
        0x26 => "SP alignment fault",
        0x2f => "SError",
        0x3c => "BRK",
        _ => "other class",
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Self::Undefined => write!(f, "undefined instruction"),
            Self::Permission { level } => write!(f, "permission fault at level {level}"),
            Self::Translation { level } => write!(f, "translation fault at level {level}"),
            Self::Abort { fsc } => write!(f, "abort, fault status {fsc:#x}"),
            Self::Other { ec } => write!(f, "EC {ec:#x} ({})", ec_name(ec)),
        }
    }
}

/// Per-vCPU state of [`try_insn`].
struct Expect {
    armed: AtomicBool,
    hit: AtomicBool,
    esr: AtomicU64,
    far: AtomicU64,
    elr: AtomicU64,
}

static EXPECT: [Expect; MAX_VCPUS] = [const {
    Expect {
        armed: AtomicBool::new(false),
        hit: AtomicBool::new(false),
        esr: AtomicU64::new(0),
        far: AtomicU64::new(0),
        elr: AtomicU64::new(0),
    }
}; MAX_VCPUS];

/// Runs `f`, which should be one instruction that may take a synchronous exception at EL1 (an
/// `msr` Ferrite refuses, a store to a read-only page): if it does, the exception is recorded,
/// the instruction skipped, and returned; `None` if `f` ran without one.
///
/// `f` must be a single instruction (an `asm!` block, or one volatile access): the handler
/// resumes at the instruction after the one that faulted, whatever it was.
pub fn try_insn(f: impl FnOnce()) -> Option<Trap> {
    let e = &EXPECT[crate::cpu::index().min(MAX_VCPUS - 1)];
    e.hit.store(false, Ordering::Relaxed);
    e.armed.store(true, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
    f();
    compiler_fence(Ordering::SeqCst);
    e.armed.store(false, Ordering::Relaxed);
    e.hit.load(Ordering::Relaxed).then(|| Trap {
        esr: e.esr.load(Ordering::Relaxed),
        far: e.far.load(Ordering::Relaxed),
        elr: e.elr.load(Ordering::Relaxed),
    })
}

/// The handler's decision for a synchronous exception: true if [`try_insn`] was expecting it
/// (recorded, and `frame.elr` moved past the instruction).
fn expected(frame: &mut TrapFrame) -> bool {
    let e = &EXPECT[crate::cpu::index().min(MAX_VCPUS - 1)];
    if !e.armed.swap(false, Ordering::Relaxed) {
        return false;
    }
    e.esr.store(frame.esr, Ordering::Relaxed);
    e.far.store(frame.far, Ordering::Relaxed);
    e.elr.store(frame.elr, Ordering::Relaxed);
    e.hit.store(true, Ordering::Relaxed);
    frame.elr += 4;
    true
}

const KIND_NAMES: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
const ORIGIN_NAMES: [&str; 4] = ["EL1t", "EL1h", "EL0 (AArch64)", "EL0 (AArch32)"];

/// Called by the vectors with the entry's number (origin * 4 + kind) and the saved frame.
#[cfg_attr(
    not(all(target_arch = "aarch64", target_os = "none")),
    allow(dead_code)
)]
extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    let (origin, what) = ((kind >> 2) as usize & 3, kind as usize & 3);
    if origin < 2 {
        if what == 1 {
            crate::events::handle_upcall();
            return;
        }
        if what == 0 && expected(frame) {
            return;
        }
    }
    let t = Trap {
        esr: frame.esr,
        far: frame.far,
        elr: frame.elr,
    };
    crate::println!(
        "domU{}: FATAL: unexpected {} exception from {} on vcpu{}: ESR {:#x} ({}), FAR {:#x}, \
         ELR {:#x}, SPSR {:#x}, SP {:#x}",
        crate::rt::domid(),
        KIND_NAMES[what],
        ORIGIN_NAMES[origin],
        crate::cpu::index(),
        t.esr,
        t.kind(),
        t.far,
        t.elr,
        frame.spsr,
        frame.sp
    );
    crate::rt::crash();
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
core::arch::global_asm!(
    r#"
.macro FERRITE_PV_VENTRY kind
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       ferrite_pv_exception_common
.endm

    .section .text.ferrite_pv_vectors, "ax"
    .balign 0x800
    .global ferrite_pv_vectors
ferrite_pv_vectors:
    FERRITE_PV_VENTRY 0
    FERRITE_PV_VENTRY 1
    FERRITE_PV_VENTRY 2
    FERRITE_PV_VENTRY 3
    FERRITE_PV_VENTRY 4
    FERRITE_PV_VENTRY 5
    FERRITE_PV_VENTRY 6
    FERRITE_PV_VENTRY 7
    FERRITE_PV_VENTRY 8
    FERRITE_PV_VENTRY 9
    FERRITE_PV_VENTRY 10
    FERRITE_PV_VENTRY 11
    FERRITE_PV_VENTRY 12
    FERRITE_PV_VENTRY 13
    FERRITE_PV_VENTRY 14
    FERRITE_PV_VENTRY 15

ferrite_pv_exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    add     x1, sp, #{frame}
    stp     x30, x1, [sp, #240]
    mrs     x1, elr_el1
    mrs     x2, spsr_el1
    stp     x1, x2, [sp, #256]
    mrs     x1, esr_el1
    mrs     x2, far_el1
    stp     x1, x2, [sp, #272]
    mrs     x1, fpcr
    mrs     x2, fpsr
    stp     x1, x2, [sp, #288]
    add     x1, sp, #304
    stp     q0, q1, [x1, #0]
    stp     q2, q3, [x1, #32]
    stp     q4, q5, [x1, #64]
    stp     q6, q7, [x1, #96]
    stp     q8, q9, [x1, #128]
    stp     q10, q11, [x1, #160]
    stp     q12, q13, [x1, #192]
    stp     q14, q15, [x1, #224]
    stp     q16, q17, [x1, #256]
    stp     q18, q19, [x1, #288]
    stp     q20, q21, [x1, #320]
    stp     q22, q23, [x1, #352]
    stp     q24, q25, [x1, #384]
    stp     q26, q27, [x1, #416]
    stp     q28, q29, [x1, #448]
    stp     q30, q31, [x1, #480]
    mov     x1, sp
    bl      {handler}
    add     x1, sp, #304
    ldp     q0, q1, [x1, #0]
    ldp     q2, q3, [x1, #32]
    ldp     q4, q5, [x1, #64]
    ldp     q6, q7, [x1, #96]
    ldp     q8, q9, [x1, #128]
    ldp     q10, q11, [x1, #160]
    ldp     q12, q13, [x1, #192]
    ldp     q14, q15, [x1, #224]
    ldp     q16, q17, [x1, #256]
    ldp     q18, q19, [x1, #288]
    ldp     q20, q21, [x1, #320]
    ldp     q22, q23, [x1, #352]
    ldp     q24, q25, [x1, #384]
    ldp     q26, q27, [x1, #416]
    ldp     q28, q29, [x1, #448]
    ldp     q30, q31, [x1, #480]
    ldp     x1, x2, [sp, #288]
    msr     fpcr, x1
    msr     fpsr, x2
    ldp     x1, x2, [sp, #256]
    msr     elr_el1, x1
    msr     spsr_el1, x2
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #{frame}
    eret
"#,
    frame = const FRAME_SIZE,
    handler = sym handle_exception,
);

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
unsafe extern "C" {
    /// The vector table (2 KiB aligned), for VBAR_EL1.
    #[link_name = "ferrite_pv_vectors"]
    pub fn vectors();
}

/// Points VBAR_EL1 at this library's vectors (the entry code already did, for every vCPU it
/// starts; a guest with its own entry calls this first).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn install() {
    // SAFETY: the table is ours, 2 KiB aligned and mapped executable for the image's life.
    unsafe {
        core::arch::asm!(
            "msr vbar_el1, {}",
            "isb",
            in(reg) vectors as *const () as u64,
            options(nostack, preserves_flags)
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trap(esr: u64) -> Trap {
        Trap {
            esr,
            far: 0,
            elr: 0,
        }
    }

    #[test]
    fn syndromes() {
        // Injected undefined instruction: EC 0, IL 1.
        assert_eq!(trap(1 << 25).kind(), TrapKind::Undefined);
        // Data abort at EL1, write, permission fault at level 3.
        let perm = trap((0x25 << 26) | (1 << 25) | (1 << 6) | 0b001111);
        assert_eq!(perm.kind(), TrapKind::Permission { level: 3 });
        assert!(perm.is_write());
        // Data abort, read, translation fault at level 0.
        let tr = trap((0x25 << 26) | 0b000100);
        assert_eq!(tr.kind(), TrapKind::Translation { level: 0 });
        assert!(!tr.is_write());
        // Instruction abort, access flag fault at level 3.
        assert_eq!(
            trap((0x21 << 26) | 0b001011).kind(),
            TrapKind::Abort { fsc: 0b001011 }
        );
        assert_eq!(trap(0x16 << 26).kind(), TrapKind::Other { ec: 0x16 });
    }

    /// One test, because both halves use vCPU 0's expectation slot.
    #[test]
    fn try_insn_records_and_skips_only_when_armed() {
        let mut ran = false;
        assert_eq!(try_insn(|| ran = true), None);
        assert!(ran);
        // SAFETY: TrapFrame is plain integers.
        let mut frame: TrapFrame = unsafe { core::mem::zeroed() };
        frame.elr = 0x1000;
        frame.esr = 1 << 25;
        assert!(!expected(&mut frame));
        let t = try_insn(|| {
            assert!(expected(&mut frame));
        });
        assert_eq!(frame.elr, 0x1004);
        assert_eq!(
            t.map(|t| (t.elr, t.kind())),
            Some((0x1000, TrapKind::Undefined))
        );
    }
}
