//! Saving a paused PV domU into dom0's memory in canonical form, and restoring one from it on
//! other machine frames (`DOMCTL SAVE_*`, `RESTORE_*`; dom0 writes the file).
//!
//! Canonical form: a frame is named by its pseudo-physical number (its index in the domain's
//! allocation), so a page table's entries hold `pfn × 4096` where the machine had the frame's
//! address, and so do the vCPUs' TTBRs. Restoring maps them to the new domain's frames and
//! validates the page tables exactly as a new domain's (pinning its roots), so a doctored
//! file gets no more than a guest's own page-table writes would. The start-info page and the
//! frame list, which tell the guest its machine addresses, are rewritten with the new ones.
//!
//! What is not carried: event channels other than the console's, grant tables and device-bus
//! entries (the guest sets them up again, as a Xen guest reconnects after a restore: the
//! start info's `restores` count and `virq::RESTORED` tell it), and frames ballooned in beyond
//! the initial allocation (such a domain is refused).

mod restore;

pub use restore::restoring;
use restore::{restore_begin, restore_end, restore_page, restore_vcpu};

use super::domctl::write_pod;
use super::lifecycle;
use super::{Vm, domain};
use crate::arch::exceptions::TrapFrame;
use crate::arch::timer;
use crate::pv::FrameType;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering;
use ferrite_abi::call::domctl as dc;
use ferrite_abi::ctl::{SAVE_MAGIC, SaveHeader, VcpuState, page_type};
use ferrite_abi::errno;

/// Bits 47:12 of a descriptor: the output address (4 KiB granule).
const OA: u64 = 0x0000_FFFF_FFFF_F000;
pub(super) const TTBR_BADDR: u64 = 0x0000_FFFF_FFFF_FFFE;

pub fn domctl(vm: &'static Vm, c: u64, frame: &mut TrapFrame) -> i64 {
    let (dom, a, b) = (frame.x[2], frame.x[3], frame.x[4]);
    if c == dc::RESTORE_BEGIN {
        return restore_begin(vm, dom);
    }
    let Some(target) = u16::try_from(dom).ok().and_then(domain) else {
        return errno::ENOENT;
    };
    let r = match c {
        dc::SAVE_BEGIN => save_begin(target).map(|h| write_pod(vm, a, &h)),
        dc::SAVE_PAGE => save_page(vm, target, a, b),
        dc::SAVE_VCPU => save_vcpu(target, a).map(|s| write_pod(vm, b, &s)),
        dc::RESTORE_PAGE => restore_page(vm, target, a, b, frame.x[5]),
        dc::RESTORE_VCPU => restore_vcpu(vm, target, a, b),
        dc::RESTORE_END => restore_end(target, frame),
        _ => Err((errno::ENOSYS, String::new())),
    };
    r.unwrap_or_else(|(code, why)| {
        if !why.is_empty() {
            log::warn!("dom0: save/restore of domain {dom}: {why}");
        }
        code
    })
}

pub(super) type R<T> = Result<T, (i64, String)>;

pub(super) fn inval<T>(why: String) -> R<T> {
    Err((errno::EINVAL, why))
}

/// The domain's one region of frames: (base, pages).
pub(super) fn region(vm: &Vm) -> (u64, u64) {
    let r = vm.memory[0];
    (r.start, r.size / 4096)
}

fn save_begin(vm: &'static Vm) -> R<SaveHeader> {
    let Some(pv) = vm.pv() else {
        return inval(String::from("dom0 cannot be saved"));
    };
    if !lifecycle::is_paused(vm) || !super::is_running(vm) {
        return inval(format!("{} is not paused: pause it first", vm.name));
    }
    // Its frames are not all written or zeroed before RESTORE_END.
    if restoring(vm.id) {
        return inval(format!("{} is being restored", vm.name));
    }
    if !lifecycle::all_vcpus_off(vm) {
        return Err((errno::EBUSY, String::new()));
    }
    let (base, pages) = region(vm);
    let ft = pv.frames.lock();
    if ft.nr_frames() as u64 != pages || ft.frames().any(|f| f < base || f >= base + pages * 4096) {
        return Err((
            errno::ENOSYS,
            format!(
                "{} ballooned its memory: saving it is not supported",
                vm.name
            ),
        ));
    }
    drop(ft);
    if super::grant::maps_of(vm.id) != 0 {
        return Err((
            errno::EBUSY,
            format!(
                "{} maps other domains' pages: it must unmap them first",
                vm.name
            ),
        ));
    }
    let pfn = |ma: u64| (ma - base) / 4096;
    let mut h = SaveHeader {
        magic: SAVE_MAGIC,
        nr_pages: pages,
        nr_vcpus: vm.vcpus as u32,
        max_pages: pv.max_pages,
        virtual_count: timer::counter().wrapping_sub(vm.cntvoff),
        shared_info_pfn: pfn(pv.shared_info),
        start_info_pfn: pv.start_info_pfn,
        console_pfn: match super::grant::console_page(vm.id) {
            0 => u64::MAX,
            ma => pfn(ma),
        },
        console_port: super::events::console_port(vm.id).unwrap_or(0),
        weight: 256,
        cap: 0,
        ..SaveHeader::default()
    };
    if let Some(o) = &vm.life.origin {
        h.weight = o.spec.weight;
        h.cap = o.spec.cap;
        h.on_crash = o.spec.on_crash.abi();
    }
    // The scheduler's values now (dom0 may have changed them since the build).
    if let Some((w, c)) = super::sched::with(|s| (s.weight(vm.id), s.cap(vm.id))) {
        h.weight = w.unwrap_or(h.weight);
        h.cap = c.unwrap_or(h.cap);
    }
    let n = vm.name.len().min(31);
    h.name[..n].copy_from_slice(&vm.name.as_bytes()[..n]);
    if let Some((offset, size)) = super::devbus::disk_bytes(vm.id) {
        h.disk_offset = offset;
        h.disk_size = size;
    }
    Ok(h)
}

