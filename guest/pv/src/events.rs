//! Upcalls: how Ferrite tells a vCPU that something happened, through the shared-info page
//! (`ferrite_abi::shared_info`).
//!
//! While `vcpu_info[v].upcall_pending != 0` and `upcall_mask == 0`, vCPU `v` has a virtual IRQ,
//! taken at the IRQ vector whenever PSTATE.I is clear. The line is a level: it stays up until
//! the guest clears `upcall_pending` and makes a hypercall. [`acknowledge`] is the protocol's
//! handler body: clear `upcall_pending`, swap `virq_pending` to 0, `EVENT_OP ACK`, return the
//! bits. [`handle_upcall`] (called by [`crate::exceptions`] on every IRQ) runs it and
//! accumulates the bits per vCPU, with the counter value at entry, for code that waits
//! ([`take`], [`stamp`]).

use crate::cpu::{self, MAX_VCPUS};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use ferrite_abi::shared_info::{SharedInfo, VcpuInfo};

static SHARED: AtomicPtr<SharedInfo> = AtomicPtr::new(core::ptr::null_mut());
static RECEIVED: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
static STAMP: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
static UPCALLS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// Uses the shared-info page mapped (writable) at `va`; 0 = none (upcalls are then only
/// acknowledged).
///
/// # Safety
/// `va` must be 0 or the shared-info page, mapped writable for the rest of the domain's life.
pub unsafe fn init(va: u64) {
    SHARED.store(va as *mut SharedInfo, Ordering::Release);
}

/// The shared-info page, if [`init`] was given one.
pub fn shared_info() -> Option<&'static SharedInfo> {
    let p = SHARED.load(Ordering::Acquire);
    // SAFETY: `init`'s contract: null or the page, mapped for good. All its fields that both
    // sides write are atomics.
    unsafe { p.as_ref() }
}

/// vCPU `v`'s slot.
pub fn vcpu_info(v: usize) -> Option<&'static VcpuInfo> {
    shared_info().and_then(|s| s.vcpu_info.get(v))
}

/// The protocol's handler body for slot `vi`: clears `upcall_pending`, takes `virq_pending`,
/// then `ack()`s (`EVENT_OP ACK`). A bit Ferrite sets after the swap sets `upcall_pending`
/// again and keeps the line up: nothing is lost.
pub fn acknowledge_slot(vi: &VcpuInfo, ack: impl FnOnce()) -> u32 {
    vi.upcall_pending.store(0, Ordering::SeqCst);
    let bits = vi.virq_pending.swap(0, Ordering::AcqRel);
    ack();
    bits
}

/// [`acknowledge_slot`] for vCPU `v`, with the real `EVENT_OP ACK`. Without a shared-info page
/// it only acknowledges (and returns 0).
pub fn acknowledge(v: usize) -> u32 {
    let ack = || {
        let _ = crate::hypercall::event_ack();
    };
    match vcpu_info(v) {
        Some(vi) => acknowledge_slot(vi, ack),
        None => {
            ack();
            0
        }
    }
}

/// The IRQ handler's work: notes the counter, acknowledges, and adds the bits to what this
/// vCPU has received. Returns the bits.
pub fn handle_upcall() -> u32 {
    let v = cpu::index().min(MAX_VCPUS - 1);
    let t = crate::time::now();
    let bits = acknowledge(v);
    STAMP[v].store(t, Ordering::Relaxed);
    UPCALLS[v].fetch_add(1, Ordering::Relaxed);
    RECEIVED[v].fetch_or(bits, Ordering::Release);
    if bits & ferrite_abi::shared_info::virq::CONTROL != 0 {
        control_request();
    }
    bits
}

/// dom0 asked this domain to shut down (`virq::CONTROL`): do it now, with dom0's reason.
/// Returns if there is no request.
pub fn control_request() {
    let Some(si) = shared_info() else { return };
    let r = si.shutdown_request.swap(0, Ordering::AcqRel);
    if r == 0 {
        return;
    }
    let reason = r - 1;
    crate::println!(
        "domU: dom0 asks for a {}: shutting down",
        if reason == ferrite_abi::sched::SHUTDOWN_REBOOT {
            "reboot"
        } else {
            "power off"
        }
    );
    let _ = crate::hypercall::shutdown(reason);
}

/// Takes (clears and returns) the received bits of vCPU `v` that are in `mask`.
pub fn take(v: usize, mask: u32) -> u32 {
    RECEIVED[v.min(MAX_VCPUS - 1)].fetch_and(!mask, Ordering::Acquire) & mask
}

/// The counter value when vCPU `v` last entered its upcall handler.
pub fn stamp(v: usize) -> u64 {
    STAMP[v.min(MAX_VCPUS - 1)].load(Ordering::Relaxed)
}

/// How many upcalls vCPU `v` has taken.
pub fn upcalls(v: usize) -> u64 {
    UPCALLS[v.min(MAX_VCPUS - 1)].load(Ordering::Relaxed)
}

/// Sets vCPU `v`'s `upcall_mask` (true: Ferrite keeps its line down, still waking `BLOCK`).
pub fn set_upcall_mask(v: usize, masked: bool) {
    if let Some(vi) = vcpu_info(v) {
        vi.upcall_mask.store(masked as u8, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledge_clears_pending_and_takes_bits() {
        // SAFETY: VcpuInfo is atomics and integers: all zeroes is a valid value.
        let vi: VcpuInfo = unsafe { core::mem::zeroed() };
        vi.upcall_pending.store(1, Ordering::Relaxed);
        vi.virq_pending.store(0b101, Ordering::Relaxed);
        let mut acked = false;
        let bits = acknowledge_slot(&vi, || {
            // The ACK comes after the slot is cleared, so Ferrite sees the cleared state.
            assert_eq!(vi.upcall_pending.load(Ordering::Relaxed), 0);
            assert_eq!(vi.virq_pending.load(Ordering::Relaxed), 0);
            acked = true;
        });
        assert!(acked);
        assert_eq!(bits, 0b101);
    }

    #[test]
    fn received_bits_accumulate_and_are_taken() {
        RECEIVED[3].fetch_or(0b11, Ordering::Relaxed);
        assert_eq!(take(3, 0b01), 0b01);
        assert_eq!(take(3, 0b01), 0);
        assert_eq!(take(3, u32::MAX), 0b10);
    }
}
