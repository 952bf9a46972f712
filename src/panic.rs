//! What happens when Ferrite itself fails: say where and why, stop every other CPU, and end the
//! run (exit QEMU with a failure status under `semihosting`, otherwise park for a debugger).

use crate::arch::{cpu, semihosting, smp};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

/// Set by the `semihosting` boot option.
pub static SEMIHOSTING: AtomicBool = AtomicBool::new(false);
static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cpu::irq_disable();
    if PANICKING.swap(true, Ordering::SeqCst) {
        // Another CPU is already reporting; a second report would garble the first.
        cpu::park();
    }
    smp::stop_others();
    let (file, line) = info
        .location()
        .map(|l| (l.file(), l.line()))
        .unwrap_or(("?", 0));
    crate::console::write_raw(format_args!(
        "ferrite: PANIC on cpu{} at {}:{}: {}\n",
        cpu::index(),
        file,
        line,
        info.message()
    ));
    crate::console::flush();
    if SEMIHOSTING.load(Ordering::Relaxed) {
        semihosting::exit(1);
    }
    crate::console::write_raw(format_args!("ferrite: halted\n"));
    cpu::park();
}
