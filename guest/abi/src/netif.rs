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
//! address: each frontend's is [`mac_of`] its domain id, or the one it asked for with
//! [`crate::devbus::feature::MAC`] (after a restore, the one it had before), and the backend's
//! device-bus parameter says which. A broadcast goes to every other domU. A frame with no posted buffer
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

/// A MAC address as a device-bus parameter: its six bytes, the first most significant, in the
/// low 48 bits.
pub const fn mac_to_u64(mac: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

/// The MAC address of a device-bus parameter ([`mac_to_u64`]); `None` if bits above the low
/// 48 are set.
pub const fn mac_from_u64(x: u64) -> Option<[u8; 6]> {
    if x >> 48 != 0 {
        return None;
    }
    let b = x.to_be_bytes();
    Some([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Whether `mac` can name one frontend: not a group (broadcast or multicast) address, not
/// all zero.
pub const fn is_unicast(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac_to_u64(mac) != 0
}

pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Why a net backend refuses the MAC address a frontend asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacRefused {
    /// The parameter has bits above the low 48.
    Malformed(u64),
    /// A group (broadcast or multicast) address, or all zero.
    NotUnicast([u8; 6]),
    /// Another connected frontend, of this domain, has it.
    InUse([u8; 6], u16),
}

impl core::fmt::Display for MacRefused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed(x) => write!(f, "its MAC parameter {x:#x} is no MAC address"),
            Self::NotUnicast(m) => write!(f, "MAC {} is no unicast address", Mac(*m)),
            Self::InUse(m, d) => write!(f, "MAC {} is dom{d}'s", Mac(*m)),
        }
    }
}

/// Why a net backend refuses a transmitted frame: what its response's status says
/// ([`TxRefused::errno`]), and a log line ([`core::fmt::Display`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxRefused {
    /// Its length or offset (`Inval`), or its grant.
    Bad(crate::Errno),
    /// Its source address is this one, not the sender's.
    Spoofed([u8; 6]),
}

impl From<crate::Errno> for TxRefused {
    fn from(e: crate::Errno) -> Self {
        Self::Bad(e)
    }
}

impl TxRefused {
    pub fn errno(&self) -> crate::Errno {
        match self {
            Self::Bad(e) => *e,
            Self::Spoofed(_) => crate::Errno::Perm,
        }
    }

    /// Whether the frame whose header is `hdr` comes from `own`, the sender's address: a
    /// backend checks its own copy of the frame, which the sender cannot change any more.
    pub fn check_source(hdr: &[u8], own: [u8; 6]) -> Result<(), Self> {
        let mut src = [0u8; 6];
        src.copy_from_slice(&hdr[6..12]);
        if src == own {
            Ok(())
        } else {
            Err(Self::Spoofed(src))
        }
    }
}

impl core::fmt::Display for TxRefused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Bad(e) => write!(f, "{e}"),
            Self::Spoofed(m) => write!(f, "its source address {} is not its own", Mac(*m)),
        }
    }
}

/// Whether a transmit request's frame fits: [`MIN_FRAME`]..=[`MAX_FRAME`] bytes inside its page.
pub fn check_tx(req: &TxRequest) -> Result<(), TxRefused> {
    let fits = (MIN_FRAME..=MAX_FRAME).contains(&req.len)
        && req.offset as usize + req.len as usize <= 4096;
    if fits {
        Ok(())
    } else {
        Err(crate::Errno::Inval.into())
    }
}

