//! The network protocol between netfront (a domU) and netback (dom0): Ethernet frames over two
//! [`crate::ring`]s in one page (Xen's `netif`, simplified: one frame per page, no
//! offloads).
//!
//! The ring page holds the transmit ring at offset 0 ([`TxRing`], 64 slots) and the receive
//! ring at [`RX_RING_OFFSET`] ([`RxRing`], 128 slots). To send, the frontend puts a frame in a
//! page it granted to dom0 and makes a [`TxRequest`]; the backend answers with a
//! [`TxResponse`] once the frame has been delivered or dropped. To receive, the frontend posts
//! empty pages it granted ([`RxRequest`]); the backend fills one per arriving frame and answers
//! with an [`RxResponse`] (its length). dom0 switches frames between domUs by destination MAC
//! address ([`mac_of`]); a broadcast goes to every other domU. A frame with no posted buffer
//! at its destination is dropped, as on a real switch.

use crate::ring::{Pod, SharedRing};
use core::mem::size_of;

/// The largest frame (no FCS): 14 bytes of header and 1500 of payload.
pub const MAX_FRAME: u16 = 1514;
/// The smallest: an Ethernet header.
pub const MIN_FRAME: u16 = 14;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TxRequest {
    pub gref: u32,
    pub offset: u16,
    pub len: u16,
    pub id: u16,
    pub pad: [u16; 3],
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TxResponse {
    pub id: u16,
    /// 0 sent (or dropped by the switch for want of a receive buffer: that is not the
    /// sender's error), or a negated errno for a malformed request.
    pub status: i16,
    pub pad: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RxRequest {
    pub gref: u32,
    pub id: u16,
    pub pad: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RxResponse {
    pub id: u16,
    pub status: i16,
    /// The frame's length; it starts at offset 0 of the page.
    pub len: u16,
    pub pad: u16,
}

// SAFETY: integers only.
unsafe impl Pod for TxRequest {}
// SAFETY: as above.
unsafe impl Pod for TxResponse {}
// SAFETY: as above.
unsafe impl Pod for RxRequest {}
// SAFETY: as above.
unsafe impl Pod for RxResponse {}

pub const TX_SLOTS: usize = 64;
pub const RX_SLOTS: usize = 128;
pub type TxRing = SharedRing<TxRequest, TxResponse, TX_SLOTS>;
pub type RxRing = SharedRing<RxRequest, RxResponse, RX_SLOTS>;
/// Where the receive ring starts in the ring page.
pub const RX_RING_OFFSET: usize = 2048;
/// Header offsets inside each ring, for a backend that reaches it by grant copy.
pub const OFFSET_REQ_PROD: usize = 0;
pub const OFFSET_REQ_EVENT: usize = 4;
pub const OFFSET_RSP_PROD: usize = 8;
pub const OFFSET_SLOTS: usize = 64;

const _: () = assert!(size_of::<TxRequest>() == 16);
const _: () = assert!(size_of::<TxResponse>() == 8);
const _: () = assert!(size_of::<RxRequest>() == 8);
const _: () = assert!(size_of::<RxResponse>() == 8);
const _: () = assert!(size_of::<TxRing>() <= RX_RING_OFFSET);
const _: () = assert!(RX_RING_OFFSET + size_of::<RxRing>() <= 4096);

/// Domain `dom`'s MAC address: locally administered, `02:fe:00:00:<dom>`.
pub const fn mac_of(dom: u16) -> [u8; 6] {
    [0x02, 0xfe, 0, 0, (dom >> 8) as u8, dom as u8]
}

/// The domain a MAC address of [`mac_of`]'s form names.
pub fn dom_of(mac: &[u8]) -> Option<u16> {
    (mac.len() >= 6 && mac[..4] == [0x02, 0xfe, 0, 0]).then(|| u16::from_be_bytes([mac[4], mac[5]]))
}

pub const BROADCAST: [u8; 6] = [0xff; 6];
