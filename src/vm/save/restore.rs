//! Restoring a saved PV domU on fresh frames (`DOMCTL RESTORE_BEGIN`, `RESTORE_PAGE`,
//! `RESTORE_VCPU`, `RESTORE_END`): the pages mapped to the new frames, the tables validated
//! exactly as a new domain's, the vCPUs loaded, the start info rewritten. `RESTORE_END` works in
//! slices (the call rewound and continued), so a large domain does not hold dom0's pCPU.

use super::{R, TTBR_BADDR, inval, region, rewrite_table};
use crate::arch::context::{Context, El2};
use crate::arch::exceptions::TrapFrame;
use crate::arch::{cpu, timer, vcpu};
use crate::domain::DomId;
use crate::domain::config::DomuSpec;
use crate::domain::power::PowerTable;
use crate::mm::region::Region;
use crate::pv::{FrameTable, FrameType, Policy};
use crate::vm::domctl::{read_config, read_pod, say};
use crate::vm::lifecycle::{self, Image, Life, Origin};
use crate::vm::{Vcpu, Vm, build_pv, domu, timers};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use ferrite_abi::ctl::{CreateArgs, SaveHeader, VcpuState, page_type};
use ferrite_abi::mmu::{MmuextOp, ext};
use ferrite_abi::{StartInfo, errno};
use spin::Mutex;

/// Domains being restored: what `RESTORE_END` needs.
struct Restoring {
    header: SaveHeader,
    /// Table pages written so far: (pfn, page type).
    tables: Vec<(u64, u64)>,
    vcpus: Vec<Option<VcpuState>>,
    /// A bit per frame `RESTORE_PAGE` wrote; `RESTORE_END` zeroes the others (the save skips
    /// zero pages), in slices, instead of `RESTORE_BEGIN` zeroing them all at once.
    written: Vec<u64>,
    /// `RESTORE_END`'s progress: the first frame it has not zeroed or found written yet.
    zeroed: u64,
    /// `RESTORE_END`'s progress: how many of the tables below level 0 (sorted bottom level
    /// first on its first call) it has validated and holds.
    held: Option<usize>,
}

static RESTORING: Mutex<BTreeMap<DomId, Restoring>> = Mutex::new(BTreeMap::new());

/// Whether `id` is still being restored (it may not be unpaused yet).
pub fn restoring(id: DomId) -> bool {
    RESTORING.lock().contains_key(&id)
}

/// `RESTORE_BEGIN`: a new paused domain with fresh frames for the pages to come.
pub(super) fn restore_begin(dom0: &'static Vm, args: u64) -> i64 {
    let Some(a) = read_pod::<CreateArgs>(dom0, args) else {
        return errno::EFAULT;
    };
    match begin_inner(dom0, &a) {
        Ok(id) => id as i64,
        Err((code, msg)) => {
            say(dom0, "restore", &a, &msg);
            code
        }
    }
}

