//! dom0's console: the PL011 that `/chosen/stdout-path` names, shared by every vCPU.
//!
//! dom0 keeps the line settings it was given (QEMU's, or whatever Ferrite passes through). It
//! transmits, and reads what is typed by polling the receive FIFO ([`read_byte`], from dom0's
//! main loop: the toolstack's shell); the receive interrupt is left masked. Normal output takes a lock so lines from different vCPUs do not interleave;
//! the panic path uses [`write_raw`], which does not: the lock may be held by the vCPU that
//! failed.

use core::fmt::{self, Write};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Mutex;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! [u32,
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) [],
    ],
    CR [
        UARTEN OFFSET(0) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        RXE OFFSET(9) NUMBITS(1) [],
    ],
];

register_structs! {
    Registers {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => _reserved2),
        (0x1000 => @END),
    }
}

/// A PL011 at a device-mapped address.
struct Pl011 {
    regs: NonNull<Registers>,
}

impl Pl011 {
    fn regs(&self) -> &Registers {
        // SAFETY: `init`'s contract: the frame is a mapped PL011 for the rest of dom0's life.
        unsafe { self.regs.as_ref() }
    }

    fn put_byte(&self, b: u8) {
        while self.regs().fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs().dr.set(b as u32);
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' {
                self.put_byte(b'\r');
            }
            self.put_byte(b);
        }
        Ok(())
    }
}

/// Base address of the console UART, or 0 before there is one.
static BASE: AtomicUsize = AtomicUsize::new(0);
static LOCK: Mutex<()> = Mutex::new(());

/// Points the console at a PL011 and makes sure its transmitter is on.
///
/// # Safety
/// `base` must be a PL011 register frame, mapped as device memory now and for the rest of
/// dom0's life (the early map covers it first, the real map after).
pub unsafe fn init(base: usize) {
    BASE.store(base, Ordering::Release);
    if let Some(u) = uart() {
        let cr = u.regs().cr.get();
        let want = cr | CR::UARTEN::SET.value | CR::TXE::SET.value | CR::RXE::SET.value;
        if cr != want {
            u.regs().cr.set(want);
        }
    }
}

fn uart() -> Option<Pl011> {
    NonNull::new(BASE.load(Ordering::Acquire) as *mut Registers).map(|regs| Pl011 { regs })
}

/// Writes formatted text as one unit, under the console lock.
pub fn write_fmt(args: fmt::Arguments) {
    if let Some(mut uart) = uart() {
        crate::cpu::with_irqs_masked(|| {
            let _guard = LOCK.lock();
            let _ = uart.write_fmt(args);
        });
    }
}

/// Writes without the lock: only for the panic and fatal-exception paths.
pub fn write_raw(args: fmt::Arguments) {
    if let Some(mut uart) = uart() {
        let _ = uart.write_fmt(args);
    }
}

/// The next byte typed on the console, if one is waiting (the data register's error bits are
/// dropped). Takes the console lock so it never reads between another vCPU's accesses.
pub fn read_byte() -> Option<u8> {
    let u = uart()?;
    crate::cpu::with_irqs_masked(|| {
        let _guard = LOCK.lock();
        if u.regs().fr.is_set(FR::RXFE) {
            None
        } else {
            Some(u.regs().dr.get() as u8)
        }
    })
}

/// Writes bytes as they are (no newline translation), under the console lock: the shell's
/// echo and prompt.
pub fn write_bytes(b: &[u8]) {
    if let Some(u) = uart() {
        crate::cpu::with_irqs_masked(|| {
            let _guard = LOCK.lock();
            for &c in b {
                u.put_byte(c);
            }
        });
    }
}

/// Waits until every queued byte has left the wire (before power-off).
pub fn flush() {
    if let Some(u) = uart() {
        while u.regs().fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

/// Prints one console line, under the console lock.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
