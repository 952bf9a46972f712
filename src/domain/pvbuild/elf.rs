//! The PV domU kernel image: an ELF64 little-endian aarch64 executable, checked field by
//! field before the builder trusts any of it.
//!
//! The image comes from a domain configuration, not from Ferrite's own build, so every
//! offset, size and address is read with bounds and overflow checks and every refusal is an
//! [`ElfError`] naming what is wrong; no input makes the parser panic. Only program headers
//! matter (a loader never needs sections): the `PT_LOAD` segments are placed at their
//! virtual addresses as linked, without relocation, so a position-independent (`ET_DYN`)
//! kernel runs at its link addresses and must relocate itself if it wants to move.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// `e_machine` of aarch64.
pub const EM_AARCH64: u16 = 183;
/// The most the loadable segments may span, lowest address to highest end: a kernel is a few
/// tens of MiB, and the bound keeps every later page computation small.
pub const MAX_SPAN: u64 = 1 << 30;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
/// `e_phnum` saying the real count is in section 0 (more than 65534 headers): never a kernel.
const PN_XNUM: u16 = 0xffff;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// A segment's `p_flags`, as the builder uses them: only `exec` changes the mapping (PXN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

/// One loadable segment (a `PT_LOAD` with a non-zero `p_memsz`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its program header's index, as `readelf -l` numbers them (for messages).
    pub index: usize,
    pub vaddr: u64,
    /// The bytes of the file it loads: `p_offset..p_offset + p_filesz`, inside the file.
    pub file: Range<usize>,
    /// Bytes it occupies in memory, `file.len()` of them from the file and the rest zero.
    pub memsz: u64,
    pub perms: Perms,
}

impl Segment {
    /// The first virtual address after it (no overflow: checked by [`parse`]).
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }
}

/// A parsed, fully checked image. Only [`parse`] makes one, so everything built on it (the
/// plan, the copy) can rely on its invariants: at least one segment, sorted by address, not
/// overlapping, inside the file, spanning at most [`MAX_SPAN`], the entry in an executable
/// segment's file bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage<'a> {
    data: &'a [u8],
    entry: u64,
    segments: Vec<Segment>,
}

impl<'a> ElfImage<'a> {
    /// The entry point (virtual address).
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// The loadable segments in ascending address order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The bytes segment `s` loads from the file.
    pub fn file_bytes(&self, s: &Segment) -> &'a [u8] {
        self.data.get(s.file.clone()).unwrap_or(&[])
    }

    /// The lowest address of any segment.
    pub fn lowest_vaddr(&self) -> u64 {
        self.segments[0].vaddr
    }

    /// The end of the highest segment.
    pub fn end_vaddr(&self) -> u64 {
        self.segments[self.segments.len() - 1].end()
    }
}

