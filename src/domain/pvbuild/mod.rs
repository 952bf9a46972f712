//! The PV domU builder, portable half: where everything goes in a new PV domain's memory
//! ([`plan`]) and writing it there ([`build`]): the kernel's segments, the boot module, the
//! frame list, the start-info page, the initial page tables and the boot stack, as
//! docs/abi.md's "Start of day" promises the guest.
//!
//! The arch caller allocates the domain's frames, calls [`plan`] and [`build`], then makes the
//! domain's [`crate::pv::FrameTable`] and pins [`Built::root_ma`] with `PIN_L0_TABLE`, so the
//! initial tables are validated by exactly the code that validates the guest's own: the
//! builder needs no privilege the guest lacks, and a builder bug is a refused pin, not a hole.
//! Nothing here touches hardware; memory is reached through [`PhysMem`].
//!
//! Pseudo-physical layout (pfn = frame index in the domain's frame list, VA = `virt_base +
//! pfn * 4096`), in this order, each part starting on a page:
//!
//! | pfns | |
//! |---|---|
//! | `0..kernel.start` | below the lowest segment (its offset in its 2 MiB): zero |
//! | `kernel` | the segments, up to the end of the highest (BSS included) |
//! | `module` | the boot module, if any |
//! | `frame_list` | pfn → machine address, `nr_pages` u64s |
//! | `start_info_pfn` | the `StartInfo` page |
//! | `shared_info_pfn` | the shared-info page, zero |
//! | `console_pfn` | the console ring page (`ferrite_abi::console_ring`), zero |
//! | `page_tables` | level 0, then the level 1, 2 and 3 tables, each level in VA order |
//! | `stack` | 16 KiB boot stack; SP starts at its top |
//! | `first_free_pfn..` | free memory |

mod build;
pub mod elf;
#[cfg(test)]
mod tests;

pub use build::{Built, PhysMem, PtFrame, StartParams, build};
pub use elf::{ElfError, ElfImage, Perms, Segment, parse};

use crate::pv::Ttbr;
use core::fmt;
use core::ops::Range;
use ferrite_abi::desc::{PAGE_SIZE, level_shift};
use ferrite_abi::shared_info::MAX_VCPUS;

/// virt_base is the lowest segment's address rounded down to this: the 2 MiB-aligned region
/// the kernel image starts in, as for arm64 Linux.
pub const VIRT_BASE_ALIGN: u64 = 2 << 20;
/// The boot stack's size.
pub const STACK_PAGES: u64 = 4;
/// The most frames a domain can have: every frame of a 48-bit physical address space.
pub const MAX_PAGES: u64 = 1 << 36;
/// TTBR0 addresses are below this; TTBR1 addresses at or above [`TTBR1_BASE`].
pub const TTBR0_END: u64 = 1 << 48;
pub const TTBR1_BASE: u64 = 0xFFFF_0000_0000_0000;

/// Where everything goes: computed by [`plan`] from the image and the domain's size alone, so
/// the caller can check it (and report a domain too small) before allocating anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub nr_pages: u64,
    pub nr_vcpus: u32,
    /// VA of pfn 0.
    pub virt_base: u64,
    /// The TTBR whose half holds `virt_base` (and the whole initial mapping).
    pub ttbr: Ttbr,
    /// The kernel's entry point (VA).
    pub entry: u64,
    /// From the page of the lowest segment to the page after the end of the highest.
    pub kernel: Range<u64>,
    /// The boot module's pages (empty without one) and its length in bytes.
    pub module: Range<u64>,
    pub module_len: Option<u64>,
    pub frame_list: Range<u64>,
    pub start_info_pfn: u64,
    pub shared_info_pfn: u64,
    pub console_pfn: u64,
    /// All the initial tables: `tables_per_level[0]` (always 1) level-0 table first, then
    /// the level-1, level-2 and level-3 ones.
    pub page_tables: Range<u64>,
    pub tables_per_level: [u64; 4],
    pub stack: Range<u64>,
    pub first_free_pfn: u64,
}

impl Plan {
    /// The VA of `pfn` in the initial mapping.
    pub fn va(&self, pfn: u64) -> u64 {
        self.virt_base + pfn * PAGE_SIZE
    }

    /// The initial SP: the top of the boot stack (the first byte after it).
    pub fn stack_top(&self) -> u64 {
        self.va(self.stack.end)
    }

    pub fn nr_pt_frames(&self) -> u64 {
        self.page_tables.end - self.page_tables.start
    }
}

