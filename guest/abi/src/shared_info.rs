//! The shared-info page and upcalls: how Ferrite tells a PV domU's vCPU that something happened
//! (its timer fired, an event channel is pending).
//!
//! Each PV domain has one shared-info page (`StartInfo::shared_info_ma`), writable by both
//! sides. Ferrite records what is pending in the vCPU's [`VcpuInfo`] and sets
//! `upcall_pending`; while `upcall_pending` is non-zero and `upcall_mask` is zero, the vCPU
//! sees a virtual IRQ (HCR_EL2.VI): it takes its IRQ exception whenever PSTATE.I is clear. The
//! line is a level: it stays up until the guest clears `upcall_pending` **and** then makes a
//! hypercall (any call re-evaluates the line; [`crate::call::EVENT_OP`] with
//! [`crate::call::event::ACK`] exists for exactly that and costs one round trip). The usual
//! handler:
//!
//! 1. `upcall_pending = 0`;
//! 2. `pending = virq_pending.swap(0)` (atomically: Ferrite sets bits concurrently);
//! 3. handle each bit;
//! 4. `EVENT_OP ACK`, then return from the exception.
//!
//! A bit set after step 2 sets `upcall_pending` again, and the ACK leaves the line up: nothing
//! is lost.

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};

/// vCPUs that have a slot in the page.
pub const MAX_VCPUS: usize = 32;

/// Per-vCPU virtual interrupts (bits of [`VcpuInfo::virq_pending`]).
pub mod virq {
    /// The one-shot timer of `SET_TIMER_OP` expired (or the virtual timer, CNTV, fired: Ferrite
    /// then sets CNTV_CTL_EL0.IMASK, which the guest clears when it re-arms it).
    pub const TIMER: u32 = 1 << 0;
    /// An event-channel port is pending: see [`VcpuInfo::evtchn_pending_sel`].
    pub const EVTCHN: u32 = 1 << 1;
    /// dom0 asked the domain to shut down (vCPU 0 only): see [`SharedInfo::shutdown_request`].
    pub const CONTROL: u32 = 1 << 2;
    /// The domain was just restored from a save file (vCPU 0 only; raised before it first
    /// runs again): its grant table, its event channels but the console's and its device-bus
    /// entries are gone, and [`crate::StartInfo::restores`] counts one more. Frontends set
    /// themselves up again and resend what was outstanding.
    pub const RESTORED: u32 = 1 << 3;
}

/// One vCPU's slot: 64 bytes.
#[repr(C)]
pub struct VcpuInfo {
    /// Non-zero: something is pending; Ferrite raises the virtual IRQ. Set by Ferrite, cleared
    /// by the guest.
    pub upcall_pending: AtomicU8,
    /// Non-zero: the guest does not want upcalls (Ferrite keeps the line down; it still records
    /// what is pending and wakes a blocked vCPU).
    pub upcall_mask: AtomicU8,
    pub pad0: [u8; 2],
    /// [`virq`] bits: set by Ferrite, cleared by the guest.
    pub virq_pending: AtomicU32,
    /// Event channels: bit `w` set means word `w` of [`SharedInfo::evtchn_pending`] may hold a
    /// pending, unmasked port for this vCPU. Set by Ferrite, swapped to 0 by the guest.
    pub evtchn_pending_sel: AtomicU64,
    /// Reserved, 0.
    pub reserved: [u64; 6],
}

/// The page. Offsets: `vcpu_info` at 0 (32 × 64 bytes); the event-channel bitmaps at 2048 and
/// 2560: bit `p % 64` of word `p / 64` is port `p` (see [`crate::evtchn`]).
#[repr(C)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; MAX_VCPUS],
    /// Set by Ferrite when an event arrives on a port; cleared by the guest when it handles it.
    pub evtchn_pending: [AtomicU64; 64],
    /// Set by the guest for ports it does not want upcalls for (Ferrite still sets pending).
    pub evtchn_mask: [AtomicU64; 64],
    /// dom0's request, with [`virq::CONTROL`]: 0 none, else 1 + a `SHUTDOWN_*` reason
    /// (poweroff or reboot). The guest answers with `SCHED_OP SHUTDOWN` of that reason.
    pub shutdown_request: AtomicU64,
    pub reserved: [u64; 127],
}

const _: () = assert!(size_of::<VcpuInfo>() == 64);
const _: () = assert!(offset_of!(VcpuInfo, virq_pending) == 4);
const _: () = assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
const _: () = assert!(offset_of!(SharedInfo, evtchn_pending) == 2048);
const _: () = assert!(offset_of!(SharedInfo, evtchn_mask) == 2560);
const _: () = assert!(offset_of!(SharedInfo, shutdown_request) == 3072);
const _: () = assert!(size_of::<SharedInfo>() == 4096);

/// Byte offset of vCPU `v`'s slot in the page.
pub const fn vcpu_info_offset(v: usize) -> usize {
    v * size_of::<VcpuInfo>()
}
