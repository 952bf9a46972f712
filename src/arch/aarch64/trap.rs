//! Guest exits: decoding the syndrome of an exception taken from EL1/EL0 into what the guest
//! asked for, and handing it to the domain code in [`crate::vm`].

use super::exceptions::TrapFrame;
use super::vcpu;
use core::arch::asm;

fn esr() -> u64 {
    let v: u64;
    // SAFETY: reading the syndrome of the exception being handled.
    unsafe { asm!("mrs {}, esr_el2", out(reg) v, options(nomem, nostack)) };
    v
}

/// The faulting guest-physical address of a stage-2 abort.
fn fault_ipa() -> u64 {
    let (hpfar, far): (u64, u64);
    // SAFETY: reading fault-address registers of the exception being handled.
    unsafe {
        asm!("mrs {}, hpfar_el2", out(reg) hpfar, options(nomem, nostack));
        asm!("mrs {}, far_el2", out(reg) far, options(nomem, nostack));
    }
    ((hpfar & 0x0fff_ffff_fff0) << 8) | (far & 0xfff)
}

/// A decoded MMIO access (a data abort with a valid instruction syndrome).
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    pub ipa: u64,
    pub size: u8,
    pub write: bool,
    /// Register number, 31 = XZR.
    pub reg: usize,
    pub sign_extend: bool,
    pub sixty_four: bool,
}

/// A decoded system-register access (MSR/MRS trapped by HCR_EL2 or ICH).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysReg {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    pub reg: usize,
    pub read: bool,
}

impl core::fmt::Display for SysReg {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(
            f,
            "{} S{}_{}_C{}_C{}_{}",
            if self.read { "read of" } else { "write to" },
            self.op0,
            self.op1,
            self.crn,
            self.crm,
            self.op2
        )
    }
}

pub fn guest_sync(frame: &mut TrapFrame, esr: u64, vm: &'static crate::vm::Vm, v: usize) {
    let ec = (esr >> 26) & 0x3f;
    let iss = esr & 0x1ff_ffff;

    match ec {
        0x01 => {
            frame.elr += 4;
            if iss & 1 == 0 {
                crate::vm::exit::wfi(frame);
            }
            // WFE is a hint: returning at once is a valid implementation.
        }
        // HVC with an immediate other than 0 is no call of ours: undefined, as docs/abi.md says.
        // (ELR points past an HVC; the exception is the HVC's own.)
        0x16 if iss & 0xffff != 0 => {
            frame.elr -= 4;
            vcpu::inject_undef(frame)
        }
        0x16 => crate::vm::exit::call(frame, vm, v),
        0x17 => {
            // A trapped SMC returns to the instruction itself; PSCI expects the next one.
            frame.elr += 4;
            crate::vm::exit::call(frame, vm, v);
        }
        0x18 => {
            let r = SysReg {
                op0: ((iss >> 20) & 3) as u8,
                op2: ((iss >> 17) & 7) as u8,
                op1: ((iss >> 14) & 7) as u8,
                crn: ((iss >> 10) & 15) as u8,
                reg: ((iss >> 5) & 31) as usize,
                crm: ((iss >> 1) & 15) as u8,
                read: iss & 1 == 1,
            };
            if crate::vm::exit::sysreg(frame, r) {
                frame.elr += 4;
            } else {
                vcpu::inject_undef(frame);
            }
        }
        0x24 => {
            let ipa = fault_ipa();
            if iss & (1 << 24) == 0 {
                crate::vm::exit::crash(
                    frame,
                    format_args!(
                        "data abort at IPA {ipa:#x} with no instruction syndrome (an access MMIO \
                         cannot emulate, e.g. a load/store pair): {}",
                        super::esr::Syndrome(esr)
                    ),
                );
            }
            let m = Mmio {
                ipa,
                size: 1 << ((iss >> 22) & 3),
                sign_extend: iss & (1 << 21) != 0,
                reg: ((iss >> 16) & 31) as usize,
                sixty_four: iss & (1 << 15) != 0,
                write: iss & (1 << 6) != 0,
            };
            crate::vm::exit::mmio(frame, m, esr);
        }
        0x20 => crate::vm::exit::crash(
            frame,
            format_args!(
                "instruction abort at IPA {:#x}: {}",
                fault_ipa(),
                super::esr::Syndrome(esr)
            ),
        ),
        _ => crate::vm::exit::crash(
            frame,
            format_args!("unhandled exit: {}", super::esr::Syndrome(esr)),
        ),
    }
}

/// Every exit from a guest: `what` is the vector's kind (0 synchronous, 1 IRQ, 2 FIQ,
/// 3 SError).
pub fn guest_exit(frame: &mut TrapFrame, what: usize, name: &str) {
    use crate::vm::stats::{self, Exit};
    let esr = esr();
    stats::begin(match (what, (esr >> 26) & 0x3f) {
        (1, _) => Exit::Irq,
        (0, 0x01) => Exit::Wfi,
        (0, 0x16) => Exit::Hvc,
        (0, 0x17) => Exit::Smc,
        (0, 0x18) => Exit::SysReg,
        (0, 0x24) => Exit::Mmio,
        _ => Exit::Other,
    });
    let (vm, v) = crate::vm::current();
    crate::vm::exit::after_exit(vm, v);
    match what {
        0 => guest_sync(frame, esr, vm, v),
        1 => super::gic::handle_irq(),
        _ => guest_async_abort(frame, name),
    }
    crate::vm::exit::before_return_of(frame, vm, v);
    stats::end();
}

fn guest_async_abort(frame: &mut TrapFrame, what: &str) {
    crate::vm::exit::crash(frame, format_args!("{what} taken from the guest"));
}

/// Register `n` of the guest (31 reads as zero: XZR).
pub fn reg(frame: &TrapFrame, n: usize) -> u64 {
    if n == 31 { 0 } else { frame.x[n] }
}

pub fn set_reg(frame: &mut TrapFrame, n: usize, v: u64) {
    if n != 31 {
        frame.x[n] = v;
    }
}