fn begin_inner(dom0: &'static Vm, a: &CreateArgs) -> R<DomId> {
    if a.image_len != size_of::<SaveHeader>() as u64 {
        return inval(String::from("the image is not a save header"));
    }
    let Some(h) = read_pod::<SaveHeader>(dom0, a.image) else {
        return Err((errno::EFAULT, String::new()));
    };
    if let Some(why) = h.format_error() {
        return inval(String::from(why));
    }
    let mut spec = if a.config_len != 0 {
        read_config(dom0, a)?
    } else {
        DomuSpec::default()
    };
    let saved_name = core::str::from_utf8(&h.name)
        .unwrap_or("")
        .trim_end_matches('\0');
    if spec.name.is_none() && !saved_name.is_empty() {
        spec.name = Some(String::from(saved_name));
    }
    let nr_vcpus = h.nr_vcpus as usize;
    if h.nr_pages < 16
        || h.nr_pages > (4 << 30) / 4096
        || nr_vcpus == 0
        || nr_vcpus > ferrite_abi::shared_info::MAX_VCPUS
        || h.max_pages < h.nr_pages
        || [h.shared_info_pfn, h.start_info_pfn]
            .iter()
            .any(|&p| p >= h.nr_pages)
        || (h.console_pfn != u64::MAX && h.console_pfn >= h.nr_pages)
        || !h.disk_offset.is_multiple_of(512)
        || !h.disk_size.is_multiple_of(512)
        || h.disk_offset.checked_add(h.disk_size).is_none()
    {
        return inval(String::from("the save header is inconsistent"));
    }
    spec.mem = h.nr_pages * 4096;
    spec.maxmem = Some(h.max_pages * 4096);
    spec.vcpus = nr_vcpus;
    if a.config_len == 0 {
        spec.weight = h.weight.clamp(1, 65535);
        spec.cap = h.cap;
    }
    let id = crate::vm::free_domid().ok_or((errno::ENOSPC, String::from("no free domain id")))?;
    let name = spec.name.clone().unwrap_or_else(|| format!("domU{id}"));
    let base = crate::boot::alloc_frames_aligned(h.nr_pages as usize, 2 << 20).ok_or((
        errno::ENOMEM,
        format!("{name}: no {} MiB of free memory for it", spec.mem >> 20),
    ))?;
    // Not zeroed here: RESTORE_END zeroes what RESTORE_PAGE did not write, in slices. Until
    // then the frames hold their last owner's data, which nothing can read: the domain does
    // not run before RESTORE_END, and dom0 cannot save or map a domain being restored.
    let mut frames: Vec<u64> = Vec::new();
    let mut written: Vec<u64> = Vec::new();
    if frames.try_reserve_exact(h.nr_pages as usize).is_err()
        || written
            .try_reserve_exact(h.nr_pages.div_ceil(64) as usize)
            .is_err()
    {
        crate::boot::free_frames(base, h.nr_pages as usize);
        return Err((errno::ENOMEM, build_pv::no_records(&name, h.nr_pages)));
    }
    frames.extend((0..h.nr_pages).map(|i| base + i * 4096));
    written.resize(h.nr_pages.div_ceil(64) as usize, 0);
    let fail = |e: String| {
        crate::boot::free_frames(base, h.nr_pages as usize);
        crate::vm::devbus::remove_domain(id);
        let code = if e.contains("free memory") {
            errno::ENOMEM
        } else {
            errno::EINVAL
        };
        (code, e)
    };
    // The disk it was saved with, unless the restore's configuration names another: claimed
    // as when it was created, so it cannot overlap a live domain's (the original's, after a
    // `save -c`).
    if spec.disk.is_none() && h.disk_size != 0 {
        spec.disk = Some((h.disk_offset, h.disk_size));
    }
    crate::vm::devbus::claim_disk(id, spec.disk).map_err(|e| fail(format!("{name}: {e}")))?;
    let ft = FrameTable::with_grants(
        id,
        &frames,
        nr_vcpus,
        Policy::default(),
        crate::vm::grant::PvGrants,
    )
    .map_err(|e| {
        fail(match e {
            crate::pv::Errno::NoMem => build_pv::no_records(&name, h.nr_pages),
            e => format!("{name}: frame table: {}", e.name()),
        })
    })?;
    // The guest's virtual counter goes on from where it was saved.
    let cntvoff = timer::counter().wrapping_sub(h.virtual_count);
    let vcpus = (0..nr_vcpus)
        .map(|i| {
            let el2 = El2 {
                hcr: vcpu::hcr_pv(),
                vttbr: ((id + 1) as u64) << 48,
                vmpidr: (1 << 31) | i as u64,
                cntvoff,
            };
            Vcpu::new(Context::reset(0, 0, el2))
        })
        .collect();
    let cpus = crate::vm::sched::with(|s| s.config().pcpus).unwrap_or(1);
    let all = if cpus >= 64 {
        u64::MAX
    } else {
        (1 << cpus) - 1
    };
    let affinity = spec.cpus.unwrap_or(all) & all;
    let origin = Origin {
        spec: spec.clone(),
        image: Image::None,
    };
    build_pv::assemble(
        build_pv::Parts {
            id,
            name: name.clone(),
            ft,
            shared_info: base + h.shared_info_pfn * 4096,
            start_info_pfn: h.start_info_pfn,
            max_pages: h.max_pages,
            vcpu: vcpus,
            cntvoff,
            gic_v3: dom0.gic_v3,
            memory: Region::new(base, spec.mem),
            life: Life::new(Some(origin), true),
            power: PowerTable::new(nr_vcpus),
        },
        spec.weight,
        spec.cap,
        if affinity == 0 { all } else { affinity },
    )
    .map_err(fail)?;
    RESTORING.lock().insert(
        id,
        Restoring {
            header: h,
            tables: Vec::new(),
            vcpus: alloc::vec![None; nr_vcpus],
            written,
            zeroed: 0,
            held: None,
        },
    );
    log::info!(
        "{name}: domain {id} is being restored ({} pages at {base:#x})",
        h.nr_pages
    );
    Ok(id)
}

