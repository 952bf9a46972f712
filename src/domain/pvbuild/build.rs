//! Writing a planned PV domain into its frames: the image, the module, the frame list, the
//! start-info page and the initial page tables.

use super::elf::ElfImage;
use super::{BuildError, Plan, plan};
use crate::domain::DomId;
use crate::pv::Ttbr;
use alloc::vec::Vec;
use core::mem::{offset_of, size_of};
use ferrite_abi::desc::{self as d, ENTRIES, PAGE_SIZE, level_shift};
use ferrite_abi::start_info::{self, CMDLINE_LEN, StartInfo};

/// The domain's frames as the builder writes them, by machine address. The caller maps the
/// host-physical frames however it does; every call stays inside one 4 KiB frame (the
/// frames are not assumed contiguous), and only frames of the domain's frame list are
/// touched.
pub trait PhysMem {
    /// Copies `bytes` to machine address `pa`.
    fn write(&mut self, pa: u64, bytes: &[u8]);
    /// Zeroes `len` bytes from machine address `pa`.
    fn zero(&mut self, pa: u64, len: u64);
}

/// What the start-info page says besides the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartParams<'a> {
    pub domid: DomId,
    /// Must equal the plan's (checked).
    pub nr_vcpus: u32,
    /// The virtual counter's frequency (CNTFRQ_EL0).
    pub counter_hz: u64,
    /// At most `CMDLINE_LEN - 1` bytes.
    pub cmdline: &'a str,
    /// `start_info::flags` (PRIVILEGED, INITDOMAIN); MODULE is set or cleared by the builder
    /// according to whether there is a module.
    pub flags: u32,
    /// The console's event-channel port (unbound for dom0), 0 for none.
    pub console_evtchn: u32,
}

/// One initial page-table frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtFrame {
    pub pfn: u64,
    pub ma: u64,
    pub level: u8,
}

/// What the caller needs to start vCPU 0 and to pin the tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The level-0 table to pin (`PIN_L0_TABLE`) and load.
    pub root_ma: u64,
    /// The TTBR to load it into (TTBR1 when `virt_base` is in the upper half; TTBR0 with ASID
    /// 0 otherwise). The other TTBR is empty.
    pub ttbr: Ttbr,
    /// PC.
    pub entry: u64,
    /// SP_EL1: the top of the boot stack.
    pub stack_top: u64,
    /// x0: the VA of the start-info page.
    pub start_info_va: u64,
    /// The shared-info page, for Ferrite's writable hold (`acquire_writable`).
    pub shared_info_ma: u64,
    pub shared_info_va: u64,
    /// The console ring page (granted to dom0 as `GREF_CONSOLE`).
    pub console_ma: u64,
    /// Every initial table, the root first and then level by level down (as laid out): to pin
    /// bottom-up, walk it backwards.
    pub page_tables: Vec<PtFrame>,
}

