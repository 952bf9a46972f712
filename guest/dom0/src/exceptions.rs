//! EL1's exception vectors. IRQs go to the GIC's dispatcher; anything else is unexpected in
//! dom0 (it has no EL0 and makes no system calls), so it is reported with the registers and the
//! decoded syndrome, then dom0 panics.

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
.macro DOM0_VENTRY kind
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       dom0_exception_common
.endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global dom0_vectors
dom0_vectors:
    DOM0_VENTRY 0
    DOM0_VENTRY 1
    DOM0_VENTRY 2
    DOM0_VENTRY 3
    DOM0_VENTRY 4
    DOM0_VENTRY 5
    DOM0_VENTRY 6
    DOM0_VENTRY 7
    DOM0_VENTRY 8
    DOM0_VENTRY 9
    DOM0_VENTRY 10
    DOM0_VENTRY 11
    DOM0_VENTRY 12
    DOM0_VENTRY 13
    DOM0_VENTRY 14
    DOM0_VENTRY 15

dom0_exception_common:
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
    mov     x1, sp
    bl      {handler}
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

unsafe extern "C" {
    /// The vector table, for VBAR_EL1.
    #[link_name = "dom0_vectors"]
    pub fn vectors();
}

/// Kept under this name for the entry code's `sym` operand.
pub use vectors as VECTORS_SYM;

const KIND_NAMES: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
const ORIGIN_NAMES: [&str; 4] = ["EL1 with SP_EL0", "EL1", "EL0 (AArch64)", "EL0 (AArch32)"];

extern "C" fn handle_exception(kind: u64, frame: &mut TrapFrame) {
    let (origin, what) = ((kind >> 2) as usize & 3, kind as usize & 3);
    if what == 1 && origin == 1 {
        crate::gic::handle_irq();
        return;
    }
    let esr: u64;
    let far: u64;
    // SAFETY: reading the syndrome registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack));
        core::arch::asm!("mrs {}, far_el1", out(reg) far, options(nomem, nostack));
    }
    crate::console::write_raw(format_args!(
        "dom0: unexpected {} exception from {} on vcpu{}\n  ESR_EL1 {:#018x}: {}\n  FAR_EL1 {:#018x}\n  ELR_EL1 {:#018x} = ferrite-dom0 {:#x} (for addr2line)\n{}",
        KIND_NAMES[what],
        ORIGIN_NAMES[origin],
        crate::cpu::index(),
        esr,
        Syndrome(esr),
        far,
        frame.elr,
        frame.elr.wrapping_sub(crate::entry::image_region().0),
        frame
    ));
    panic!(
        "unexpected {} exception at {:#x}: {}, FAR {:#x}",
        KIND_NAMES[what],
        frame.elr,
        Syndrome(esr).summary(),
        far
    );
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, row) in self.x.chunks(4).enumerate() {
            write!(f, " ")?;
            for (j, v) in row.iter().enumerate() {
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

/// ESR_EL1 decoded into words a person can act on.
pub struct Syndrome(pub u64);

impl Syndrome {
    fn class(&self) -> u64 {
        (self.0 >> 26) & 0x3f
    }

    fn class_name(&self) -> &'static str {
        match self.class() {
            0x00 => "unknown reason",
            0x01 => "WFI/WFE",
            0x07 => "SVE/SIMD/FP access",
            0x0e => "illegal execution state",
            0x15 => "SVC",
            0x16 => "HVC",
            0x17 => "SMC",
            0x18 => "MSR/MRS/system instruction",
            0x20 => "instruction abort from EL0",
            0x21 => "instruction abort at EL1",
            0x22 => "PC alignment fault",
            0x24 => "data abort from EL0",
            0x25 => "data abort at EL1",
            0x26 => "SP alignment fault",
            0x2f => "SError",
            0x3c => "BRK instruction",
            _ => "other class",
        }
    }

    /// The fault status of an abort, with the table level where that is meaningful.
    fn fault(&self) -> Option<(&'static str, Option<u64>)> {
        if !matches!(self.class(), 0x20 | 0x21 | 0x24 | 0x25) {
            return None;
        }
        let fsc = self.0 & 0x3f;
        Some(match fsc {
            0b000000..=0b000011 => ("address size fault", Some(fsc & 3)),
            0b000100..=0b000111 => ("translation fault", Some(fsc & 3)),
            0b001001..=0b001011 => ("access flag fault", Some(fsc & 3)),
            0b001101..=0b001111 => ("permission fault", Some(fsc & 3)),
            0b010000 => ("synchronous external abort", None),
            0b010100..=0b010111 => ("external abort on a table walk", Some(fsc & 3)),
            0b100001 => ("alignment fault", None),
            0b110000 => ("TLB conflict abort", None),
            _ => ("other fault", None),
        })
    }

    /// One phrase for the panic line: the class and, for aborts, the fault.
    pub fn summary(&self) -> SyndromeSummary<'_> {
        SyndromeSummary(self)
    }
}

pub struct SyndromeSummary<'a>(&'a Syndrome);

impl fmt::Display for SyndromeSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0.class_name())?;
        match self.0.fault() {
            Some((what, Some(level))) => write!(f, ", {what} at level {level}"),
            Some((what, None)) => write!(f, ", {what}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ec = self.class();
        let iss = self.0 & 0x1ff_ffff;
        write!(f, "EC {ec:#04x} ({})", self.summary())?;
        if ec == 0x24 || ec == 0x25 {
            let dir = if iss & (1 << 6) != 0 { "write" } else { "read" };
            write!(f, ", {dir}")?;
            if iss & (1 << 24) != 0 {
                write!(
                    f,
                    ", {} bytes via x{}",
                    1 << ((iss >> 22) & 3),
                    (iss >> 16) & 31
                )?;
            }
        } else if self.fault().is_none() {
            write!(f, ", ISS {iss:#x}")?;
        }
        Ok(())
    }
}