pub(super) fn restore_page(dom0: &Vm, vm: &'static Vm, pfn: u64, va: u64, ty: u64) -> R<i64> {
    let mut r = RESTORING.lock();
    let Some(st) = r.get_mut(&vm.id) else {
        return inval(format!("{} is not being restored", vm.name));
    };
    let (base, pages) = region(vm);
    if pfn >= pages {
        return inval(format!("{}: frame {pfn} is past its {pages}", vm.name));
    }
    let level = ty & !page_type::PINNED;
    if level > page_type::TABLE_L3 || (ty & page_type::PINNED != 0 && level == 0) {
        return inval(format!("{}: frame {pfn}: bad page type {ty:#x}", vm.name));
    }
    let mut page = [0u64; 512];
    // SAFETY: `page` is 4096 bytes of integers; any content is valid.
    let bytes = unsafe { core::slice::from_raw_parts_mut(page.as_mut_ptr().cast::<u8>(), 4096) };
    if !crate::arch::guest_mem::read(va, bytes, &dom0.memory) {
        return Err((errno::EFAULT, String::new()));
    }
    if level != page_type::DATA {
        let size = pages * 4096;
        if !rewrite_table(&mut page, |oa| (oa < size).then(|| base + oa)) {
            return inval(format!(
                "{}: frame {pfn}: a table entry points outside the domain",
                vm.name
            ));
        }
        st.tables.retain(|&(p, _)| p != pfn);
        st.tables.push((pfn, ty));
    } else {
        st.tables.retain(|&(p, _)| p != pfn);
    }
    // SAFETY: one of the domain's own frames, not yet typed (nothing is validated before
    // RESTORE_END) and its vCPUs have never run; RAM in Ferrite's identity map.
    unsafe { core::ptr::copy_nonoverlapping(page.as_ptr(), (base + pfn * 4096) as *mut u64, 512) };
    st.written[(pfn / 64) as usize] |= 1 << (pfn % 64);
    Ok(0)
}

pub(super) fn restore_vcpu(dom0: &Vm, vm: &'static Vm, v: u64, va: u64) -> R<i64> {
    let Some(s) = read_pod::<VcpuState>(dom0, va) else {
        return Err((errno::EFAULT, String::new()));
    };
    let mut r = RESTORING.lock();
    let Some(st) = r.get_mut(&vm.id) else {
        return inval(format!("{} is not being restored", vm.name));
    };
    match st.vcpus.get_mut(v as usize) {
        Some(slot) => *slot = Some(s),
        None => return Err((errno::ENOENT, String::new())),
    }
    Ok(0)
}

