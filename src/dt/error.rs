//! Why a device-tree blob was rejected as a whole.
//!
//! Only problems that make the blob unusable are errors; a node Ferrite cannot make sense of is
//! skipped and reported in [`MachineInfo::warnings`](super::MachineInfo::warnings) instead.

use core::fmt;

/// A fatal problem with a device-tree blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtError {
    /// Fewer bytes than a header.
    TooShort { len: usize },
    /// The first word is not the FDT magic.
    BadMagic(u32),
    /// A format version this parser does not read.
    BadVersion { version: u32, last_compatible: u32 },
    /// The header's `totalsize` is implausible (smaller than a header or above the cap).
    BadTotalSize(u32),
    /// The header claims more bytes than the caller has.
    Truncated { total_size: usize, available: usize },
    /// A header offset or size points outside the blob.
    BadLayout(&'static str),
    /// The structure block is malformed at `offset` (relative to the start of the blob).
    Malformed { offset: usize, what: &'static str },
    /// There is no node with `device_type = "memory"`.
    NoMemory,
    /// Memory nodes exist but none describes any RAM.
    EmptyMemory,
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "too short for a header: {len} bytes (need {})",
                    super::HEADER_SIZE
                )
            }
            Self::BadMagic(magic) => {
                write!(
                    f,
                    "bad magic {magic:#010x} (expected {:#010x})",
                    super::FDT_MAGIC
                )
            }
            Self::BadVersion {
                version,
                last_compatible,
            } => write!(
                f,
                "unsupported version {version} (last compatible {last_compatible}); need 17"
            ),
            Self::BadTotalSize(size) => write!(
                f,
                "implausible totalsize {size} (must be {}..={})",
                super::HEADER_SIZE,
                super::MAX_TOTAL_SIZE
            ),
            Self::Truncated {
                total_size,
                available,
            } => {
                write!(
                    f,
                    "truncated: header says {total_size} bytes, only {available} available"
                )
            }
            Self::BadLayout(what) => write!(f, "bad layout: {what}"),
            Self::Malformed { offset, what } => {
                write!(f, "malformed at offset {offset:#x}: {what}")
            }
            Self::NoMemory => write!(f, "no /memory node"),
            Self::EmptyMemory => write!(f, "/memory nodes describe no RAM"),
        }
    }
}

impl core::error::Error for DtError {}