/// Writes the domain `plan` describes into `frames` (`frames[pfn]` is the machine address
/// of pfn; `plan.nr_pages` of them) through `mem`.
///
/// Every argument is checked before anything is written, so an error leaves memory as it was.
/// Every frame below `plan.first_free_pfn` is zeroed before use, so the kernel's padding and
/// BSS and the unused parts of every page are zero whatever the frames held. The free frames
/// (`first_free_pfn..`) are not touched: the caller must give them zeroed, as it gives any
/// frame to a domain.
///
/// Duplicate frames are not detected here (that would need a sorted copy of the list);
/// `FrameTable::new` refuses them, and the pin would refuse the tables they alias.
pub fn build(
    plan: &Plan,
    image: &ElfImage<'_>,
    module: Option<&[u8]>,
    frames: &[u64],
    mem: &mut impl PhysMem,
    params: StartParams<'_>,
) -> Result<Built, BuildError> {
    let module_len = module.map(|m| m.len() as u64);
    if *plan != self::plan(image, plan.nr_pages, module_len, plan.nr_vcpus)? {
        return Err(BuildError::Mismatch(
            "the plan was made for another image or module",
        ));
    }
    if frames.len() as u64 != plan.nr_pages {
        return Err(BuildError::Mismatch(
            "the frame list's length is not nr_pages",
        ));
    }
    if params.nr_vcpus != plan.nr_vcpus {
        return Err(BuildError::Mismatch("the vCPU count is not the plan's"));
    }
    if params.cmdline.len() >= CMDLINE_LEN {
        return Err(BuildError::CmdlineTooLong {
            len: params.cmdline.len(),
        });
    }
    for (pfn, &ma) in frames.iter().enumerate() {
        if ma & !d::OA_MASK != 0 {
            return Err(BuildError::BadFrame {
                pfn: pfn as u64,
                ma,
            });
        }
    }

    let mut w = Writer { frames, mem };
    for pfn in 0..plan.first_free_pfn {
        w.mem.zero(frames[pfn as usize], PAGE_SIZE);
    }
    for s in image.segments() {
        // BSS (memsz beyond the file bytes) is already zero.
        w.write(s.vaddr - plan.virt_base, image.file_bytes(s));
    }
    if let Some(m) = module {
        w.write(plan.module.start * PAGE_SIZE, m);
    }
    for (k, chunk) in frames.chunks(ENTRIES).enumerate() {
        let mut page = [0u64; ENTRIES];
        page[..chunk.len()].copy_from_slice(chunk);
        let pfn = plan.frame_list.start + k as u64;
        w.write_words(pfn * PAGE_SIZE, &mut page[..chunk.len()]);
    }
    let si = start_info(plan, frames, params);
    w.write(plan.start_info_pfn * PAGE_SIZE, &encode(&si));
    let page_tables = write_tables(plan, image, &mut w);

    Ok(Built {
        root_ma: frames[plan.page_tables.start as usize],
        ttbr: plan.ttbr,
        entry: plan.entry,
        stack_top: plan.stack_top(),
        start_info_va: plan.va(plan.start_info_pfn),
        shared_info_ma: frames[plan.shared_info_pfn as usize],
        shared_info_va: plan.va(plan.shared_info_pfn),
        console_ma: frames[plan.console_pfn as usize],
        page_tables,
    })
}

/// Writes at pseudo-physical byte offsets, split at frame boundaries.
struct Writer<'a, M> {
    frames: &'a [u64],
    mem: &'a mut M,
}

impl<M: PhysMem> Writer<'_, M> {
    /// Writes `words` as little-endian u64s (converting them in place): a table or the frame
    /// list a word per store, where building it in bytes cost a store per byte.
    fn write_words(&mut self, off: u64, words: &mut [u64]) {
        for w in words.iter_mut() {
            *w = w.to_le();
        }
        // SAFETY: the bytes of initialised u64s, read as u8s (any value is valid, alignment
        // 1) for the slice's own length in bytes, while `words` is borrowed.
        let bytes = unsafe {
            core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), core::mem::size_of_val(words))
        };
        self.write(off, bytes);
    }

    fn write(&mut self, mut off: u64, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let in_page = off % PAGE_SIZE;
            let n = bytes.len().min((PAGE_SIZE - in_page) as usize);
            let pa = self.frames[(off / PAGE_SIZE) as usize] + in_page;
            self.mem.write(pa, &bytes[..n]);
            bytes = &bytes[n..];
            off += n as u64;
        }
    }
}

fn start_info(plan: &Plan, frames: &[u64], p: StartParams<'_>) -> StartInfo {
    let mut si = StartInfo::new();
    let mut flags = p.flags & !start_info::flags::MODULE;
    if plan.module_len.is_some() {
        flags |= start_info::flags::MODULE;
        si.mod_start = plan.va(plan.module.start);
        si.mod_len = plan.module_len.unwrap_or(0);
    }
    si.flags = flags;
    si.nr_pages = plan.nr_pages;
    si.frame_list = plan.va(plan.frame_list.start);
    si.shared_info_ma = frames[plan.shared_info_pfn as usize];
    si.shared_info = plan.va(plan.shared_info_pfn);
    si.console_ring = plan.va(plan.console_pfn);
    si.console_ring_ma = frames[plan.console_pfn as usize];
    si.console_evtchn = p.console_evtchn;
    si.virt_base = plan.virt_base;
    si.pt_base = plan.va(plan.page_tables.start);
    si.pt_base_ma = frames[plan.page_tables.start as usize];
    si.nr_pt_frames = plan.nr_pt_frames();
    si.pt_first_pfn = plan.page_tables.start;
    si.first_free_pfn = plan.first_free_pfn;
    si.domid = u32::from(p.domid);
    si.nr_vcpus = p.nr_vcpus;
    si.counter_hz = p.counter_hz;
    // Length checked by the caller, so nothing is truncated.
    si.set_cmd_line(p.cmdline);
    si
}

