//! What happens when dom0 itself fails: say where and why on the console (`dom0: PANIC ...`),
//! stop the other vCPUs, and halt. A host test (or Ferrite) sees the line; dom0 does not power
//! the machine off, so a failure never looks like a clean exit.

use crate::{console, cpu, timer};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cpu::irq_disable();
    if PANICKING.swap(true, Ordering::SeqCst) {
        // Another vCPU is already reporting; a second report would garble the first.
        cpu::park();
    }
    timer::stop_all();
    let (file, line) = info
        .location()
        .map(|l| (l.file(), l.line()))
        .unwrap_or(("?", 0));
    console::write_raw(format_args!(
        "dom0: PANIC on vcpu{} at {}:{}: {}\n",
        cpu::index(),
        file,
        line,
        info.message()
    ));
    console::write_raw(format_args!("dom0: halted\n"));
    console::flush();
    cpu::park();
}
