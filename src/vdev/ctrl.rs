//! The control page: one emulated 4 KiB MMIO frame in dom0's stage 2 through which dom0's
//! *user space* makes Ferrite's hypercalls (EL0 cannot issue `hvc`). A program maps the frame
//! (`/dev/mem`, or `/dev/uioN` where the kernel has `uio_pdrv_genirq`), writes the call's
//! registers, and writes the doorbell; Ferrite runs the call as if the vCPU had issued `hvc #0`
//! with those registers, and the results appear in the result registers. docs/linux-dom0.md is
//! the contract; this is the register model, with no hardware access (the machine side is
//! `vm::ctrl`).
//!
//! | offset | register | access |
//! |---|---|---|
//! | 0x00..=0x30 | `X0`..`X6`: the request (x0 = function identifier, x1..x6 arguments) | RW, 64 or 32 bits |
//! | 0x40 | `DOORBELL`: a write runs the request; a read gives the number of calls run | RW |
//! | 0x80..=0xB0 | `R0`..`R6`: x0..x6 after the last call | RO |
//! | 0xF00 | `MAGIC`: `0x4652_4354` ("FRCT") | RO, 32 bits |
//! | 0xF04 | `VERSION`: 2 (1 had `X0`..`X5` and `R0`..`R3` only) | RO, 32 bits |
//!
//! Accesses must be naturally aligned and 4 or 8 bytes wide (32-bit halves of a 64-bit
//! register work: low half at the register's offset, high half at +4). Anything else, and any
//! offset not in the table, is ignored: a read gives 0, a write does nothing, and the access is
//! reported as [`Bad`] for a log line. The domain is never faulted for it.

/// Offsets of the registers.
pub const X0: u64 = 0x00;
pub const REQUEST_WORDS: usize = 7;
pub const DOORBELL: u64 = 0x40;
pub const R0: u64 = 0x80;
pub const RESULT_WORDS: usize = 7;
pub const MAGIC: u64 = 0xF00;
pub const VERSION: u64 = 0xF04;

/// `MAGIC`'s value: "FRCT" in ASCII, most significant byte first.
pub const MAGIC_VALUE: u32 = 0x4652_4354;
/// `VERSION`'s value.
pub const VERSION_VALUE: u32 = 2;
/// The frame's size.
pub const SIZE: u64 = 0x1000;

/// Why an access was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// Not 4 or 8 bytes, or not aligned to its size.
    Width,
    /// No register at that offset (or it is read-only and this was a write).
    Offset,
}

/// What a write asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// A register changed; nothing more to do.
    Done,
    /// The doorbell: run the call with these x0..x6, then [`CtrlPage::complete`].
    Ring([u64; REQUEST_WORDS]),
}

/// The register file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtrlPage {
    request: [u64; REQUEST_WORDS],
    result: [u64; RESULT_WORDS],
    calls: u64,
}

/// A 64-bit register's index and whether the access is its high half, for an access of
/// `size` bytes at `off` inside a block of `words` registers at `base`.
fn word(off: u64, size: u8, base: u64, words: usize) -> Option<(usize, bool)> {
    let rel = off.checked_sub(base)?;
    let i = (rel / 8) as usize;
    if i >= words {
        return None;
    }
    match (size, rel % 8) {
        (8, 0) => Some((i, false)),
        (4, 0) => Some((i, false)),
        (4, 4) => Some((i, true)),
        _ => None,
    }
}

fn get(reg: u64, size: u8, high: bool) -> u64 {
    match (size, high) {
        (8, _) => reg,
        (_, false) => reg & 0xffff_ffff,
        (_, true) => reg >> 32,
    }
}

fn set(reg: &mut u64, size: u8, high: bool, value: u64) {
    *reg = match (size, high) {
        (8, _) => value,
        (_, false) => (*reg & !0xffff_ffff) | (value & 0xffff_ffff),
        (_, true) => (*reg & 0xffff_ffff) | (value << 32),
    };
}

fn check_width(off: u64, size: u8) -> Result<(), Bad> {
    if (size == 4 || size == 8) && off.is_multiple_of(size as u64) && off < SIZE {
        Ok(())
    } else {
        Err(Bad::Width)
    }
}

impl CtrlPage {
    pub const fn new() -> Self {
        Self {
            request: [0; REQUEST_WORDS],
            result: [0; RESULT_WORDS],
            calls: 0,
        }
    }

    /// A read of `size` bytes at `off`.
    pub fn read(&self, off: u64, size: u8) -> Result<u64, Bad> {
        check_width(off, size)?;
        if let Some((i, high)) = word(off, size, X0, REQUEST_WORDS) {
            return Ok(get(self.request[i], size, high));
        }
        if let Some((i, high)) = word(off, size, R0, RESULT_WORDS) {
            return Ok(get(self.result[i], size, high));
        }
        if let Some((_, high)) = word(off, size, DOORBELL, 1) {
            return Ok(get(self.calls, size, high));
        }
        match (off, size) {
            (MAGIC, 4) => Ok(MAGIC_VALUE as u64),
            (VERSION, 4) => Ok(VERSION_VALUE as u64),
            // MAGIC and VERSION as one 64-bit read.
            (MAGIC, 8) => Ok(MAGIC_VALUE as u64 | (VERSION_VALUE as u64) << 32),
            _ => Err(Bad::Offset),
        }
    }