/// A MAC address written the usual way, `02:fe:00:00:00:01`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The MAC address a net backend gives domain `dom`'s frontend, which the backend's
/// device-bus parameter then tells it: the one it asked for (`asked`, its parameter, when it
/// published [`crate::devbus::feature::MAC`]), refused if that is no unicast address or
/// another connected frontend has it (`holder`); else [`mac_of`]`(dom)`, or, when a restored
/// domain kept that one, the first free `02:fe:00:<n>:<dom>` (n = 1..255).
pub fn backend_mac(
    dom: u16,
    asked: Option<u64>,
    holder: impl Fn([u8; 6]) -> Option<u16>,
) -> Result<[u8; 6], MacRefused> {
    if let Some(x) = asked {
        let mac = mac_from_u64(x).ok_or(MacRefused::Malformed(x))?;
        if !is_unicast(mac) {
            return Err(MacRefused::NotUnicast(mac));
        }
        return match holder(mac) {
            Some(d) => Err(MacRefused::InUse(mac, d)),
            None => Ok(mac),
        };
    }
    let own = mac_of(dom);
    (0..=255u8)
        .map(|n| [own[0], own[1], own[2], n, own[4], own[5]])
        .find(|&m| holder(m).is_none())
        .ok_or(MacRefused::InUse(own, holder(own).unwrap_or(dom)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_survives_the_device_bus_parameter() {
        for mac in [
            mac_of(1),
            mac_of(0x1234),
            [0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54],
            [0; 6],
        ] {
            assert_eq!(mac_from_u64(mac_to_u64(mac)), Some(mac));
        }
        assert_eq!(mac_to_u64(mac_of(0x0102)), 0x02fe_0000_0102);
        assert_eq!(mac_from_u64(1 << 48), None);
        assert_eq!(mac_from_u64(u64::MAX), None);
    }

    #[test]
    fn only_unicast_addresses_name_a_frontend() {
        assert!(is_unicast(mac_of(7)));
        assert!(!is_unicast(BROADCAST));
        assert!(!is_unicast([0x01, 0x00, 0x5e, 0, 0, 1]));
        assert!(!is_unicast([0; 6]));
    }

    #[test]
    fn a_backend_gives_the_mac_asked_for_unless_it_is_taken() {
        fn held(by: &[([u8; 6], u16)]) -> impl Fn([u8; 6]) -> Option<u16> + '_ {
            move |m| by.iter().find(|(x, _)| *x == m).map(|&(_, d)| d)
        }
        // Not asked: the domain's own, unless a restored domain kept it.
        assert_eq!(backend_mac(3, None, held(&[])), Ok(mac_of(3)));
        assert_eq!(
            backend_mac(1, None, held(&[(mac_of(1), 3)])),
            Ok([0x02, 0xfe, 0, 1, 0, 1])
        );
        // Asked: that one, even another domain id's (a restored domain keeps its address).
        let kept = mac_to_u64(mac_of(1));
        assert_eq!(backend_mac(3, Some(kept), held(&[])), Ok(mac_of(1)));
        assert_eq!(
            backend_mac(4, Some(kept), held(&[(mac_of(1), 3)])),
            Err(MacRefused::InUse(mac_of(1), 3))
        );
        assert_eq!(
            backend_mac(4, Some(mac_to_u64(BROADCAST)), held(&[])),
            Err(MacRefused::NotUnicast(BROADCAST))
        );
        assert_eq!(
            backend_mac(4, Some(0), held(&[])),
            Err(MacRefused::NotUnicast([0; 6]))
        );
        assert_eq!(
            backend_mac(4, Some(1 << 60), held(&[])),
            Err(MacRefused::Malformed(1 << 60))
        );
    }

    #[test]
    fn frames_are_refused_for_their_size_or_a_source_not_their_own() {
        let req = |offset, len| TxRequest {
            offset,
            len,
            ..TxRequest::default()
        };
        assert_eq!(check_tx(&req(0, 60)), Ok(()));
        assert_eq!(check_tx(&req(4096 - 1514, 1514)), Ok(()));
        for (o, l) in [(0, 13), (0, 1515), (4000, 200), (u16::MAX, 14)] {
            assert_eq!(
                check_tx(&req(o, l)),
                Err(TxRefused::Bad(crate::Errno::Inval))
            );
        }
        let mut hdr = [0u8; 14];
        hdr[6..12].copy_from_slice(&mac_of(2));
        assert_eq!(TxRefused::check_source(&hdr, mac_of(2)), Ok(()));
        let r = TxRefused::check_source(&hdr, mac_of(3));
        assert_eq!(r, Err(TxRefused::Spoofed(mac_of(2))));
        assert_eq!(r.unwrap_err().errno(), crate::Errno::Perm);
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            r.unwrap_err().to_string(),
            "its source address 02:fe:00:00:00:02 is not its own"
        );
    }

    #[test]
    fn refusals_name_the_address_and_its_holder() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            MacRefused::InUse(mac_of(1), 3).to_string(),
            "MAC 02:fe:00:00:00:01 is dom3's"
        );
        assert_eq!(
            Mac([0xde, 0xad, 0xbe, 0xef, 0, 0x0a]).to_string(),
            "de:ad:be:ef:00:0a"
        );
    }
}
