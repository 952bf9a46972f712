//! The Arm PL011 UART: Ferrite's console on QEMU virt and the Raspberry Pi 4 (UART0).
//!
//! Ferrite only transmits. It does not reprogram the baud rate: firmware (or QEMU) has set the
//! line up, and the Pi's UART clock is not known to us without the mailbox.

use core::ptr::NonNull;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

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
        (0x38 => imsc: ReadWrite<u32>),
        (0x3c => _reserved3),
        (0x44 => icr: ReadWrite<u32>),
        (0x48 => _reserved4),
        (0x1000 => @END),
    }
}

/// A PL011 at a fixed, device-mapped address.
pub struct Pl011 {
    regs: NonNull<Registers>,
}

// SAFETY: the registers are MMIO owned by this driver; callers serialise access (the console
// lock, or the panic path after the other CPUs are stopped).
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be the physical (identity-mapped) address of a PL011's 4 KiB register frame,
    /// mapped as device memory, and no other driver instance may write to it concurrently.
    pub const unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees base is a valid, non-null MMIO address.
        Self {
            regs: unsafe { NonNull::new_unchecked(base as *mut Registers) },
        }
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract: the frame is mapped and valid for the driver's lifetime.
        unsafe { self.regs.as_ref() }
    }

    /// Makes sure the transmitter is on; keeps the firmware's line settings.
    pub fn enable_tx(&self) {
        let cr = self.regs().cr.get();
        let want = cr | CR::UARTEN::SET.value | CR::TXE::SET.value;
        if cr != want {
            self.regs().cr.set(want);
        }
    }

    pub fn put_byte(&self, b: u8) {
        while self.regs().fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs().dr.set(b as u32);
    }

    /// Waits until every queued byte has left the wire (before power-off).
    pub fn flush(&self) {
        while self.regs().fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }

    /// A received byte, if any.
    pub fn read_byte(&self) -> Option<u8> {
        (!self.regs().fr.is_set(FR::RXFE)).then(|| self.regs().dr.get() as u8)
    }

    /// Interrupts on received data (RXIM) and receive timeout (RTIM), the receiver on.
    pub fn enable_rx_interrupt(&self) {
        let cr = self.regs().cr.get();
        self.regs().cr.set(cr | CR::RXE::SET.value);
        self.regs().icr.set(0x7ff);
        self.regs().imsc.set((1 << 4) | (1 << 6));
    }

    pub fn write_bytes(&self, s: &[u8]) {
        for &b in s {
            if b == b'\n' {
                self.put_byte(b'\r');
            }
            self.put_byte(b);
        }
    }
}
