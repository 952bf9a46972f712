//! The device bus: how a frontend and its backend find each other, and see each other connect
//! and disconnect (a small, documented stand-in for Xen's xenstore `device/` and `backend/`
//! trees and xenbus states).
//!
//! Ferrite keeps, per domain, a short list of devices, each named by a key
//! ([`key`]`(kind, index)`) and holding what the frontend published (the grant reference of its
//! ring page, its event-channel port, its state) and what the backend set (its state and one
//! parameter, e.g. a disk's size in sectors). Every change the frontend makes raises dom0's
//! [`crate::evtchn::virq::DEVBUS`]; every change the backend makes raises the domain's. The
//! handshake (Xen's, shortened):
//!
//! 1. the frontend grants its ring page to dom0, allocates a port unbound for dom0, and
//!    [`PUBLISH`]es both: front state [`state::INITIALISED`];
//! 2. dom0's backend sees it ([`NEXT`], [`GET`]), binds the port, sets back state
//!    [`state::CONNECTED`] with its parameter;
//! 3. the frontend sees [`state::CONNECTED`] ([`GET`]) and starts;
//! 4. either side sets [`state::CLOSED`] to disconnect; the other sees it the same way.

/// `DEVICE_OP` commands (x1).
/// x2 = key, x3 = grant reference of the ring page, x4 = port, x5 = the frontend's
/// [`feature`] bits (0 for none), x6 = the frontend's parameter (kind-specific, stored as
/// given; a backend reads it only for a feature bit that says so, e.g. [`feature::MAC`])
/// (domU, for itself). Creates or replaces the device; front state INITIALISED, back state
/// unchanged. `-ENOSPC` beyond [`MAX_DEVICES`].
pub const PUBLISH: u64 = 0;
/// x2 = key, x3 = state: the frontend's new state.
pub const SET_FRONT_STATE: u64 = 1;
/// dom0 only: x2 = domain, x3 = key, x4 = state, x5 = parameter, x6 = the [`feature`] bits
/// the backend honours (of those the frontend asked for; 0 for none).
pub const SET_BACK_STATE: u64 = 2;
/// x2 = domain (`DOMID_SELF`; dom0 may name any), x3 = key. Returns x0 = front state | back
/// state << 8, x1 = grant reference, x2 = port, x3 = the backend's parameter, x4 = the
/// frontend's [`feature`] bits, x5 = the backend's, x6 = the frontend's parameter.
pub const GET: u64 = 3;
/// dom0 only: x2 = domain, x3 = a key (0 to start). Returns the next key after it, or
/// `-ENOENT` at the end.
pub const NEXT: u64 = 4;

/// Devices per domain.
pub const MAX_DEVICES: usize = 8;

/// Device kinds.
pub mod kind {
    pub const BLOCK: u32 = 2;
    pub const NET: u32 = 3;
    /// An event echo: no ring (grant reference 0); dom0's backend sends every event it gets on
    /// the port straight back from its interrupt handler. For measuring the event round trip.
    pub const ECHO: u32 = 4;
}

/// What a frontend asks of its backend, as `PUBLISH` bits (Xen's `feature-*` keys), and what
/// the backend honours, as `SET_BACK_STATE` bits. A backend ignores bits it does not know and
/// honours a subset of those asked for; Ferrite stores both sides' bits as given. A frontend
/// uses a feature once it is connected and the backend's bits have it.
pub mod feature {
    /// Block (Xen's `feature-persistent`): the backend may keep the frontend's data pages
    /// mapped from one request to the next, until the device closes. The frontend then reuses
    /// its data pages and cannot end their grants while connected. Without it, the backend
    /// unmaps a request's pages before it answers the request, so the frontend may end their
    /// grants as soon as it has the response.
    pub const PERSISTENT: u64 = 1 << 0;
    /// Block (Xen's `feature-max-indirect-segments`): the frontend may send
    /// [`crate::blkif::op::INDIRECT`] requests.
    pub const INDIRECT: u64 = 1 << 1;
    /// Net: the frontend asks for the MAC address in its parameter ([`crate::netif::mac_to_u64`]),
    /// the one it had before a restore (which changed its domain id). The backend honours it
    /// unless the address is no unicast one or another connected frontend has it. Either way a
    /// connected net backend's parameter is the frontend's MAC address.
    pub const MAC: u64 = 1 << 2;
}

/// Xen's xenbus states.
pub mod state {
    pub const UNKNOWN: u8 = 0;
    pub const INITIALISING: u8 = 1;
    pub const INIT_WAIT: u8 = 2;
    pub const INITIALISED: u8 = 3;
    pub const CONNECTED: u8 = 4;
    pub const CLOSING: u8 = 5;
    pub const CLOSED: u8 = 6;
    /// The highest valid state.
    pub const MAX: u8 = CLOSED;
}

/// The key of device `index` of `kind`: never 0.
pub const fn key(kind: u32, index: u32) -> u64 {
    (kind as u64) | ((index as u64) << 16)
}

/// The kind of a key.
pub const fn kind_of(key: u64) -> u32 {
    (key & 0xffff) as u32
}