/// `RESTORE_END`. Its tables are validated bottom-up, one table's 512 entries at a time and
/// held (`FrameTable::hold_table`), in slices of `build_pv::SLICE_US`: between slices the call
/// is rewound and continued when dom0's vCPU runs it again, as `CREATE` is. Then the roots are
/// pinned, which costs a count per entry, and the holds are dropped.
pub(super) fn restore_end(vm: &'static Vm, frame: &mut TrapFrame) -> R<i64> {
    let Some(mut st) = RESTORING.lock().remove(&vm.id) else {
        return inval(format!("{} is not being restored", vm.name));
    };
    let deadline = timer::counter() + build_pv::SLICE_US * timer::frequency() / 1_000_000;
    let done = zero_unwritten(vm, &mut st, deadline) && {
        match hold_tables(vm, &mut st, deadline) {
            Ok(done) => done,
            Err(why) => {
                let _ = lifecycle::destroy(vm);
                return inval(why);
            }
        }
    };
    if !done {
        RESTORING.lock().insert(vm.id, st);
        frame.elr -= 4;
        return Ok(crate::vm::domctl::CONTINUE);
    }
    match finish(vm, &st) {
        Ok(()) => {
            crate::println!("ferrite: domain {} ({}) restored, paused", vm.id, vm.name);
            Ok(0)
        }
        Err(why) => {
            // Whatever it built is released with the domain.
            let _ = lifecycle::destroy(vm);
            inval(why)
        }
    }
}

/// Zeroes the frames `RESTORE_PAGE` did not write, from where the last slice stopped, until
/// `deadline` (a counter value): true when all are.
fn zero_unwritten(vm: &'static Vm, st: &mut Restoring, deadline: u64) -> bool {
    /// Frames zeroed between looks at the clock (2 MiB): about 75 us.
    const CHUNK: u64 = 512;
    let (base, pages) = region(vm);
    let written = |pfn: u64| st.written[(pfn / 64) as usize] >> (pfn % 64) & 1 != 0;
    while st.zeroed < pages {
        let first = st.zeroed;
        if written(first) {
            st.zeroed += 1;
            continue;
        }
        let mut end = first + 1;
        while end < pages && end - first < CHUNK && !written(end) {
            end += 1;
        }
        // SAFETY: frames of the domain being restored, not yet typed and never run (its
        // vCPUs start after RESTORE_END); RAM in Ferrite's identity map.
        unsafe { cpu::zero_ram(base + first * 4096, (end - first) * 4096) };
        st.zeroed = end;
        if timer::counter() >= deadline {
            return st.zeroed >= pages;
        }
    }
    true
}

/// The tables below level 0 that are not held yet, bottom level first, until `deadline` (a
/// counter value): true when all are.
fn hold_tables(vm: &'static Vm, st: &mut Restoring, deadline: u64) -> Result<bool, String> {
    let pv = vm.pv().expect("restored domains are PV");
    let (base, _) = region(vm);
    let held = match st.held {
        Some(n) => n,
        None => {
            // Level 3 first: each table's entries then point at tables already validated.
            st.tables.sort_unstable_by_key(|&(pfn, ty)| {
                (core::cmp::Reverse(ty & !page_type::PINNED), pfn)
            });
            0
        }
    };
    let below_root = |&(_, ty): &(u64, u64)| ty & !page_type::PINNED > page_type::TABLE_L0;
    let mut ft = pv.frames.lock();
    for (k, &(pfn, ty)) in st.tables.iter().enumerate().skip(held) {
        if !below_root(&(pfn, ty)) {
            continue;
        }
        let level = ((ty & !page_type::PINNED) - page_type::TABLE_L0) as u8;
        ft.hold_table(base + pfn * 4096, level, &mut domu::Phys)
            .map_err(|e| {
                format!(
                    "{}: frame {pfn}: its page table is refused ({})",
                    vm.name,
                    e.name()
                )
            })?;
        st.held = Some(k + 1);
        if timer::counter() >= deadline {
            return Ok(st.tables[k + 1..].iter().all(|t| !below_root(t)));
        }
    }
    st.held = Some(st.tables.len());
    Ok(true)
}