/// Rewrites a table page's valid entries: `to` maps an output address, or refuses it.
pub(super) fn rewrite_table(page: &mut [u64; 512], mut to: impl FnMut(u64) -> Option<u64>) -> bool {
    for d in page.iter_mut() {
        if *d & 1 == 0 {
            continue;
        }
        match to(*d & OA) {
            Some(oa) => *d = (*d & !OA) | (oa & OA),
            None => return false,
        }
    }
    true
}

fn save_page(dom0: &Vm, vm: &'static Vm, pfn: u64, va: u64) -> R<i64> {
    let Some(pv) = vm.pv() else {
        return inval(String::from("dom0 cannot be saved"));
    };
    if !lifecycle::is_paused(vm) || restoring(vm.id) {
        return inval(format!("{} is not paused, or is being restored", vm.name));
    }
    let (base, pages) = region(vm);
    if pfn >= pages {
        return inval(format!("frame {pfn} is past {}'s {pages}", vm.name));
    }
    let ma = base + pfn * 4096;
    let ft = pv.frames.lock();
    let table = ft.info(ma).and_then(|i| match i.ty {
        FrameType::PageTable(level) => Some((level, i.pinned)),
        _ => None,
    });
    let Some((level, pinned)) = table else {
        // A data page goes to dom0 as it is, straight from the frame: with a buffer between
        // (zeroed, then copied into) a save cost twice the copies.
        // SAFETY: one of the paused domain's own frames (RAM, identity-mapped, not dom0's);
        // its vCPUs are off every CPU, and the frame-table lock keeps Ferrite's own writers
        // out (a backend's writes through a grant only change the bytes copied).
        let ok = unsafe { super::ctl::write_dom0_from(dom0, va, ma as *const u8, 4096) };
        drop(ft);
        return if ok {
            Ok(page_type::DATA as i64)
        } else {
            Err((errno::EFAULT, String::new()))
        };
    };
    let mut page = [0u64; 512];
    // SAFETY: as above; a table page is copied first, to be put in canonical form.
    unsafe { core::ptr::copy_nonoverlapping(ma as *const u64, page.as_mut_ptr(), 512) };
    drop(ft);
    let mut ty = page_type::TABLE_L0 + level as u64;
    if pinned {
        ty |= page_type::PINNED;
    }
    let end = base + pages * 4096;
    if !rewrite_table(&mut page, |oa| (oa >= base && oa < end).then(|| oa - base)) {
        return Err((
            errno::EBUSY,
            format!("{}: a page table maps a frame it does not own", vm.name),
        ));
    }
    // SAFETY: `page` is 4096 bytes of integers.
    let bytes = unsafe { core::slice::from_raw_parts(page.as_ptr().cast::<u8>(), 4096) };
    if !super::ctl::write_dom0(dom0, va, bytes) {
        return Err((errno::EFAULT, String::new()));
    }
    Ok(ty as i64)
}

fn save_vcpu(vm: &'static Vm, v: u64) -> R<VcpuState> {
    if vm.pv().is_none() || !lifecycle::is_paused(vm) {
        return inval(format!("{} is not a paused PV domU", vm.name));
    }
    let v = v as usize;
    let Some(vc) = vm.vcpu.get(v) else {
        return Err((errno::ENOENT, String::new()));
    };
    let (base, pages) = region(vm);
    let canon = |t: u64| {
        let b = t & TTBR_BADDR;
        if b >= base && b < base + pages * 4096 {
            (t & !TTBR_BADDR) | (b - base)
        } else {
            t & !TTBR_BADDR
        }
    };
    let ctx = vc.ctx.lock();
    let up = vm.power.lock().state(v) == Some(crate::domain::power::Power::On);
    let deadline = vc.timer_deadline.load(Ordering::Acquire);
    let s = VcpuState {
        up: up as u64,
        x: ctx.frame.x,
        pc: ctx.frame.elr,
        pstate: ctx.frame.spsr,
        sp_el0: ctx.el1.sp_el0,
        sp_el1: ctx.el1.sp_el1,
        elr_el1: ctx.el1.elr_el1,
        spsr_el1: ctx.el1.spsr_el1,
        ttbr0: canon(ctx.el1.ttbr0),
        ttbr1: canon(ctx.el1.ttbr1),
        sctlr: ctx.el1.sctlr,
        tcr: ctx.el1.tcr,
        mair: ctx.el1.mair,
        vbar: ctx.el1.vbar,
        tpidr_el0: ctx.el1.tpidr_el0,
        tpidr_el1: ctx.el1.tpidr_el1,
        tpidrro_el0: ctx.el1.tpidrro_el0,
        contextidr: ctx.el1.contextidr,
        cntkctl: ctx.el1.cntkctl,
        timer_deadline: if deadline == 0 {
            0
        } else {
            deadline.wrapping_sub(vm.cntvoff)
        },
        virtual_count: timer::counter().wrapping_sub(ctx.el2.cntvoff),
        fpsr: ctx.fp.fpsr,
        fpcr: ctx.fp.fpcr,
        v: ctx.fp.v,
    };
    Ok(s)
}
