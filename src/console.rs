//! Ferrite's console: the UART the device tree names, shared by every CPU.
//!
//! Normal output takes a lock so lines from different CPUs do not interleave. The panic path
//! uses [`write_raw`], which does not lock: the lock may be held by the CPU that panicked.

use crate::drivers::pl011::Pl011;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Mutex;

/// Base address of the console UART, or 0 before there is one.
static BASE: AtomicUsize = AtomicUsize::new(0);
/// Held while writing; it also guards the log ring, which keeps what Ferrite wrote.
static LOCK: Mutex<()> = Mutex::new(());
static RING: Mutex<crate::logring::LogRing> = Mutex::new(crate::logring::LogRing::new());

/// Points the console at a PL011. Callable more than once (the early console is replaced by the
/// one the device tree names).
///
/// # Safety
/// `base` must be a PL011 register frame mapped as device memory for the rest of Ferrite's life.
pub unsafe fn init(base: usize) {
    // SAFETY: forwarded from the caller.
    let uart = unsafe { Pl011::new(base) };
    uart.enable_tx();
    BASE.store(base, Ordering::Release);
}

fn uart() -> Option<Pl011> {
    match BASE.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: `init` established that this base is a mapped PL011.
        base => Some(unsafe { Pl011::new(base) }),
    }
}

struct Raw<'a>(&'a Pl011);

/// Writes to the UART and the log ring.
struct Logged<'a>(&'a Pl011);

impl Write for Logged<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_bytes(s.as_bytes());
        RING.lock().write(s.as_bytes());
        Ok(())
    }
}

/// Copies Ferrite's log from byte number `from` (see [`crate::logring`]).
pub fn read_log(from: u64, out: &mut [u8]) -> (usize, u64) {
    let masked = crate::arch::cpu::irqs_masked();
    crate::arch::cpu::irq_disable();
    let r = RING.lock().read(from, out);
    if !masked {
        crate::arch::cpu::irq_enable();
    }
    r
}

impl Write for Raw<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes formatted text as one unit, under the console lock.
pub fn write_fmt(args: fmt::Arguments) {
    if let Some(uart) = uart() {
        let _guard = LOCK.lock();
        let _ = Logged(&uart).write_fmt(args);
    }
}

/// A whole line a guest printed (its emulated UART buffers to newlines), under the lock so it
/// does not interleave with Ferrite's log.
pub fn write_guest_line(line: &[u8]) {
    if let Some(uart) = uart() {
        let _guard = LOCK.lock();
        uart.write_bytes(line);
    }
}

/// Writes without the lock: only for the panic and fatal-exception paths.
pub fn write_raw(args: fmt::Arguments) {
    if let Some(uart) = uart() {
        let _ = Raw(&uart).write_fmt(args);
    }
}

/// Turns on receive interrupts: from now on typed input goes to [`read_input`].
pub fn enable_input() {
    if let Some(uart) = uart() {
        uart.enable_rx_interrupt();
    }
}

/// Takes what has been typed, up to `buf.len()` bytes.
pub fn read_input(buf: &mut [u8]) -> usize {
    let Some(uart) = uart() else { return 0 };
    let mut n = 0;
    while n < buf.len() {
        match uart.read_byte() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    n
}

/// Drains the UART before the machine is switched off.
pub fn flush() {
    if let Some(uart) = uart() {
        uart.flush();
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
