//! dom0's control page on the machine ([`crate::vdev::ctrl`] is its register model): where
//! the frame is, and running the call its doorbell asks for.
//!
//! The call runs exactly as dom0's `hvc #0` would, through [`super::hypercall::dispatch`],
//! on a trap frame holding the page's x0..x6, on the vCPU that wrote the doorbell. Its
//! pointer arguments are therefore guest virtual addresses in the translation regime live at
//! the trap: when a Linux process wrote the doorbell, that is the process's own address space
//! (TTBR0_EL1 is the process's). `arch::guest_mem` translates them with `AT S12E1R/W`, which
//! check EL1's permissions without PAN (only `AT S1E1RP/WP` honour PAN), so a user page the
//! kernel could read (or write) is accepted: resident pages, mapped writable for results. A
//! page not yet faulted in, or copy-on-write, is `-EFAULT`: the caller touches its buffers
//! first. The result must still lie in dom0's RAM, as for every hypercall.
//!
//! Only Ferrite's own range is run (and the SMCCC vendor-hypervisor queries); PSCI and anything
//! else is SMCCC's NOT_SUPPORTED. dom0 has no continuation-style (preempted) calls; one that
//! rewinds is run again until it completes, as its `hvc` would be re-issued.

use super::Vm;
use crate::arch::exceptions::TrapFrame;
use crate::mm::region::Region;
use crate::vdev::ctrl::{self, CtrlPage, Write};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

/// The frame's IPA in dom0 (0: none).
static FRAME: AtomicU64 = AtomicU64::new(0);
static PAGE: Mutex<CtrlPage> = Mutex::new(CtrlPage::new());

/// The smallest bank the frame is carved from.
const MIN_BANK: u64 = 32 << 20;
const TWO_MIB: u64 = 2 << 20;

/// Takes the top 2 MiB of dom0's largest bank (if it has 32 MiB or more) out of dom0's RAM and
/// returns the control page's frame, the first 4 KiB of it. That IPA was RAM on the host, so
/// no device of any board is there; dom0 does not get it as RAM (its memory node leaves it
/// out), so its stage 2 leaves it unmapped and every access traps. The 2 MiB stay allocated
/// and unused, as the grant window's do (the stage-2 map keeps 2 MiB blocks for the bank).
pub fn carve(banks: &mut [Region]) -> Option<Region> {
    let b = banks
        .iter_mut()
        .filter(|b| b.size >= MIN_BANK)
        .max_by_key(|b| b.size)?;
    b.size -= TWO_MIB;
    let frame = Region::new(b.end(), ctrl::SIZE);
    FRAME.store(frame.start, Ordering::Release);
    Some(frame)
}

/// The offset of `ipa` in the control page if it is dom0's and `ipa` is in it.
#[inline]
pub fn offset(vm: &Vm, ipa: u64) -> Option<u64> {
    let at = FRAME.load(Ordering::Acquire);
    (vm.id == 0 && at != 0 && ipa.wrapping_sub(at) < ctrl::SIZE).then(|| ipa - at)
}

/// An access of `size` bytes at `off` in the page by vCPU `v` (`value`: what a write
/// stores). Returns what a read gives. Bad accesses are logged and ignored.
#[inline(never)]
pub fn access(
    vm: &'static Vm,
    v: usize,
    frame: &TrapFrame,
    off: u64,
    size: u8,
    write: bool,
    value: u64,
) -> u64 {
    let r = if write {
        // The lock is not held while the call runs.
        let w = PAGE.lock().write(off, size, value);
        w.map(|w| {
            if let Write::Ring(req) = w {
                let result = run(vm, v, frame, req);
                PAGE.lock().complete(result);
            }
            0
        })
    } else {
        PAGE.lock().read(off, size)
    };
    r.unwrap_or_else(|bad| {
        log::warn!(
            "{}: vcpu{v}: control page: {} of {size} bytes at offset {off:#x} ignored ({bad:?})",
            vm.name,
            if write { "write" } else { "read" }
        );
        0
    })
}

/// Runs the call `req` (x0..x6) for vCPU `v` as its `hvc #0` would run; returns x0..x6.
fn run(
    vm: &'static Vm,
    v: usize,
    at: &TrapFrame,
    req: [u64; ctrl::REQUEST_WORDS],
) -> [u64; ctrl::RESULT_WORDS] {
    let mut x = [0u64; 31];
    x[..req.len()].copy_from_slice(&req);
    let mut frame = TrapFrame {
        x,
        sp: at.sp,
        elr: at.elr,
        spsr: at.spsr,
    };
    if !ferrite_abi::call::is_ferrite_call(req[0]) {
        // The SMCCC vendor-hypervisor queries, or NOT_SUPPORTED; never PSCI from here.
        if req[0] >> 24 == 0x86 {
            super::hypercall::other(vm, v, &mut frame);
        } else {
            frame.x[0] = ferrite_abi::call::SMCCC_NOT_SUPPORTED as u64;
        }
        return results(&frame);
    }
    log::debug!(
        "{}: vcpu{v}: control page call {:#x} {:#x} {:#x}",
        vm.name,
        req[0],
        req[1],
        req[2]
    );
    // A call preempted to be continued rewinds the return address to its `hvc`: run it again
    // (its registers carry the progress), as the vCPU would. Bounded: a runaway rewind is a
    // Ferrite bug, not a reason to hold this CPU forever.
    for _ in 0..4096 {
        super::hypercall::dispatch(vm, v, &mut frame);
        if frame.elr == at.elr {
            break;
        }
        frame.elr = at.elr;
    }
    results(&frame)
}

fn results(frame: &TrapFrame) -> [u64; ctrl::RESULT_WORDS] {
    core::array::from_fn(|i| frame.x[i])
}