/// Why a domain could not be planned or built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// `nr_pages` is 0 or above [`MAX_PAGES`].
    BadPageCount { nr_pages: u64 },
    /// vCPUs must be 1..=[`MAX_VCPUS`] (the shared-info page has that many slots).
    BadVcpuCount { nr_vcpus: u32 },
    /// Neither a TTBR0 nor a TTBR1 address.
    BadVirtBase { virt_base: u64 },
    /// `nr_pages` pages from `virt_base` run out of its TTBR's half of the address space (for
    /// TTBR1: reach its very last page, whose end is not an address).
    MappingTooLarge { virt_base: u64, nr_pages: u64 },
    /// The layout needs `needed` pages; the domain has `nr_pages`.
    TooSmall { needed: u64, nr_pages: u64 },
    /// The command line does not fit in `StartInfo::cmd_line` with its NUL.
    CmdlineTooLong { len: usize },
    /// A frame that is not a page-aligned machine address below 2^48.
    BadFrame { pfn: u64, ma: u64 },
    /// [`build`]'s arguments do not match its plan (what differs).
    Mismatch(&'static str),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadPageCount { nr_pages } => write!(
                f,
                "{nr_pages} pages of memory: a domain needs at least 1 and at most {MAX_PAGES}"
            ),
            Self::BadVcpuCount { nr_vcpus } => {
                write!(f, "{nr_vcpus} vCPUs: a PV domain has 1 to {MAX_VCPUS}")
            }
            Self::BadVirtBase { virt_base } => write!(
                f,
                "the kernel's base address {virt_base:#x} is in neither half of the 48-bit \
                 address space (below {TTBR0_END:#x}, or from {TTBR1_BASE:#x})"
            ),
            Self::MappingTooLarge {
                virt_base,
                nr_pages,
            } => write!(
                f,
                "{} MiB of memory mapped from {virt_base:#x} runs past the end of its half of \
                 the address space",
                nr_pages >> 8
            ),
            Self::TooSmall { needed, nr_pages } => write!(
                f,
                "the kernel, boot module, frame list, start-info, shared-info and console pages, page \
                 tables and boot stack need {needed} pages ({} KiB), but the domain has {nr_pages}",
                needed.saturating_mul(4)
            ),
            Self::CmdlineTooLong { len } => write!(
                f,
                "the command line is {len} bytes; at most {} fit",
                ferrite_abi::start_info::CMDLINE_LEN - 1
            ),
            Self::BadFrame { pfn, ma } => write!(
                f,
                "frame {pfn} at {ma:#x} is not a page-aligned machine address below 2^48"
            ),
            Self::Mismatch(what) => write!(f, "the build does not match its plan: {what}"),
        }
    }
}

/// The page tables mapping `nr_pages` pages from `virt_base` (2 MiB-aligned) with 4 KiB
/// pages, per level 0..=3: one table of level n per distinct region a level-n table covers
/// (level 0: the half, 1: 512 GiB, 2: 1 GiB, 3: 2 MiB) among those the mapping touches.
pub fn tables_per_level(virt_base: u64, nr_pages: u64) -> [u64; 4] {
    let last = virt_base + (nr_pages - 1) * PAGE_SIZE;
    let mut n = [1; 4];
    for (level, count) in n.iter_mut().enumerate().skip(1) {
        // A level-n table covers what one entry of level n - 1 maps.
        let shift = level_shift(level as u8 - 1);
        *count = (last >> shift) - (virt_base >> shift) + 1;
    }
    n
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE)
}

/// Lays out a domain of `nr_pages` frames for `image` and a boot module of `module_len`
/// bytes (None: no module).
pub fn plan(
    image: &ElfImage<'_>,
    nr_pages: u64,
    module_len: Option<u64>,
    nr_vcpus: u32,
) -> Result<Plan, BuildError> {
    if nr_pages == 0 || nr_pages > MAX_PAGES {
        return Err(BuildError::BadPageCount { nr_pages });
    }
    if nr_vcpus == 0 || nr_vcpus as usize > MAX_VCPUS {
        return Err(BuildError::BadVcpuCount { nr_vcpus });
    }
    let virt_base = image.lowest_vaddr() / VIRT_BASE_ALIGN * VIRT_BASE_ALIGN;
    let ttbr = if virt_base < TTBR0_END {
        Ttbr::Ttbr0
    } else if virt_base >= TTBR1_BASE {
        Ttbr::Ttbr1
    } else {
        return Err(BuildError::BadVirtBase { virt_base });
    };
    // The mapping must stay in its half. For TTBR1 its end must also be an address (not
    // 2^64), so every VA handed to the guest, the stack top included, is one: this costs the
    // top page of the address space, which no kernel needs.
    let end = virt_base.checked_add(nr_pages * PAGE_SIZE);
    if end.is_none_or(|e| ttbr == Ttbr::Ttbr0 && e > TTBR0_END) {
        return Err(BuildError::MappingTooLarge {
            virt_base,
            nr_pages,
        });
    }

    // Each part is at most a few times 2^36 pages (module_len aside, which saturates), so
    // the running pfn cannot overflow before `TooSmall` catches it.
    let kernel =
        (image.lowest_vaddr() - virt_base) / PAGE_SIZE..pages(image.end_vaddr() - virt_base);
    let mut next = kernel.end;
    let mut take = |n: u64| {
        let r = next..next.saturating_add(n);
        next = r.end;
        r
    };
    let module = take(module_len.map_or(0, pages));
    let frame_list = take(pages(nr_pages * 8));
    let start_info_pfn = take(1).start;
    let shared_info_pfn = take(1).start;
    let console_pfn = take(1).start;
    let tables = tables_per_level(virt_base, nr_pages);
    let page_tables = take(tables.iter().sum());
    let stack = take(STACK_PAGES);
    let first_free_pfn = next;
    if first_free_pfn > nr_pages {
        return Err(BuildError::TooSmall {
            needed: first_free_pfn,
            nr_pages,
        });
    }
    Ok(Plan {
        nr_pages,
        nr_vcpus,
        virt_base,
        ttbr,
        entry: image.entry(),
        kernel,
        module,
        module_len,
        frame_list,
        start_info_pfn,
        shared_info_pfn,
        console_pfn,
        page_tables,
        tables_per_level: tables,
        stack,
        first_free_pfn,
    })
}
