//! An emulated PL011 UART: dom0's console. Ferrite keeps the real UART and shows dom0 one at the
//! same address, so an unmodified kernel's `pl011`/`amba-pl011` driver and `earlycon` work.
//!
//! Transmit is line-buffered so a guest's lines do not interleave with Ferrite's log. Receive is
//! fed by [`Pl011::push_rx`] (the console switch of a later issue); until then the receive FIFO
//! is simply empty.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

const DR: u64 = 0x000;
const RSR: u64 = 0x004;
const FR: u64 = 0x018;
const ILPR: u64 = 0x020;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const DMACR: u64 = 0x048;

const FR_RXFE: u32 = 1 << 4;
const FR_TXFE: u32 = 1 << 7;
const INT_RX: u32 = 1 << 4;
const INT_TX: u32 = 1 << 5;
const INT_RT: u32 = 1 << 6;

/// PrimeCell identification: part 0x011, designer Arm, revision 3 (r1p5), as QEMU and real
/// PL011s report it; Linux's AMBA bus matches drivers on it.
const ID: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Longest line kept before it is flushed anyway.
const LINE_MAX: usize = 512;

#[derive(Debug, Default)]
pub struct Pl011 {
    line: Vec<u8>,
    rx: VecDeque<u8>,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    ris: u32,
    dmacr: u32,
}

/// What an access did, for the caller to act on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// A complete line (or a full buffer) to print.
    pub output: Option<Vec<u8>>,
    /// The level of the UART's interrupt line after the access.
    pub irq: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadAccess;

impl Pl011 {
    pub fn new() -> Self {
        Self {
            cr: 0x300,
            ifls: 0x12,
            ..Self::default()
        }
    }

    fn irq(&self) -> bool {
        self.ris & self.imsc != 0
    }

    fn update_rx_status(&mut self) {
        if self.rx.is_empty() {
            self.ris &= !(INT_RX | INT_RT);
        } else {
            self.ris |= INT_RX | INT_RT;
        }
    }

    pub fn read(&mut self, offset: u64, size: u8) -> Result<(u32, bool), BadAccess> {
        if size > 4 || !offset.is_multiple_of(4) && size == 4 {
            return Err(BadAccess);
        }
        let v = match offset {
            DR => {
                let b = self.rx.pop_front().unwrap_or(0) as u32;
                self.update_rx_status();
                b
            }
            RSR => 0,
            FR => FR_TXFE | if self.rx.is_empty() { FR_RXFE } else { 0 },
            ILPR => 0,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.ris,
            MIS => self.ris & self.imsc,
            DMACR => self.dmacr,
            0xfe0..=0xffc => ID[((offset - 0xfe0) / 4) as usize],
            _ => 0,
        };
        Ok((v, self.irq()))
    }

    pub fn write(&mut self, offset: u64, size: u8, value: u32) -> Result<Effect, BadAccess> {
        if size > 4 {
            return Err(BadAccess);
        }
        let mut output = None;
        match offset {
            DR => {
                let b = value as u8;
                self.line.push(b);
                if b == b'\n' || self.line.len() >= LINE_MAX {
                    output = Some(core::mem::take(&mut self.line));
                }
                // The transmitter is always instantly done.
                self.ris |= INT_TX;
            }
            RSR => {}
            IBRD => self.ibrd = value & 0xffff,
            FBRD => self.fbrd = value & 0x3f,
            LCR_H => self.lcr_h = value & 0xff,
            CR => self.cr = value & 0xffff,
            IFLS => self.ifls = value & 0x3f,
            IMSC => self.imsc = value & 0x7ff,
            ICR => self.ris &= !value,
            DMACR => self.dmacr = value & 0x7,
            _ => {}
        }
        self.update_rx_status();
        Ok(Effect {
            output,
            irq: self.irq(),
        })
    }

    /// Bytes typed at the console for this guest. Returns the interrupt line's level.
    pub fn push_rx(&mut self, bytes: &[u8]) -> bool {
        self.rx.extend(
            bytes
                .iter()
                .copied()
                .take(4096usize.saturating_sub(self.rx.len())),
        );
        self.update_rx_status();
        self.irq()
    }

    /// Whatever is buffered without a newline yet (a guest that dies mid-line).
    pub fn take_partial_line(&mut self) -> Option<Vec<u8>> {
        (!self.line.is_empty()).then(|| core::mem::take(&mut self.line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_buffered_until_newline() {
        let mut u = Pl011::new();
        for &b in b"hello" {
            assert_eq!(u.write(DR, 4, b as u32).unwrap().output, None);
        }
        let e = u.write(DR, 1, b'\n' as u32).unwrap();
        assert_eq!(e.output.as_deref(), Some(&b"hello\n"[..]));
        assert_eq!(u.take_partial_line(), None);
        u.write(DR, 4, b'x' as u32).unwrap();
        assert_eq!(u.take_partial_line().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn long_lines_are_flushed() {
        let mut u = Pl011::new();
        let mut flushed = 0;
        for _ in 0..LINE_MAX * 2 {
            if u.write(DR, 4, b'a' as u32).unwrap().output.is_some() {
                flushed += 1;
            }
        }
        assert_eq!(flushed, 2);
    }

    #[test]
    fn flags_ids_and_interrupts() {
        let mut u = Pl011::new();
        let (fr, _) = u.read(FR, 4).unwrap();
        assert_eq!(fr & (FR_TXFE | FR_RXFE), FR_TXFE | FR_RXFE);
        let ids: Vec<u32> = (0..8)
            .map(|i| u.read(0xfe0 + i * 4, 4).unwrap().0)
            .collect();
        assert_eq!(ids, ID);
        // TX interrupt: raised by a write, seen once unmasked, cleared by ICR.
        assert!(!u.write(DR, 4, b'a' as u32).unwrap().irq);
        assert!(u.write(IMSC, 4, INT_TX).unwrap().irq);
        assert!(!u.write(ICR, 4, INT_TX).unwrap().irq);
        // RX: data makes the line rise when unmasked; reading drains it.
        u.write(IMSC, 4, INT_RX).unwrap();
        assert!(u.push_rx(b"ok"));
        assert_eq!(u.read(FR, 4).unwrap().0 & FR_RXFE, 0);
        assert_eq!(u.read(DR, 4).unwrap().0, b'o' as u32);
        assert_eq!(u.read(DR, 4).unwrap(), (b'k' as u32, false));
    }

    #[test]
    fn bad_sizes_are_refused() {
        let mut u = Pl011::new();
        assert_eq!(u.read(DR, 8), Err(BadAccess));
        assert_eq!(u.write(DR, 8, 0), Err(BadAccess));
        // Reserved offsets read as zero and ignore writes.
        assert_eq!(u.read(0x800, 4).unwrap().0, 0);
        assert!(u.write(0x800, 4, 1).is_ok());
    }
}
