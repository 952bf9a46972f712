//! Ferrite's log ring: the last bytes Ferrite wrote to its console, kept so that dom0 can read
//! them (`DOMCTL DMESG`, the toolstack's `dmesg`) after they scrolled past.
//!
//! Bytes are numbered from 0 since boot; a reader asks from a number and gets what is still
//! kept from there (the oldest kept byte if it asked for older ones).

/// Bytes kept.
pub const SIZE: usize = 16 * 1024;

pub struct LogRing {
    buf: [u8; SIZE],
    /// Bytes written since boot.
    head: u64,
}

impl Default for LogRing {
    fn default() -> Self {
        Self::new()
    }
}

impl LogRing {
    pub const fn new() -> Self {
        Self {
            buf: [0; SIZE],
            head: 0,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.buf[(self.head % SIZE as u64) as usize] = b;
            self.head += 1;
        }
    }

    /// The number of the oldest byte still kept.
    pub fn oldest(&self) -> u64 {
        self.head.saturating_sub(SIZE as u64)
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    /// Copies bytes from number `from` (or the oldest kept, if that is later) into `out`.
    /// Returns (bytes copied, the number after the last one copied).
    pub fn read(&self, from: u64, out: &mut [u8]) -> (usize, u64) {
        let start = from.max(self.oldest()).min(self.head);
        let n = ((self.head - start) as usize).min(out.len());
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.buf[((start + i as u64) % SIZE as u64) as usize];
        }
        (n, start + n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resume_and_old_bytes_are_dropped() {
        let mut r = LogRing::new();
        r.write(b"hello ");
        r.write(b"world");
        let mut out = [0u8; 4];
        assert_eq!(r.read(0, &mut out), (4, 4));
        assert_eq!(&out, b"hell");
        let mut rest = [0u8; 64];
        let (n, next) = r.read(4, &mut rest);
        assert_eq!(&rest[..n], b"o world");
        assert_eq!(next, 11);
        assert_eq!(r.read(next, &mut rest).0, 0);
        // Wrap: only the last SIZE bytes stay, and an old position starts at the oldest.
        let big = alloc::vec![b'x'; SIZE + 10];
        r.write(&big);
        assert_eq!(r.oldest(), 11 + 10);
        let mut all = alloc::vec![0u8; SIZE * 2];
        let (n, next) = r.read(0, &mut all);
        assert_eq!((n, next), (SIZE, r.head()));
        assert!(all[..n].iter().all(|&b| b == b'x'));
    }
}
