//! Event channels: notifications between domains, from Ferrite (virtual IRQs) and between a
//! domain's own vCPUs, as Xen's 2-level event channels.
//!
//! A domain has ports `1..NR_PORTS` (port 0 is never valid). Each port is closed, unbound
//! (waiting for one named domain to bind to it), interdomain (connected to a port of another
//! domain, or of the same one), bound to a virtual IRQ of one vCPU, or an IPI port. Sending on
//! a port makes its peer port pending. A pending port that is not masked sets its word's bit in
//! the notified vCPU's `evtchn_pending_sel` and raises that vCPU's upcall
//! ([`crate::shared_info`]): a PV domU sees its virtual IRQ line, dom0 the event interrupt named
//! in its `/hypervisor` node. The guest's handler:
//!
//! 1. `upcall_pending = 0`;
//! 2. `sel = evtchn_pending_sel.swap(0)`;
//! 3. for each set bit `w` of `sel`: `bits = evtchn_pending[w] & !evtchn_mask[w]`; for each
//!    port in `bits`: clear its pending bit (atomically), handle it;
//! 4. `EVENT_OP ACK` (or any hypercall), return.
//!
//! A guest masks a port by setting its bit in `evtchn_mask` itself; to unmask it clears the
//! bit and calls [`UNMASK`], which delivers an event that arrived while it was masked.
//!
//! All commands are `EVTCHN_OP` ([`crate::call::EVTCHN_OP`]) with the command in x1; results
//! in x0 (a port number, 0 or a negated errno), [`STATUS`] also in x1..x3.

/// Ports per domain, the bitmaps' size: 64 words of 64 bits.
pub const NR_PORTS: u32 = 4096;
/// The most ports a domU may have open at once (dom0: `NR_PORTS - 1`). More: `-ENOSPC`.
pub const DOMU_PORT_LIMIT: u32 = 1023;

/// x2 = the remote domain (or `DOMID_SELF`), x3 = the domain to allocate in (`DOMID_SELF`;
/// only dom0 may name another). Returns a new port, unbound, that only the remote domain may
/// bind to.
pub const ALLOC_UNBOUND: u64 = 0;
/// x2 = remote domain, x3 = its port, which must be unbound and allow the caller. Returns the
/// new local port; both ports are then interdomain, each the other's peer.
pub const BIND_INTERDOMAIN: u64 = 1;
/// x2 = virtual IRQ ([`virq`]), x3 = vCPU. Returns a new port that becomes pending whenever
/// Ferrite raises that virtual IRQ for that vCPU. `-EEXIST` if it is already bound.
pub const BIND_VIRQ: u64 = 2;
/// x2 = vCPU to notify. Returns a new port; sending on it notifies that vCPU of the caller's
/// own domain.
pub const BIND_IPI: u64 = 3;
/// x2 = port: makes its peer pending (interdomain), or itself (IPI). Sending on an unbound
/// port does nothing; on a virtual-IRQ port is `-EINVAL`.
pub const SEND: u64 = 4;
/// x2 = port: closes it. An interdomain peer becomes unbound again (waiting for the caller's
/// domain), as in Xen.
pub const CLOSE: u64 = 5;
/// x2 = port, x3 = domain (`DOMID_SELF`; only dom0 may name another). x0 = [`status`] kind,
/// x1 and x2 its details, x3 the vCPU it notifies.
pub const STATUS: u64 = 6;
/// x2 = port: the guest has cleared its mask bit; if it is pending, deliver it now.
pub const UNMASK: u64 = 7;
/// x2 = port, x3 = vCPU: the port now notifies that vCPU (virtual-IRQ ports keep theirs).
pub const BIND_VCPU: u64 = 8;
/// dom0 only: x2 = guest-physical address of a page of dom0's RAM that becomes its shared-info
/// page (PV domUs have theirs from the domain builder: `-EEXIST`). Until it is set, dom0 has
/// no event channels (`-ENOENT`).
pub const SET_SHARED_INFO: u64 = 9;

/// [`STATUS`] kinds (x0), with what x1 and x2 hold.
pub mod status {
    /// Not open.
    pub const CLOSED: u64 = 0;
    /// x1 = the domain allowed to bind to it.
    pub const UNBOUND: u64 = 1;
    /// x1 = peer domain, x2 = peer port.
    pub const INTERDOMAIN: u64 = 2;
    /// x1 = the virtual IRQ.
    pub const VIRQ: u64 = 3;
    /// An IPI port.
    pub const IPI: u64 = 4;
}

/// Virtual IRQs a port can be bound to ([`BIND_VIRQ`]).
pub mod virq {
    /// The vCPU's timer (`SET_TIMER_OP`, or the virtual timer of a PV domU) fired.
    pub const TIMER: u32 = 0;
    /// dom0: a domU wrote to Ferrite's console (`CONSOLE_IO`).
    pub const CONSOLE: u32 = 1;
    /// Raised by Ferrite's debug facilities (reserved: nothing raises it yet).
    pub const DEBUG: u32 = 2;
    /// The device bus changed ([`crate::devbus`]): for dom0, a frontend; for a domU, a backend.
    pub const DEVBUS: u32 = 3;
    /// How many there are.
    pub const COUNT: u32 = 4;
}

/// Word and bit of `port` in the bitmaps.
pub const fn word_bit(port: u32) -> (usize, u64) {
    ((port / 64) as usize, 1u64 << (port % 64))
}