/// The start-info page's bytes, little-endian at the layout's offsets (written field by
/// field: no `unsafe` view of the struct as bytes).
fn encode(si: &StartInfo) -> [u8; size_of::<StartInfo>()] {
    // Naming every field (no `..`) makes a field added to StartInfo a compile error here
    // rather than a field the builder silently never writes.
    let StartInfo {
        magic,
        version,
        flags,
        nr_pages,
        frame_list,
        shared_info_ma,
        virt_base,
        pt_base,
        pt_base_ma,
        nr_pt_frames,
        pt_first_pfn,
        first_free_pfn,
        mod_start,
        mod_len,
        console_evtchn,
        domid,
        nr_vcpus,
        pad,
        counter_hz,
        cmd_line,
        shared_info,
        console_ring,
        console_ring_ma,
        restores,
    } = *si;
    let mut b = [0u8; size_of::<StartInfo>()];
    let mut put = |off: usize, bytes: &[u8]| b[off..off + bytes.len()].copy_from_slice(bytes);
    put(offset_of!(StartInfo, magic), &magic.to_le_bytes());
    put(offset_of!(StartInfo, version), &version.to_le_bytes());
    put(offset_of!(StartInfo, flags), &flags.to_le_bytes());
    put(offset_of!(StartInfo, nr_pages), &nr_pages.to_le_bytes());
    put(offset_of!(StartInfo, frame_list), &frame_list.to_le_bytes());
    put(
        offset_of!(StartInfo, shared_info_ma),
        &shared_info_ma.to_le_bytes(),
    );
    put(offset_of!(StartInfo, virt_base), &virt_base.to_le_bytes());
    put(offset_of!(StartInfo, pt_base), &pt_base.to_le_bytes());
    put(offset_of!(StartInfo, pt_base_ma), &pt_base_ma.to_le_bytes());
    put(
        offset_of!(StartInfo, nr_pt_frames),
        &nr_pt_frames.to_le_bytes(),
    );
    put(
        offset_of!(StartInfo, pt_first_pfn),
        &pt_first_pfn.to_le_bytes(),
    );
    put(
        offset_of!(StartInfo, first_free_pfn),
        &first_free_pfn.to_le_bytes(),
    );
    put(offset_of!(StartInfo, mod_start), &mod_start.to_le_bytes());
    put(offset_of!(StartInfo, mod_len), &mod_len.to_le_bytes());
    put(
        offset_of!(StartInfo, console_evtchn),
        &console_evtchn.to_le_bytes(),
    );
    put(offset_of!(StartInfo, domid), &domid.to_le_bytes());
    put(offset_of!(StartInfo, nr_vcpus), &nr_vcpus.to_le_bytes());
    put(offset_of!(StartInfo, pad), &pad.to_le_bytes());
    put(offset_of!(StartInfo, counter_hz), &counter_hz.to_le_bytes());
    put(offset_of!(StartInfo, cmd_line), &cmd_line);
    put(
        offset_of!(StartInfo, shared_info),
        &shared_info.to_le_bytes(),
    );
    put(
        offset_of!(StartInfo, console_ring),
        &console_ring.to_le_bytes(),
    );
    put(
        offset_of!(StartInfo, console_ring_ma),
        &console_ring_ma.to_le_bytes(),
    );
    put(offset_of!(StartInfo, restores), &restores.to_le_bytes());
    b
}

