//! The PV MMU calls at the hypercall boundary: `MMU_UPDATE`, `MMUEXT_OP` and `MEMORY_OP`
//! copy their batch in from the guest through checked accessors, hand it to the validator
//! (`crate::pv`), carry out what it asks (TTBR loads, TLB maintenance), and report how many
//! entries were done. A long batch is preempted after [`BUDGET`] entries: the call is rewound
//! to its `hvc` with its arguments advanced (x1 past the done entries, x2 reduced, x3 the
//! running total), so the CPU takes interrupts and may run others before it continues.

use super::Vm;
use super::domu::{Phys, TCR_EPD0, TCR_EPD1};
use crate::arch::exceptions::TrapFrame;
use crate::arch::guest_mem;
use crate::mm::region::Region;
use crate::pv::{self, Effect, FrameType, TlbOp, Ttbr};
use core::arch::asm;
use ferrite_abi::mmu::{MmuUpdate, MmuextOp};
use ferrite_abi::{DOMID_SELF, call, errno};

/// Entries handled per trap before the call is preempted and continued.
pub const BUDGET: usize = 1024;
/// Entries copied in at a time.
const CHUNK: usize = 64;

/// Reads guest memory of PV domain `vm` at `va` into `out`: every byte must be the domain's.
pub fn read_guest(vm: &Vm, va: u64, out: &mut [u8]) -> bool {
    let pv = vm.pv().expect("PV domain");
    guest_mem::read_with(va, out, |r| owns(pv, r))
}

fn owns(pv: &super::domu::PvDomain, r: Region) -> bool {
    let ft = pv.frames.lock();
    let first = r.start & !0xfff;
    (first..r.end()).step_by(4096).all(|p| ft.owns(p))
}

/// Writes `data` to the PV domain's memory at `va`: its own frames, never one that is a page
/// table (checked, and the copy done, under the frame table's lock).
pub fn write_guest(vm: &Vm, va: u64, data: &[u8]) -> bool {
    let pv = vm.pv().expect("PV domain");
    guest_mem::write_with(va, data, |r, copy| {
        let ft = pv.frames.lock();
        let first = r.start & !0xfff;
        let ok = (first..r.end()).step_by(4096).all(|p| {
            ft.info(p)
                .is_some_and(|i| !matches!(i.ty, FrameType::PageTable(_)))
        });
        if ok {
            copy();
        }
        ok
    })
}

/// Sets a batched call's results: x0 = `ret`, x1 = entries done in all.
fn finish(frame: &mut TrapFrame, ret: i64, done: u64) {
    frame.x[0] = ret as u64;
    frame.x[1] = done;
}

/// `MMU_UPDATE`, `MMUEXT_OP`, `MEMORY_OP`.
#[inline(never)]
pub fn batched(vm: &'static Vm, v: usize, frame: &mut TrapFrame) {
    let f = frame.x[0] as u32;
    let (va, count, before, arg) = (frame.x[1], frame.x[2], frame.x[3], frame.x[4]);
    if f != call::MEMORY_OP && arg != DOMID_SELF as u64 && arg != vm.id as u64 {
        log::warn!(
            "{}: vcpu{v}: PV MMU call on domain {arg}: only its own (DOMID_SELF)",
            vm.name
        );
        return finish(frame, errno::EPERM, before);
    }
    if count > u32::MAX as u64 {
        return finish(frame, errno::EINVAL, before);
    }
    let n = (count as usize).min(BUDGET);
    let (done, res) = match f {
        call::MMU_UPDATE => {
            let r = mmu_update(vm, va, n);
            super::stats::note_mmu_update(r.0 as u64);
            r
        }
        call::MMUEXT_OP => mmuext_op(vm, v, va, n),
        _ => {
            return super::balloon::memory_op(vm, v, frame);
        }
    };
    match res {
        Err(e) => finish(frame, e.to_ret(), before + done as u64),
        Ok(()) if (done as u64) < count => {
            // Preempted: continue from the next entry when the vCPU re-executes the hvc.
            let size = if f == call::MMU_UPDATE {
                size_of::<MmuUpdate>()
            } else {
                size_of::<MmuextOp>()
            } as u64;
            frame.x[1] = va + done as u64 * size;
            frame.x[2] = count - done as u64;
            frame.x[3] = before + done as u64;
            frame.elr -= 4;
        }
        Ok(()) => finish(frame, 0, before + done as u64),
    }
}