/// Validates and pins the tables, loads the vCPUs, rewrites the start info: the domain is
/// ready to be unpaused.
fn finish(vm: &'static Vm, st: &Restoring) -> Result<(), String> {
    let pv = vm.pv().expect("restored domains are PV");
    let h = &st.header;
    let (base, pages) = region(vm);
    let name = &vm.name;
    let ma = |pfn: u64| base + pfn * 4096;
    let mut ft = pv.frames.lock();
    // Roots first as a guest would. The tables below them are validated and held already, so
    // each pin costs a count per entry; then the holds go, and the trees hold what they link.
    for &(pfn, ty) in st.tables.iter().filter(|(_, t)| t & page_type::PINNED != 0) {
        let level = (ty & !page_type::PINNED) - page_type::TABLE_L0;
        let op = MmuextOp {
            cmd: ext::PIN_L0_TABLE + level as u32,
            pad: 0,
            arg1: ma(pfn),
            arg2: 0,
        };
        let (_, r) =
            crate::pv::mmuext_op(vm.id, &mut ft, &mut domu::Phys, 0, &[op], 1, &mut |_| {});
        r.map_err(|e| {
            format!(
                "{name}: frame {pfn}: its page table is refused ({})",
                e.name()
            )
        })?;
    }
    for &(pfn, ty) in st.tables.iter() {
        if ty & !page_type::PINNED > page_type::TABLE_L0 {
            ft.release_table_hold(ma(pfn), &mut domu::Phys)
                .map_err(|e| format!("{name}: frame {pfn}: its table's hold: {}", e.name()))?;
        }
    }
    ft.acquire_writable(ma(h.shared_info_pfn), &mut domu::Phys)
        .map_err(|e| format!("{name}: shared-info page: {}", e.name()))?;
    for (v, s) in st.vcpus.iter().enumerate() {
        let Some(s) = s else {
            return Err(format!("{name}: vcpu{v} was not given"));
        };
        if s.up == 0 {
            continue;
        }
        for (which, t, epd) in [
            (ext::NEW_TTBR0, s.ttbr0, domu::TCR_EPD0),
            (ext::NEW_TTBR1, s.ttbr1, domu::TCR_EPD1),
        ] {
            // A half without walks (TCR_EL1.EPDn) has no table.
            if s.tcr & epd != 0 {
                continue;
            }
            let b = t & TTBR_BADDR;
            if b >= pages * 4096 {
                return Err(format!("{name}: vcpu{v}: its TTBR is outside the domain"));
            }
            let asid = if which == ext::NEW_TTBR0 { t >> 48 } else { 0 };
            let op = MmuextOp {
                cmd: which,
                pad: 0,
                arg1: base + b,
                arg2: asid,
            };
            let (_, r) =
                crate::pv::mmuext_op(vm.id, &mut ft, &mut domu::Phys, v, &[op], 1, &mut |_| {});
            r.map_err(|e| {
                format!(
                    "{name}: vcpu{v}: its translation base is refused ({})",
                    e.name()
                )
            })?;
        }
        // The MMU stays on and little-endian, as for a running guest's own writes.
        if s.sctlr & 1 == 0 || s.sctlr & (3 << 24) != 0 {
            return Err(format!("{name}: vcpu{v}: its SCTLR_EL1 turns the MMU off"));
        }
    }
    drop(ft);

    // Event channels: the console's again, where the guest expects it if it can be.
    let port = crate::vm::events::new_domu(vm.id, vm.vcpus)
        .map_err(|e| format!("{name}: console event channel: {}", e.name()))?;
    if h.console_pfn != u64::MAX {
        crate::vm::grant::set_console_page(vm.id, ma(h.console_pfn));
    }
    // The start info and the frame list tell the guest its machine addresses: new ones now.
    let si_ma = ma(h.start_info_pfn);
    if let Some(i) = pv.frames.lock().info(si_ma)
        && i.ty != FrameType::None
        && i.ty != FrameType::Writable
    {
        return Err(format!("{name}: its start-info page is a page table"));
    }
    // SAFETY: the start-info page is one of the domain's frames and not a page table (checked
    // just above); identity-mapped RAM, and the domain does not run yet.
    let si = unsafe { &mut *(si_ma as *mut StartInfo) };
    if si.magic != ferrite_abi::start_info::MAGIC {
        return Err(format!("{name}: its start-info page is not one"));
    }
    let old_base = si.shared_info_ma.wrapping_sub(h.shared_info_pfn * 4096);
    let moved = |old: u64| {
        let off = old.wrapping_sub(old_base);
        if off < pages * 4096 { base + off } else { old }
    };
    si.shared_info_ma = moved(si.shared_info_ma);
    si.pt_base_ma = moved(si.pt_base_ma);
    si.console_ring_ma = moved(si.console_ring_ma);
    si.domid = vm.id as u32;
    si.console_evtchn = port;
    si.restores = si.restores.wrapping_add(1);
    let fl_pfn = si.frame_list.wrapping_sub(si.virt_base) / 4096;
    let fl_pages = (si.nr_pages * 8).div_ceil(4096);
    if fl_pfn + fl_pages > pages || si.nr_pages != pages {
        return Err(format!("{name}: its frame list is not in its memory"));
    }
    // SAFETY: the frame list lies in the domain's frames (checked just above): nr_pages u64s.
    let list = unsafe { core::slice::from_raw_parts_mut(ma(fl_pfn) as *mut u64, pages as usize) };
    for (i, e) in list.iter_mut().enumerate() {
        *e = base + i as u64 * 4096;
    }
    cpu::invalidate_icache();

    // The vCPUs. Registers Ferrite fixes for PV domains (MAIR, TCR but for its EPD bits) are
    // Ferrite's, not the file's.
    let mut power = vm.power.lock();
    for (v, s) in st.vcpus.iter().enumerate() {
        let s = s.as_ref().expect("checked above");
        let vc = &vm.vcpu[v];
        let mut ctx = vc.ctx.lock();
        let cntvoff = vm.cntvoff;
        ctx.frame.x = s.x;
        ctx.frame.elr = s.pc;
        // Only EL1h or EL0t, AArch64, as a guest can be.
        let mode = if s.pstate & 0xF == 0 { 0 } else { 0b0101 };
        ctx.frame.spsr = (s.pstate & !0x1F) | mode;
        let e = &mut ctx.el1;
        e.sp_el0 = s.sp_el0;
        e.sp_el1 = s.sp_el1;
        e.elr_el1 = s.elr_el1;
        e.spsr_el1 = s.spsr_el1;
        let used = |t: u64, epd: u64| {
            if s.tcr & epd != 0 {
                t & !TTBR_BADDR
            } else {
                (t & !TTBR_BADDR) | (base + (t & TTBR_BADDR))
            }
        };
        e.ttbr0 = used(s.ttbr0, domu::TCR_EPD0);
        e.ttbr1 = used(s.ttbr1, domu::TCR_EPD1);
        e.sctlr = s.sctlr;
        e.tcr = build_pv::tcr() | (s.tcr & (domu::TCR_EPD0 | domu::TCR_EPD1));
        e.mair = domu::MAIR;
        e.vbar = s.vbar;
        e.tpidr_el0 = s.tpidr_el0;
        e.tpidr_el1 = s.tpidr_el1;
        e.tpidrro_el0 = s.tpidrro_el0;
        e.contextidr = s.contextidr;
        e.cntkctl = s.cntkctl;
        ctx.fp.fpsr = s.fpsr;
        ctx.fp.fpcr = s.fpcr;
        ctx.fp.v = s.v;
        ctx.el2.cntvoff = cntvoff;
        drop(ctx);
        if s.up != 0 {
            power.set_on(v);
        } else {
            power.cpu_off(v);
        }
        if s.timer_deadline != 0 {
            let phys = s.timer_deadline.wrapping_add(cntvoff);
            vc.timer_deadline.store(phys, Ordering::Release);
            timers::arm(
                cpu::index(),
                timers::Entry {
                    deadline: phys,
                    dom: vm.id,
                    vcpu: v as u16,
                    kind: timers::Kind::OneShot,
                },
            );
        }
    }
    drop(power);
    // The guest's frontends still think they are connected: tell it (start info's `restores`
    // says so too), so that the upcall, or a wait it ends, has it set them up again.
    domu::raise_virq(vm, 0, ferrite_abi::shared_info::virq::RESTORED);
    Ok(())
}
