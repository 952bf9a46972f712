//! Arm semihosting's exit call, so a run under QEMU (`-semihosting`) can end with a status.
//!
//! Used only when the boot command line says `semihosting`: on hardware without a debugger the
//! `hlt` instruction would raise an exception.

use core::arch::asm;

const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Asks the debugger (QEMU) to exit with `code`. Returns only if nobody listens.
pub fn exit(code: u32) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    // SAFETY: the semihosting call reads the two-word block and, under QEMU, ends the process.
    unsafe {
        asm!("hlt #0xf000", in("x0") SYS_EXIT, in("x1") block.as_ptr(), options(nostack));
    }
}
