//! Secondary vCPUs: `VCPU_OP UP` with this library's entry stub and a stack of the guest's
//! choosing.
//!
//! A vCPU Ferrite starts runs at the stub with x0 = its index, the caller's translation bases
//! and registers and DAIF masked. The stub enables FP/SIMD, takes its stack top from
//! [`STACK_TOPS`], installs the vectors, sets TPIDR_EL1 = index and calls the function given to
//! [`start_vcpu`].

use crate::cpu::MAX_VCPUS;
use crate::hypercall;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use ferrite_abi::Errno;

/// Each secondary's initial SP, read by the entry stub (0: no stack, the stub parks).
pub static STACK_TOPS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
/// Each secondary's Rust entry, a `fn(usize) -> !`.
static ENTRIES: [AtomicPtr<()>; MAX_VCPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_VCPUS];

/// Starts vCPU `index` (1..nr_vcpus) on the stack whose top is `stack_top`, running
/// `f(index)`. Ferrite's errors: `EEXIST` if it is up, `ENOENT` for a bad index.
///
/// # Safety
/// `stack_top` must be the (16-byte aligned) top of writable memory that nothing else uses,
/// mapped for as long as the vCPU runs.
pub unsafe fn start_vcpu(index: usize, stack_top: u64, f: fn(usize) -> !) -> Result<(), Errno> {
    if index == 0 || index >= MAX_VCPUS || !stack_top.is_multiple_of(16) {
        return Err(Errno::Inval);
    }
    ENTRIES[index].store(f as *mut (), Ordering::Release);
    STACK_TOPS[index].store(stack_top, Ordering::Release);
    // SAFETY: the entry stub runs `f` on the given stack, which the caller vouches for.
    unsafe { hypercall::vcpu_up(index as u64, crate::rt::secondary_entry_va(), index as u64) }
}

/// Called by the entry stub on the new vCPU's stack.
#[cfg_attr(
    not(all(target_arch = "aarch64", target_os = "none")),
    allow(dead_code)
)]
pub(crate) extern "C" fn secondary_start(index: u64) -> ! {
    let p = ENTRIES[index as usize].load(Ordering::Acquire);
    if p.is_null() {
        crate::cpu::park();
    }
    // SAFETY: `start_vcpu` stored a `fn(usize) -> !` there before starting the vCPU.
    let f: fn(usize) -> ! = unsafe { core::mem::transmute::<*mut (), fn(usize) -> !>(p) };
    f(index as usize)
}