/// Why an image was refused. The messages read well after "domU image: ".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header.
    TooShort {
        len: usize,
    },
    NotElf,
    /// `EI_CLASS` is not ELFCLASS64.
    NotElf64 {
        class: u8,
    },
    /// `EI_DATA` is not little-endian.
    NotLittleEndian {
        data: u8,
    },
    /// `EI_VERSION` or `e_version` is not 1.
    BadVersion,
    NotAarch64 {
        machine: u16,
    },
    /// Neither `ET_EXEC` nor `ET_DYN`.
    NotExecutable {
        e_type: u16,
    },
    BadPhentsize {
        size: u16,
    },
    TooManyPhdrs,
    /// `e_phoff` is not 8-byte aligned.
    PhdrsMisaligned {
        offset: u64,
    },
    PhdrsPastEnd {
        offset: u64,
        count: u16,
    },
    NoLoadSegment,
    FileszExceedsMemsz {
        seg: usize,
        filesz: u64,
        memsz: u64,
    },
    SegmentPastEnd {
        seg: usize,
    },
    /// `p_vaddr + p_memsz` overflows.
    SegmentWraps {
        seg: usize,
    },
    /// `p_align` is not 0 or a power of two.
    BadAlign {
        seg: usize,
        align: u64,
    },
    /// `p_vaddr` and `p_offset` differ modulo `p_align`.
    Incongruent {
        seg: usize,
        align: u64,
    },
    Overlap {
        first: usize,
        second: usize,
    },
    TooLarge {
        span: u64,
    },
    EntryMisaligned {
        entry: u64,
    },
    EntryNotExecutable {
        entry: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort { len } => write!(
                f,
                "{len} bytes is too short for an ELF file (the header alone is {EHDR_SIZE})"
            ),
            Self::NotElf => write!(f, "not an ELF file (no \\x7fELF magic)"),
            Self::NotElf64 { class } => write!(f, "not a 64-bit ELF file (class {class})"),
            Self::NotLittleEndian { data } => {
                write!(f, "not a little-endian ELF file (data encoding {data})")
            }
            Self::BadVersion => write!(f, "unknown ELF version"),
            Self::NotAarch64 { machine } => {
                write!(
                    f,
                    "built for ELF machine {machine}, not aarch64 ({EM_AARCH64})"
                )
            }
            Self::NotExecutable { e_type } => write!(
                f,
                "ELF type {e_type} is not an executable (ET_EXEC) or a position-independent \
                 executable (ET_DYN)"
            ),
            Self::BadPhentsize { size } => write!(
                f,
                "program header entries of {size} bytes (an ELF64 one is {PHDR_SIZE})"
            ),
            Self::TooManyPhdrs => write!(f, "too many program headers"),
            Self::PhdrsMisaligned { offset } => {
                write!(
                    f,
                    "the program headers at offset {offset:#x} are not 8-byte aligned"
                )
            }
            Self::PhdrsPastEnd { offset, count } => write!(
                f,
                "the {count} program headers at offset {offset:#x} extend past the end of the file"
            ),
            Self::NoLoadSegment => write!(f, "no loadable (PT_LOAD) segment"),
            Self::FileszExceedsMemsz { seg, filesz, memsz } => write!(
                f,
                "segment {seg} has more file bytes ({filesz:#x}) than memory bytes ({memsz:#x})"
            ),
            Self::SegmentPastEnd { seg } => {
                write!(f, "segment {seg} extends past the end of the file")
            }
            Self::SegmentWraps { seg } => {
                write!(f, "segment {seg} wraps around the end of the address space")
            }
            Self::BadAlign { seg, align } => write!(
                f,
                "segment {seg}'s alignment {align:#x} is not a power of two"
            ),
            Self::Incongruent { seg, align } => write!(
                f,
                "segment {seg}'s address and file offset differ modulo its alignment {align:#x}"
            ),
            Self::Overlap { first, second } => {
                write!(f, "segments {first} and {second} overlap in memory")
            }
            Self::TooLarge { span } => write!(
                f,
                "the loadable segments span {} MiB; at most {} MiB are supported",
                span.div_ceil(1 << 20),
                MAX_SPAN >> 20
            ),
            Self::EntryMisaligned { entry } => {
                write!(f, "the entry point {entry:#x} is not 4-byte aligned")
            }
            Self::EntryNotExecutable { entry } => write!(
                f,
                "the entry point {entry:#x} is not in the file bytes of an executable segment"
            ),
        }
    }
}

/// Little-endian reads that cannot go out of bounds: `None` past the end.
fn read<const N: usize>(data: &[u8], off: usize) -> Option<[u8; N]> {
    data.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn u16_at(data: &[u8], off: usize) -> Option<u16> {
    read(data, off).map(u16::from_le_bytes)
}

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    read(data, off).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], off: usize) -> Option<u64> {
    read(data, off).map(u64::from_le_bytes)
}

