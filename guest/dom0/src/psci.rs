//! PSCI calls (version, CPU_ON, SYSTEM_OFF) from dom0 to whatever is below it: QEMU's firmware emulation on bare metal,
//! Ferrite under the hypervisor. The conduit (HVC or SMC) is the `/psci` node's `method`.

use crate::dt::Conduit;
use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

pub use ferrite_abi::psci::error_name;
use ferrite_abi::psci::{CPU_ON_64 as CPU_ON, PSCI_VERSION, SYSTEM_OFF};

const NONE: u8 = 0;
const HVC: u8 = 1;
const SMC: u8 = 2;

static CONDUIT: AtomicU8 = AtomicU8::new(NONE);

pub fn init(conduit: Option<Conduit>) {
    let c = match conduit {
        Some(Conduit::Hvc) => HVC,
        Some(Conduit::Smc) => SMC,
        None => NONE,
    };
    CONDUIT.store(c, Ordering::Relaxed);
}

fn call(f: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    call4(f, a1, a2, a3, 0)
}

/// The call with x1..x4 as arguments (PSCI uses x1..x3; x4 is 0 for it).
fn call4(f: u32, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    let mut x0 = f as u64;
    match CONDUIT.load(Ordering::Relaxed) {
        // SAFETY: an HVC under the SMC Calling Convention: x0-x17 may be clobbered; the callee
        // writes memory only where an argument tells it to (the asm is not `nomem`).
        HVC => unsafe {
            asm!("hvc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                inout("x4") a4 => _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack));
        },
        // SAFETY: as above, through SMC.
        SMC => unsafe {
            asm!("smc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                inout("x4") a4 => _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
                out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack));
        },
        _ => return -1,
    }
    x0 as i64
}

/// One of Ferrite's hypercalls (guest/abi), through the same conduit as PSCI.
pub fn hypercall(f: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    call(f, a1, a2, a3)
}

/// A hypercall with a fourth argument in x4 (`SCHED_CTL`). Memory a pointer argument names may
/// be written by the callee: the asm is not `nomem`, so the compiler assumes it may be.
pub fn hypercall4(f: u32, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    call4(f, a1, a2, a3, a4)
}

/// A hypercall with x1..x5 as arguments (`DEVICE_OP SET_BACK_STATE`).
pub fn hypercall5(f: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    hypercall6(f, [a1, a2, a3, a4, a5, 0])
}

/// A hypercall with x1..x6 as arguments (`DEVICE_OP SET_BACK_STATE`).
pub fn hypercall6(f: u32, [a1, a2, a3, a4, a5, a6]: [u64; 6]) -> i64 {
    let mut x0 = f as u64;
    if CONDUIT.load(Ordering::Relaxed) != HVC {
        return -1;
    }
    // SAFETY: as in `call4`: an HVC under the SMC Calling Convention.
    unsafe {
        asm!("hvc #0",
            inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            inout("x4") a4 => _, inout("x5") a5 => _, inout("x6") a6 => _, out("x7") _, out("x8") _,
            out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
            out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack));
    }
    x0 as i64
}

/// A hypercall with x1..x3 as arguments that also answers in x1..x6 (`DEVICE_OP GET`).
pub fn hypercall_regs(f: u32, a1: u64, a2: u64, a3: u64, out: &mut [u64; 6]) -> i64 {
    let mut x0 = f as u64;
    let (mut r1, mut r2, mut r3) = (a1, a2, a3);
    let (r4, r5, r6): (u64, u64, u64);
    if CONDUIT.load(Ordering::Relaxed) != HVC {
        return -1;
    }
    // SAFETY: as in `call4`: an HVC under the SMC Calling Convention.
    unsafe {
        asm!("hvc #0",
            inout("x0") x0, inout("x1") r1, inout("x2") r2, inout("x3") r3, inout("x4") 0u64 => r4,
            inout("x5") 0u64 => r5, inout("x6") 0u64 => r6, out("x7") _, out("x8") _,
            out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
            out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack));
    }
    *out = [r1, r2, r3, r4, r5, r6];
    x0 as i64
}

/// A hypercall with x1..x4 as arguments that also answers in x1 (`GNTTAB_OP MAP`).
pub fn hypercall4_x1(f: u32, a1: u64, a2: u64, a3: u64, a4: u64, x1: &mut u64) -> i64 {
    let mut x0 = f as u64;
    let mut r1 = a1;
    if CONDUIT.load(Ordering::Relaxed) != HVC {
        return -1;
    }
    // SAFETY: as in `call4`: an HVC under the SMC Calling Convention.
    unsafe {
        asm!("hvc #0",
            inout("x0") x0, inout("x1") r1, inout("x2") a2 => _, inout("x3") a3 => _,
            inout("x4") a4 => _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
            out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
            out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack));
    }
    *x1 = r1;
    x0 as i64
}

/// A hypercall that also answers in x1 (`DOMCTL CONSOLE`).
pub fn hypercall_x1(f: u32, a1: u64, a2: u64, a3: u64, x1: &mut u64) -> i64 {
    let mut x0 = f as u64;
    let mut r1 = a1;
    if CONDUIT.load(Ordering::Relaxed) != HVC {
        return -1;
    }
    // SAFETY: as in `call4`: an HVC under the SMC Calling Convention.
    unsafe {
        asm!("hvc #0",
            inout("x0") x0, inout("x1") r1, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
            out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
            out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack));
    }
    *x1 = r1;
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

/// Returns only if the call failed or there is no PSCI.
pub fn system_off() {
    call(SYSTEM_OFF, 0, 0, 0);
}
