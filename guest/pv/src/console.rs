//! The console: text through `CONSOLE_IO WRITE`, one hypercall per line where it fits.
//!
//! [`print!`](crate::print) and [`println!`](crate::println) format into a buffer on the stack
//! (no lock, no allocator: usable on any vCPU and from exception handlers) and hand it to
//! Ferrite when it is full and at the end. A line shorter than [`LINE`] bytes therefore goes
//! out in one call, and Ferrite's console never interleaves it with another vCPU's.

use core::fmt::{self, Write};

/// Bytes gathered before a call.
pub const LINE: usize = 256;

/// Writes `bytes` to Ferrite's console, with as many calls as it takes. Gives up silently if
/// Ferrite refuses (there is nowhere else to report it).
pub fn write_bytes(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match crate::hypercall::console_write(bytes) {
            Ok(n) if n > 0 => bytes = &bytes[n.min(bytes.len())..],
            _ => return,
        }
    }
}

/// A [`fmt::Write`] that gathers up to [`LINE`] bytes, then writes them with one call.
pub struct LineWriter {
    buf: [u8; LINE],
    len: usize,
}

impl LineWriter {
    pub const fn new() -> Self {
        Self {
            buf: [0; LINE],
            len: 0,
        }
    }

    /// Writes what is gathered.
    pub fn flush(&mut self) {
        write_bytes(&self.buf[..self.len]);
        self.len = 0;
    }

    /// What is gathered and not yet written (for tests).
    pub fn pending(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends, flushing through `out` whenever the buffer is full.
    fn push(&mut self, mut s: &[u8], out: &mut impl FnMut(&[u8])) {
        while !s.is_empty() {
            let n = (LINE - self.len).min(s.len());
            self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
            self.len += n;
            s = &s[n..];
            if self.len == LINE {
                out(&self.buf);
                self.len = 0;
            }
        }
    }
}

impl Default for LineWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes(), &mut |b| write_bytes(b));
        Ok(())
    }
}

/// `print!`'s back end: formats `args` and writes them.
pub fn print_fmt(args: fmt::Arguments) {
    let mut w = LineWriter::new();
    let _ = w.write_fmt(args);
    w.flush();
}

/// Prints to Ferrite's console through `CONSOLE_IO`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::print_fmt(format_args!($($arg)*))
    };
}

/// Prints one line to Ferrite's console through `CONSOLE_IO` (one call if under 256 bytes).
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_bytes(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::console::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_then_flushes_when_full() {
        let mut w = LineWriter::new();
        let mut calls: Vec<Vec<u8>> = Vec::new();
        w.push(b"hello ", &mut |b| calls.push(b.to_vec()));
        w.push(b"world\n", &mut |b| calls.push(b.to_vec()));
        assert!(calls.is_empty());
        assert_eq!(w.pending(), b"hello world\n");
        let long = [b'x'; LINE + 10];
        w.push(&long, &mut |b| calls.push(b.to_vec()));
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].len(), LINE);
        assert_eq!(&calls[0][..12], b"hello world\n");
        assert_eq!(w.pending().len(), 22);
    }
}