fn mmu_update(vm: &Vm, va: u64, n: usize) -> (usize, Result<(), pv::Errno>) {
    let pv = vm.pv().expect("PV domain");
    let mut buf = [MmuUpdate { ptr: 0, val: 0 }; CHUNK];
    let mut done = 0;
    while done < n {
        let k = (n - done).min(CHUNK);
        let bytes = k * size_of::<MmuUpdate>();
        // SAFETY: MmuUpdate is plain old data (two u64); any bytes are a valid value.
        let raw = unsafe { core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), bytes) };
        if !read_guest(vm, va + (done * size_of::<MmuUpdate>()) as u64, raw) {
            return (done, Err(pv::Errno::Fault));
        }
        let (d, r) = pv::mmu_update(vm.id, &mut pv.frames.lock(), &mut Phys, &buf[..k], k);
        done += d;
        if r.is_err() {
            return (done, r);
        }
    }
    (done, Ok(()))
}

fn mmuext_op(vm: &Vm, v: usize, va: u64, n: usize) -> (usize, Result<(), pv::Errno>) {
    let pv = vm.pv().expect("PV domain");
    let mut buf = [MmuextOp {
        cmd: 0,
        pad: 0,
        arg1: 0,
        arg2: 0,
    }; CHUNK];
    let mut done = 0;
    while done < n {
        let k = (n - done).min(CHUNK);
        let bytes = k * size_of::<MmuextOp>();
        // SAFETY: MmuextOp is plain old data (integers only); any bytes are a valid value.
        let raw = unsafe { core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), bytes) };
        if !read_guest(vm, va + (done * size_of::<MmuextOp>()) as u64, raw) {
            return (done, Err(pv::Errno::Fault));
        }
        let (d, r) = pv::mmuext_op(
            vm.id,
            &mut pv.frames.lock(),
            &mut Phys,
            v,
            &buf[..k],
            k,
            &mut apply,
        );
        done += d;
        if r.is_err() {
            return (done, r);
        }
    }
    (done, Ok(()))
}

/// Carries out what a successful `MMUEXT_OP` entry asks of the CPU, for the calling vCPU.
fn apply(e: Effect) {
    match e {
        Effect::LoadBase(which, base) => {
            let epd = match which {
                Ttbr::Ttbr0 => TCR_EPD0,
                Ttbr::Ttbr1 => TCR_EPD1,
            };
            load_base(
                which == Ttbr::Ttbr0,
                base.map_or(0, |b| b.ttbr()),
                epd,
                base.is_some(),
            );
        }
        Effect::Tlb(op) => tlb(op),
    }
}

/// Loads TTBR0 or TTBR1 of the calling vCPU with `value`, walks through that half enabled
/// (`on`) or not (TCR_EL1.EPDn).
fn load_base(ttbr0: bool, value: u64, epd: u64, on: bool) {
    // SAFETY: the calling vCPU's own translation registers, live on this CPU during its
    // hypercall, set to a base the validator accepted (a pinned level-0 table of its own) or
    // to none: nothing Ferrite or another domain uses.
    unsafe {
        let mut tcr: u64;
        asm!("mrs {}, tcr_el1", out(reg) tcr, options(nomem, nostack));
        tcr = if on { tcr & !epd } else { tcr | epd };
        if ttbr0 {
            asm!("msr ttbr0_el1, {}", in(reg) value, options(nostack));
        } else {
            asm!("msr ttbr1_el1, {}", in(reg) value, options(nostack));
        }
        asm!("msr tcr_el1, {}", "isb", in(reg) tcr, options(nostack));
    }
}

/// A TLB operation the guest asked for, on its own VMID (the one loaded).
fn tlb(op: TlbOp) {
    let page = |va: u64, asid: u16| ((asid as u64) << 48) | ((va >> 12) & 0xfff_ffff_ffff);
    // SAFETY: invalidations of the current VMID's stage-1 entries only: at worst the guest
    // loses cached translations of its own.
    unsafe {
        match op {
            TlbOp::FlushLocal => asm!("dsb ishst", "tlbi vmalle1", "dsb nsh", "isb"),
            TlbOp::FlushAll => asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb"),
            TlbOp::PageLocal { va, asid } => asm!(
                "dsb ishst", "tlbi vae1, {}", "dsb nsh", "isb",
                in(reg) page(va, asid)
            ),
            TlbOp::PageAll { va, asid } => asm!(
                "dsb ishst", "tlbi vae1is, {}", "dsb ish", "isb",
                in(reg) page(va, asid)
            ),
        }
    }
}