    /// A write of `size` bytes at `off` (`value` already cut to the width).
    pub fn write(&mut self, off: u64, size: u8, value: u64) -> Result<Write, Bad> {
        check_width(off, size)?;
        if let Some((i, high)) = word(off, size, X0, REQUEST_WORDS) {
            set(&mut self.request[i], size, high, value);
            return Ok(Write::Done);
        }
        if word(off, size, DOORBELL, 1).is_some() {
            return Ok(Write::Ring(self.request));
        }
        Err(Bad::Offset)
    }

    /// The call the doorbell started has returned these x0..x6.
    pub fn complete(&mut self, result: [u64; RESULT_WORDS]) {
        self.result = result;
        self.calls = self.calls.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_registers() {
        let p = CtrlPage::new();
        assert_eq!(p.read(MAGIC, 4), Ok(0x4652_4354));
        assert_eq!(p.read(VERSION, 4), Ok(2));
        assert_eq!(p.read(MAGIC, 8), Ok(0x2_4652_4354));
        assert_eq!(p.read(DOORBELL, 8), Ok(0));
    }

    #[test]
    fn request_doorbell_result() {
        let mut p = CtrlPage::new();
        for i in 0..REQUEST_WORDS as u64 {
            assert_eq!(p.write(X0 + 8 * i, 8, 0x100 + i), Ok(Write::Done));
        }
        assert_eq!(p.read(X0 + 8, 8), Ok(0x101));
        assert_eq!(
            p.write(DOORBELL, 8, 1),
            Ok(Write::Ring([
                0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106
            ]))
        );
        p.complete([u64::MAX, 7, 8, 9, 10, 11, 12]);
        assert_eq!(p.read(R0, 8), Ok(u64::MAX));
        assert_eq!(p.read(R0 + 24, 8), Ok(9));
        assert_eq!(p.read(R0 + 48, 8), Ok(12));
        assert_eq!(p.read(DOORBELL, 8), Ok(1));
        // The request stays for the next call.
        assert_eq!(p.write(DOORBELL, 4, 0), Ok(Write::Ring(p.request)));
    }

    #[test]
    fn halves_of_a_register() {
        let mut p = CtrlPage::new();
        p.write(X0, 4, 0xC600_000D).unwrap();
        p.write(X0 + 4, 4, 0).unwrap();
        assert_eq!(p.read(X0, 8), Ok(0xC600_000D));
        p.write(X0 + 0x10, 8, 0x1122_3344_5566_7788).unwrap();
        p.write(X0 + 0x14, 4, 0xaabb_ccdd).unwrap();
        assert_eq!(p.read(X0 + 0x10, 8), Ok(0xaabb_ccdd_5566_7788));
        assert_eq!(p.read(X0 + 0x10, 4), Ok(0x5566_7788));
        assert_eq!(p.read(X0 + 0x14, 4), Ok(0xaabb_ccdd));
        p.complete([0xffff_ffff_ffff_ffea, 0, 0, 0, 0, 0, 0]);
        assert_eq!(p.read(R0, 4), Ok(0xffff_ffea));
        assert_eq!(p.read(R0 + 4, 4), Ok(0xffff_ffff));
    }

    #[test]
    fn bad_accesses_are_refused_without_effect() {
        let mut p = CtrlPage::new();
        let before = p.clone();
        // Widths and alignment.
        assert_eq!(p.read(X0, 1), Err(Bad::Width));
        assert_eq!(p.read(X0, 2), Err(Bad::Width));
        assert_eq!(p.write(X0 + 1, 1, 5), Err(Bad::Width));
        assert_eq!(p.write(X0 + 4, 8, 5), Err(Bad::Width));
        assert_eq!(p.write(DOORBELL + 2, 4, 5), Err(Bad::Width));
        assert_eq!(p.read(SIZE, 4), Err(Bad::Width));
        assert_eq!(p.read(u64::MAX - 3, 4), Err(Bad::Width));
        // Holes and read-only registers.
        assert_eq!(p.read(0x38, 8), Err(Bad::Offset));
        assert_eq!(p.read(0xB8, 8), Err(Bad::Offset));
        assert_eq!(p.read(0xFF8, 8), Err(Bad::Offset));
        assert_eq!(p.write(R0, 8, 1), Err(Bad::Offset));
        assert_eq!(p.write(MAGIC, 4, 1), Err(Bad::Offset));
        assert_eq!(p.write(0x48, 8, 1), Err(Bad::Offset));
        assert_eq!(p, before);
        // Every offset and width: never a panic.
        for off in (0..SIZE + 16).step_by(2) {
            for size in [1, 2, 4, 8, 16] {
                let _ = p.read(off, size);
                let _ = p.write(off, size, u64::MAX);
            }
        }
    }
}