/// Parses and checks `data` as a PV domU kernel.
pub fn parse(data: &[u8]) -> Result<ElfImage<'_>, ElfError> {
    // Every header read below is inside the first 64 bytes once this holds, so the `?`s on
    // `None` cannot fire; they are there so no index is unchecked.
    let short = ElfError::TooShort { len: data.len() };
    if data.len() < EHDR_SIZE {
        return Err(short);
    }
    let ident = read::<16>(data, 0).ok_or(short.clone())?;
    if ident[..4] != *b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if ident[4] != 2 {
        return Err(ElfError::NotElf64 { class: ident[4] });
    }
    if ident[5] != 1 {
        return Err(ElfError::NotLittleEndian { data: ident[5] });
    }
    let field16 = |off| u16_at(data, off).ok_or(short.clone());
    let e_type = field16(16)?;
    let machine = field16(18)?;
    let e_version = u32_at(data, 20).ok_or(short.clone())?;
    let entry = u64_at(data, 24).ok_or(short.clone())?;
    let phoff = u64_at(data, 32).ok_or(short.clone())?;
    let phentsize = field16(54)?;
    let phnum = field16(56)?;
    if ident[6] != 1 || e_version != 1 {
        return Err(ElfError::BadVersion);
    }
    if machine != EM_AARCH64 {
        return Err(ElfError::NotAarch64 { machine });
    }
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(ElfError::NotExecutable { e_type });
    }
    // Larger entries are allowed by the format (later fields appended); smaller cannot hold
    // the fields read below.
    if usize::from(phentsize) < PHDR_SIZE {
        return Err(ElfError::BadPhentsize { size: phentsize });
    }
    if phnum == PN_XNUM {
        return Err(ElfError::TooManyPhdrs);
    }
    if !phoff.is_multiple_of(8) {
        return Err(ElfError::PhdrsMisaligned { offset: phoff });
    }
    let past_end = ElfError::PhdrsPastEnd {
        offset: phoff,
        count: phnum,
    };
    let table_len = usize::from(phentsize) * usize::from(phnum);
    let phoff_us = usize::try_from(phoff).map_err(|_| past_end.clone())?;
    match phoff_us.checked_add(table_len) {
        Some(end) if end <= data.len() => {}
        _ => return Err(past_end),
    }

    let mut segments = Vec::new();
    for i in 0..usize::from(phnum) {
        let ph = phoff_us + i * usize::from(phentsize);
        let field = |off: usize| u64_at(data, ph + off).ok_or(past_end.clone());
        if u32_at(data, ph).ok_or(past_end.clone())? != PT_LOAD {
            continue;
        }
        let flags = u32_at(data, ph + 4).ok_or(past_end.clone())?;
        let (offset, vaddr, filesz, memsz, align) =
            (field(8)?, field(16)?, field(32)?, field(40)?, field(48)?);
        if filesz > memsz {
            return Err(ElfError::FileszExceedsMemsz {
                seg: i,
                filesz,
                memsz,
            });
        }
        let file = offset
            .checked_add(filesz)
            .filter(|&end| end <= data.len() as u64)
            .map(|end| offset as usize..end as usize)
            .ok_or(ElfError::SegmentPastEnd { seg: i })?;
        if vaddr.checked_add(memsz).is_none() {
            return Err(ElfError::SegmentWraps { seg: i });
        }
        if align != 0 && !align.is_power_of_two() {
            return Err(ElfError::BadAlign { seg: i, align });
        }
        // The ELF rule every linker keeps; an image breaking it was not made by one.
        if align > 1 && vaddr % align != offset % align {
            return Err(ElfError::Incongruent { seg: i, align });
        }
        // An empty segment loads nothing and must not count as the image's extent.
        if memsz == 0 {
            continue;
        }
        segments.push(Segment {
            index: i,
            vaddr,
            file,
            memsz,
            perms: Perms {
                read: flags & PF_R != 0,
                write: flags & PF_W != 0,
                exec: flags & PF_X != 0,
            },
        });
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadSegment);
    }
    segments.sort_by_key(|s| s.vaddr);
    for w in segments.windows(2) {
        if w[0].end() > w[1].vaddr {
            let (a, b) = (w[0].index, w[1].index);
            return Err(ElfError::Overlap {
                first: a.min(b),
                second: a.max(b),
            });
        }
    }
    let span = segments[segments.len() - 1].end() - segments[0].vaddr;
    if span > MAX_SPAN {
        return Err(ElfError::TooLarge { span });
    }
    if !entry.is_multiple_of(4) {
        return Err(ElfError::EntryMisaligned { entry });
    }
    // In the file bytes, not just the segment: an entry in BSS would run zeros.
    let runs = segments
        .iter()
        .any(|s| s.perms.exec && entry >= s.vaddr && entry - s.vaddr < s.file.len() as u64);
    if !runs {
        return Err(ElfError::EntryNotExecutable { entry });
    }
    Ok(ElfImage {
        data,
        entry,
        segments,
    })
}
