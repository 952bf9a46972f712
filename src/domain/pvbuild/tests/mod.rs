//! Host tests of the PV domU builder: ELF images written byte by byte (`elf`), layouts
//! (`plan`), and whole builds into a fake machine with scattered frames, validated by the PV
//! MMU's own pin and checked by walking the tables (`build`).

mod build;
mod elf;
mod plan;

use super::*;
use crate::pv::GuestMemory;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

pub(super) const PF_X: u32 = 1;
pub(super) const PF_W: u32 = 2;
pub(super) const PF_R: u32 = 4;
pub(super) const PT_LOAD: u32 = 1;
pub(super) const PT_NOTE: u32 = 4;

/// Offsets of program-header fields.
pub(super) const P_TYPE: usize = 0;
pub(super) const P_FLAGS: usize = 4;
pub(super) const P_OFFSET: usize = 8;
pub(super) const P_VADDR: usize = 16;
pub(super) const P_FILESZ: usize = 32;
pub(super) const P_MEMSZ: usize = 40;
pub(super) const P_ALIGN: usize = 48;

/// One segment to write into a test image.
#[derive(Clone, Debug)]
pub(super) struct Seg {
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
    pub flags: u32,
}

/// `len` recognisable bytes (never all zero, so a missed copy shows).
pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

/// A valid ELF64 aarch64 `ET_EXEC`: header, program headers at 64, each segment's bytes at
/// the next file offset congruent to its address modulo 4096 (`p_align` 4096).
pub(super) fn elf(entry: u64, segs: &[Seg]) -> Vec<u8> {
    let mut v = alloc::vec![0u8; 64 + 56 * segs.len()];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4] = 2; // ELFCLASS64
    v[5] = 1; // little-endian
    v[6] = 1; // EV_CURRENT
    put16(&mut v, 16, 2); // ET_EXEC
    put16(&mut v, 18, 183);
    put32(&mut v, 20, 1);
    put64(&mut v, 24, entry);
    put64(&mut v, 32, 64);
    put16(&mut v, 52, 64);
    put16(&mut v, 54, 56);
    put16(&mut v, 56, segs.len() as u16);
    for (i, s) in segs.iter().enumerate() {
        let offset = v.len().div_ceil(4096) as u64 * 4096 + s.vaddr % 4096;
        v.resize(offset as usize, 0);
        v.extend_from_slice(&s.data);
        let ph = phdr(i);
        put32(&mut v, ph + P_TYPE, PT_LOAD);
        put32(&mut v, ph + P_FLAGS, s.flags);
        put64(&mut v, ph + P_OFFSET, offset);
        put64(&mut v, ph + P_VADDR, s.vaddr);
        put64(&mut v, ph + 24, s.vaddr);
        put64(&mut v, ph + P_FILESZ, s.data.len() as u64);
        put64(&mut v, ph + P_MEMSZ, s.memsz);
        put64(&mut v, ph + P_ALIGN, 4096);
    }
    v
}

/// The file offset of program header `i` in an [`elf`] image.
pub(super) const fn phdr(i: usize) -> usize {
    64 + 56 * i
}

pub(super) fn put16(v: &mut [u8], off: usize, x: u16) {
    v[off..off + 2].copy_from_slice(&x.to_le_bytes());
}

pub(super) fn put32(v: &mut [u8], off: usize, x: u32) {
    v[off..off + 4].copy_from_slice(&x.to_le_bytes());
}

pub(super) fn put64(v: &mut [u8], off: usize, x: u64) {
    v[off..off + 8].copy_from_slice(&x.to_le_bytes());
}

pub(super) fn get64(v: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(v[off..off + 8].try_into().unwrap())
}

/// Text offset of [`kernel`]'s first segment in its 2 MiB.
pub(super) const TEXT: u64 = 0x8_0000;

/// A kernel shaped like a real one, linked at `base + TEXT` (`base` 2 MiB-aligned): text
/// (R+X, 5000 bytes, crossing a page), rodata sharing text's last page, a gap page, then
/// data with a BSS of several pages.
pub(super) fn kernel_segs(base: u64) -> Vec<Seg> {
    alloc::vec![
        Seg {
            vaddr: base + TEXT,
            data: pattern(5000, 1),
            memsz: 5000,
            flags: PF_R | PF_X,
        },
        Seg {
            vaddr: base + TEXT + 0x1400,
            data: pattern(3000, 2),
            memsz: 3000,
            flags: PF_R,
        },
        Seg {
            vaddr: base + TEXT + 0x3010,
            data: pattern(200, 3),
            memsz: 20000,
            flags: PF_R | PF_W,
        },
    ]
}

