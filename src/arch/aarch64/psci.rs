//! PSCI calls from Ferrite to the firmware (or QEMU) below it: CPU_ON, SYSTEM_OFF, SYSTEM_RESET.
//!
//! The conduit (SMC or HVC) comes from the device tree's `/psci` node. At EL2 only SMC reaches
//! firmware; an `hvc` conduit would call Ferrite itself, so it is refused.

use crate::dt::Conduit;
use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

pub use ferrite_abi::psci::error_name;
use ferrite_abi::psci::{CPU_ON_64 as CPU_ON, PSCI_VERSION, SYSTEM_OFF, SYSTEM_RESET};

const NONE: u8 = 0;
const SMC: u8 = 1;

static CONDUIT: AtomicU8 = AtomicU8::new(NONE);

/// Records the conduit. Returns false when PSCI cannot be used from EL2.
pub fn init(conduit: Option<Conduit>) -> bool {
    match conduit {
        Some(Conduit::Smc) => {
            CONDUIT.store(SMC, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}

pub fn available() -> bool {
    CONDUIT.load(Ordering::Relaxed) == SMC
}

fn call(f: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    if !available() {
        return -1;
    }
    let mut x0 = f as u64;
    // SAFETY: an SMC into firmware with the SMC Calling Convention: x0-x17 may be clobbered.
    unsafe {
        asm!("smc #0",
            inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _, options(nostack));
    }
    x0 as i64
}

pub fn version() -> Option<(u16, u16)> {
    let v = call(PSCI_VERSION, 0, 0, 0);
    (v >= 0).then_some(((v >> 16) as u16, v as u16))
}

pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    match call(CPU_ON, mpidr, entry, context) {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Returns only if the call failed or PSCI is absent.
pub fn system_off() {
    call(SYSTEM_OFF, 0, 0, 0);
}

pub fn system_reset() {
    call(SYSTEM_RESET, 0, 0, 0);
}
