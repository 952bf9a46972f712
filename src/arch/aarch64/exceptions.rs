//! EL2's exception vectors. Interrupts go to the GIC's dispatcher; anything else taken at EL2 is
//! a Ferrite bug, reported with the full register state and the syndrome decoded, then a panic.
//!
//! Exceptions from guests (lower EL) arrive here too once there are guests; until then they are
//! equally unexpected.

use super::esr;
use core::arch::global_asm;
use core::fmt;

/// Registers saved on exception entry. The layout is shared with the assembly below.
#[repr(C)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub sp: u64,
    pub elr: u64,
    pub spsr: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();

global_asm!(
    r#"
.macro FERRITE_VENTRY kind
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       ferrite_exception_common
.endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global ferrite_vectors
ferrite_vectors:
    FERRITE_VENTRY 0
    FERRITE_VENTRY 1
    FERRITE_VENTRY 2
    FERRITE_VENTRY 3
    FERRITE_VENTRY 4
    FERRITE_VENTRY 5
    FERRITE_VENTRY 6
    FERRITE_VENTRY 7
    FERRITE_VENTRY 8
    FERRITE_VENTRY 9
    FERRITE_VENTRY 10
    FERRITE_VENTRY 11
    FERRITE_VENTRY 12
    FERRITE_VENTRY 13
    FERRITE_VENTRY 14
    FERRITE_VENTRY 15

ferrite_exception_common:
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
    mrs     x1, elr_el2
    mrs     x2, spsr_el2
    stp     x1, x2, [sp, #256]
    mov     x1, sp
    bl      {handler}
    .global ferrite_exception_return
ferrite_exception_return:
    ldp     x1, x2, [sp, #256]
    msr     elr_el2, x1
    msr     spsr_el2, x2
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

unsafe extern "C" {
    /// The vector table, for VBAR_EL2.
    #[link_name = "ferrite_vectors"]
    pub fn vectors();
}

/// Kept under this name for the boot code's `sym` operand.
pub use vectors as VECTORS_SYM;

const KIND_NAMES: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
const ORIGIN_NAMES: [&str; 4] = [
    "EL2 with SP_EL0",
    "EL2",
    "a lower EL (AArch64)",
    "a lower EL (AArch32)",
];

extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    let (origin, what) = ((kind >> 2) as usize & 3, kind as usize & 3);
    if what == 1 && origin <= 1 {
        super::gic::handle_irq();
        return;
    }
    if origin == 2 {
        // From a guest (AArch64 at EL1/EL0).
        super::trap::guest_exit(frame, what, KIND_NAMES[what]);
        return;
    }
    let esr: u64;
    let far: u64;
    // SAFETY: reading the syndrome registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el2", out(reg) esr, options(nomem, nostack));
        core::arch::asm!("mrs {}, far_el2", out(reg) far, options(nomem, nostack));
    }
    crate::console::write_raw(format_args!(
        "ferrite: unexpected exception: {} from {} on cpu{}\n  ESR_EL2 {:#018x}: {}\n  FAR_EL2 {:#018x}\n  ELR_EL2 {:#018x} = ferrite.elf {:#x} (for addr2line)\n{}",
        KIND_NAMES[what],
        ORIGIN_NAMES[origin],
        super::cpu::index(),
        esr,
        esr::Syndrome(esr),
        far,
        frame.elr,
        frame.elr.wrapping_sub(super::boot::image_region().0),
        frame
    ));
    panic!(
        "unexpected {} exception at {:#x}",
        KIND_NAMES[what], frame.elr
    );
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, pair) in self.x.chunks(4).enumerate() {
            write!(f, " ")?;
            for (j, v) in pair.iter().enumerate() {
                let n = i * 4 + j;
                write!(f, " x{n:<2} {v:#018x}")?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "  sp  {:#018x} elr {:#018x} spsr {:#010x}",
            self.sp, self.elr, self.spsr
        )
    }
}