pub(super) fn kernel(base: u64) -> Vec<u8> {
    elf(base + TEXT + 0x40, &kernel_segs(base))
}

/// A one-segment kernel at `base` itself: 100 bytes of text and BSS to 6 KiB (2 pages).
pub(super) fn tiny(base: u64) -> Vec<u8> {
    elf(
        base,
        &[Seg {
            vaddr: base,
            data: pattern(100, 9),
            memsz: 0x1800,
            flags: PF_R | PF_X,
        }],
    )
}

pub(super) use crate::testutil::Rng;
/// `n` frames, none adjacent to another (every other frame of two distant pieces of RAM),
/// in a shuffled order: nothing may assume the frames are contiguous or ascending.
pub(super) fn scattered(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n)
        .map(|k| {
            let piece = if k % 2 == 0 {
                0x8000_0000
            } else {
                0x2_0000_0000
            };
            piece + (k / 2) * 2 * 4096
        })
        .collect();
    Rng(seed | 1).shuffle(&mut v);
    v
}

/// What a never-written frame reads as: frames the builder uses must not depend on the
/// caller having zeroed them.
pub(super) const GARBAGE: u8 = 0xA5;

/// Machine memory of the domain's frames only (any other access panics), each allocated when
/// first written, reading as [`GARBAGE`] until then. Serves the builder ([`PhysMem`]) and the
/// validator ([`GuestMemory`]).
#[derive(Default)]
pub(super) struct Machine {
    owned: BTreeSet<u64>,
    pages: BTreeMap<u64, Box<[u8; 4096]>>,
    pub flushes: usize,
}

impl Machine {
    pub fn new(frames: &[u64]) -> Self {
        Self {
            owned: frames.iter().copied().collect(),
            ..Self::default()
        }
    }

    fn frame(pa: u64) -> (u64, usize) {
        (pa & !0xfff, (pa & 0xfff) as usize)
    }

    fn page_mut(&mut self, pa: u64, len: usize) -> &mut [u8] {
        let (frame, off) = Self::frame(pa);
        assert!(
            off + len <= 4096,
            "an access at {pa:#x} of {len} crosses a frame"
        );
        assert!(self.owned.contains(&frame), "{pa:#x} is not the domain's");
        let p = self
            .pages
            .entry(frame)
            .or_insert_with(|| Box::new([GARBAGE; 4096]));
        &mut p[off..off + len]
    }

    /// Whether anything was ever written to the frame.
    pub fn touched(&self, frame: u64) -> bool {
        self.pages.contains_key(&frame)
    }

    pub fn nr_touched(&self) -> usize {
        self.pages.len()
    }

    pub fn bytes(&self, pa: u64, len: usize) -> Vec<u8> {
        let (frame, off) = Self::frame(pa);
        assert!(off + len <= 4096);
        match self.pages.get(&frame) {
            Some(p) => p[off..off + len].to_vec(),
            None => alloc::vec![GARBAGE; len],
        }
    }

    pub fn u64_at(&self, pa: u64) -> u64 {
        u64::from_le_bytes(self.bytes(pa, 8).try_into().unwrap())
    }
}

impl PhysMem for Machine {
    fn write(&mut self, pa: u64, bytes: &[u8]) {
        self.page_mut(pa, bytes.len()).copy_from_slice(bytes);
    }

    fn zero(&mut self, pa: u64, len: u64) {
        self.page_mut(pa, len as usize).fill(0);
    }
}

impl GuestMemory for Machine {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        assert_eq!(pa % 8, 0);
        Some(self.u64_at(pa))
    }

    fn write_u64(&mut self, pa: u64, v: u64) -> bool {
        assert_eq!(pa % 8, 0);
        self.page_mut(pa, 8).copy_from_slice(&v.to_le_bytes());
        true
    }

    fn flush_tlbs(&mut self) {
        self.flushes += 1;
    }
}
