//! The block-device protocol between blkfront (a domU) and blkback (dom0), on a
//! [`crate::ring`] in one page (Xen's `blkif`, simplified).
//!
//! A request moves whole 512-byte sectors between the disk and up to
//! [`MAX_SEGMENTS`] pages the frontend granted to dom0: segment `i` covers sectors
//! `first_sect..=last_sect` (0..=7) of the page `gref` names, and they follow each other on the
//! disk from `sector`. Sector numbers are relative to the domain's virtual disk, whose size
//! (in sectors) the backend publishes as its device parameter. [`op::FLUSH`] completes once
//! everything written before it is on stable storage (a barrier and a flush). The response
//! carries the request's `id` and a status: 0, or a negated errno (`-EINVAL` a malformed
//! request or a sector outside the disk, `-EPERM` a grant that does not allow the access,
//! `-EIO` the disk failed).

use crate::errno::Errno;
use crate::ring::{Pod, SharedRing};
use core::mem::size_of;

pub const SECTOR_SIZE: u64 = 512;
pub const MAX_SEGMENTS: usize = 8;

pub mod op {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const FLUSH: u8 = 3;
}

/// `-EIO`: the disk failed.
pub const EIO: i16 = -5;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Segment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
    pub pad: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Request {
    pub op: u8,
    pub nr_segments: u8,
    pub pad: [u8; 6],
    pub id: u64,
    pub sector: u64,
    pub seg: [Segment; MAX_SEGMENTS],
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Response {
    pub id: u64,
    pub op: u8,
    pub pad: u8,
    pub status: i16,
    pub pad2: u32,
}

// SAFETY: integers only, every bit pattern valid.
unsafe impl Pod for Segment {}
// SAFETY: as above.
unsafe impl Pod for Request {}
// SAFETY: as above.
unsafe impl Pod for Response {}

/// 32 slots of 88 bytes after the 64-byte header.
pub const RING_SLOTS: usize = 32;
pub type BlkRing = SharedRing<Request, Response, RING_SLOTS>;

/// Byte offsets in the ring page, for a backend that reaches it by grant copy.
pub const OFFSET_REQ_PROD: usize = 0;
pub const OFFSET_REQ_EVENT: usize = 4;
pub const OFFSET_RSP_PROD: usize = 8;
pub const OFFSET_SLOTS: usize = 64;
pub const SLOT_SIZE: usize = size_of::<Request>();

const _: () = assert!(size_of::<Segment>() == 8);
const _: () = assert!(size_of::<Request>() == 88);
const _: () = assert!(size_of::<Response>() == 16);
const _: () = assert!(size_of::<BlkRing>() <= 4096);

impl Request {
    /// The checks every backend makes before touching a disk: a known op; for a read or
    /// write, 1..=[`MAX_SEGMENTS`] segments, each within its page (`first_sect <= last_sect
    /// <= 7`), and the sectors they cover inside a disk of `disk_sectors`. Returns how many
    /// sectors the request moves (0 for a flush); `Inval` otherwise.
    pub fn check(&self, disk_sectors: u64) -> Result<u64, Errno> {
        match self.op {
            op::FLUSH => return Ok(0),
            op::READ | op::WRITE => {}
            _ => return Err(Errno::Inval),
        }
        let n = self.nr_segments as usize;
        if n == 0 || n > MAX_SEGMENTS {
            return Err(Errno::Inval);
        }
        let segs = &self.seg[..n];
        if segs
            .iter()
            .any(|s| s.first_sect > s.last_sect || s.last_sect > 7)
        {
            return Err(Errno::Inval);
        }
        let total: u64 = segs
            .iter()
            .map(|s| (s.last_sect - s.first_sect + 1) as u64)
            .sum();
        match self.sector.checked_add(total) {
            Some(end) if end <= disk_sectors => Ok(total),
            _ => Err(Errno::Inval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: u8, sector: u64, segs: &[(u8, u8)]) -> Request {
        let mut r = Request {
            op,
            nr_segments: segs.len() as u8,
            sector,
            ..Request::default()
        };
        for (i, &(a, b)) in segs.iter().enumerate() {
            r.seg[i] = Segment {
                gref: 9,
                first_sect: a,
                last_sect: b,
                pad: 0,
            };
        }
        r
    }

    #[test]
    fn good_requests_give_their_sector_count() {
        assert_eq!(req(op::READ, 0, &[(0, 7)]).check(8), Ok(8));
        assert_eq!(req(op::WRITE, 10, &[(2, 7), (0, 3)]).check(20), Ok(10));
        assert_eq!(req(op::FLUSH, u64::MAX, &[]).check(0), Ok(0));
    }

    #[test]
    fn malformed_requests_and_ranges_outside_the_disk_are_refused() {
        let bad = [
            req(7, 0, &[(0, 0)]),
            req(op::READ, 0, &[]),
            req(op::READ, 0, &[(3, 2)]),
            req(op::READ, 0, &[(0, 8)]),
            req(op::READ, 1, &[(0, 7)]),
            req(op::WRITE, u64::MAX, &[(0, 0)]),
        ];
        for r in bad {
            assert_eq!(r.check(8), Err(Errno::Inval), "{r:?}");
        }
        let mut r = req(op::READ, 0, &[(0, 0)]);
        r.nr_segments = MAX_SEGMENTS as u8 + 1;
        assert_eq!(r.check(1 << 20), Err(Errno::Inval));
    }
}