/// Writes every initial table and returns them root first. Table k of level n (in
/// `plan.page_tables` order) covers the k-th region of its size the mapping touches, counted
/// from the one holding `virt_base`; its entries point at the tables (or pages) of the next
/// level in the same way, so no table needs to be kept in memory while another is written.
fn write_tables<M: PhysMem>(
    plan: &Plan,
    image: &ElfImage<'_>,
    w: &mut Writer<'_, M>,
) -> Vec<PtFrame> {
    let counts = plan.tables_per_level;
    // The pfn of each level's first table.
    let mut first = [plan.page_tables.start; 4];
    for level in 1..4 {
        first[level] = first[level - 1] + counts[level - 1];
    }
    // Pages an executable segment touches, as pfn ranges (a page it shares with another
    // segment is executable too).
    let exec: Vec<(u64, u64)> = image
        .segments()
        .iter()
        .filter(|s| s.perms.exec)
        .map(|s| {
            let off = s.vaddr - plan.virt_base;
            (off / PAGE_SIZE, (off + s.memsz).div_ceil(PAGE_SIZE))
        })
        .collect();
    let vb = plan.virt_base;
    // The last page mapped (its end may be the end of the address space).
    let top = vb + (plan.nr_pages - 1) * PAGE_SIZE;

    let mut out = Vec::with_capacity(plan.nr_pt_frames() as usize);
    for level in 0..4u8 {
        let l = level as usize;
        let shift = level_shift(level);
        // A level-n table covers what one entry one level up maps (level 0: the half).
        let region_shift = shift + 9;
        for k in 0..counts[l] {
            let pfn = first[l] + k;
            let region = ((vb >> region_shift) + k) << region_shift;
            // The entries whose span (va..=va + size - 1) meets the mapping (vb..=top): one
            // run, since both are contiguous. The others stay invalid.
            let lo = (vb.saturating_sub(region) >> shift) as usize;
            let hi = ((top - region) >> shift).min(ENTRIES as u64 - 1) as usize;
            let mut page = [0u64; ENTRIES];
            if level < 3 {
                for (i, slot) in page.iter_mut().enumerate().take(hi + 1).skip(lo) {
                    let va = region + ((i as u64) << shift);
                    let child = (va >> shift) - (vb >> shift);
                    *slot = d::table(w.frames[(first[l + 1] + child) as usize]);
                }
            } else {
                // Pages lo..=hi of this table map the domain's pages t0.., in runs of the same
                // attributes (cut where the tables or an executable segment start or end), so
                // that each entry costs a load, two ORs and a store: a 512 MiB domain has
                // 131072 of them.
                let t0 = (region + ((lo as u64) << shift) - vb) / PAGE_SIZE;
                let t1 = t0 + (hi - lo + 1) as u64;
                let mut cuts: Vec<u64> = [plan.page_tables.start, plan.page_tables.end]
                    .into_iter()
                    .chain(exec.iter().flat_map(|&(a, b)| [a, b]))
                    .filter(|&c| c > t0 && c < t1)
                    .collect();
                cuts.push(t1);
                cuts.sort_unstable();
                let mut at = t0;
                for cut in cuts {
                    if cut == at {
                        continue;
                    }
                    let mut attrs = d::NORMAL | d::UXN;
                    if plan.page_tables.contains(&at) {
                        attrs |= d::AP_RO;
                    }
                    if !exec.iter().any(|&(a, b)| (a..b).contains(&at)) {
                        attrs |= d::PXN;
                    }
                    let i = lo + (at - t0) as usize;
                    let n = (cut - at) as usize;
                    let src = &w.frames[at as usize..cut as usize];
                    for (slot, &ma) in page[i..i + n].iter_mut().zip(src) {
                        *slot = d::page(ma, attrs);
                    }
                    at = cut;
                }
            }
            w.write_words(pfn * PAGE_SIZE, &mut page);
            out.push(PtFrame {
                pfn,
                ma: w.frames[pfn as usize],
                level,
            });
        }
    }
    out
}
