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
//!
//! **Indirect requests** (Xen's `BLKIF_OP_INDIRECT`), for a backend that took the frontend's
//! [`crate::devbus::feature::INDIRECT`]: [`op::INDIRECT`] moves up to
//! [`MAX_INDIRECT_SEGMENTS`] pages (256 KiB) in one ring slot. Its `indirect_op` is READ or
//! WRITE, `nr_segments` counts the segments, and `seg[0].gref` names one granted page (read
//! access is enough) holding the [`Segment`]s from its first byte, as a direct request holds
//! them in `seg`. The checks and errors are a direct request's; the indirect page is read once,
//! before the request goes to the disk, so the frontend may reuse it as soon as it has the
//! response. Fewer, larger requests divide each request's costs (a ring slot, a disk request,
//! a response, their events) among more bytes.

use crate::errno::Errno;
use crate::ring::{Pod, SharedRing};
use core::mem::size_of;

pub const SECTOR_SIZE: u64 = 512;
pub const MAX_SEGMENTS: usize = 8;
/// The most segments an [`op::INDIRECT`] request may have (256 KiB); they fill the first
/// 512 bytes of its indirect page.
pub const MAX_INDIRECT_SEGMENTS: usize = 64;

pub mod op {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const FLUSH: u8 = 3;
    /// Segments in a granted page ([`super::Request::indirect_op`] says READ or WRITE).
    pub const INDIRECT: u8 = 6;
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
    /// [`op::INDIRECT`]'s READ or WRITE; 0 otherwise.
    pub indirect_op: u8,
    pub pad: [u8; 5],
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
    /// sectors the request moves (0 for a flush); `Inval` otherwise, and for an
    /// [`op::INDIRECT`] (whose segments are in its indirect page: [`Request::check_indirect`]).
    pub fn check(&self, disk_sectors: u64) -> Result<u64, Errno> {
        match self.op {
            op::FLUSH => return Ok(0),
            op::READ | op::WRITE => {}
            _ => return Err(Errno::Inval),
        }
        let n = self.nr_segments as usize;
        if n > MAX_SEGMENTS {
            return Err(Errno::Inval);
        }
        check_segments(self.sector, &self.seg[..n], disk_sectors)
    }

    /// The checks of an [`op::INDIRECT`] request whose indirect page held `segs` (the first
    /// `nr_segments`, which the caller read after checking [`Request::indirect_segments`]):
    /// those of a READ or WRITE ([`Request::check`]), with up to [`MAX_INDIRECT_SEGMENTS`].
    pub fn check_indirect(&self, segs: &[Segment], disk_sectors: u64) -> Result<u64, Errno> {
        let n = self.indirect_segments()?;
        if segs.len() != n {
            return Err(Errno::Inval);
        }
        check_segments(self.sector, segs, disk_sectors)
    }

    /// For an [`op::INDIRECT`]: how many segments to read from its indirect page, once its
    /// op and count are known good (READ or WRITE, 1..=[`MAX_INDIRECT_SEGMENTS`]).
    pub fn indirect_segments(&self) -> Result<usize, Errno> {
        let n = self.nr_segments as usize;
        let good = self.op == op::INDIRECT
            && matches!(self.indirect_op, op::READ | op::WRITE)
            && (1..=MAX_INDIRECT_SEGMENTS).contains(&n);
        if good { Ok(n) } else { Err(Errno::Inval) }
    }

    /// What the request does to the disk: its op, or an indirect request's `indirect_op`.
    pub fn data_op(&self) -> u8 {
        if self.op == op::INDIRECT {
            self.indirect_op
        } else {
            self.op
        }
    }
}

/// 1.. segments, each within its page, covering sectors inside the disk from `sector`: the
/// sectors they move.
///
/// One pass without an early exit: blkback runs it on every request (64 segments for an
/// indirect one), and two passes with a branch per segment cost 18 instructions a segment
/// (measured under `-icount`, docs/io.md). A bad segment's count is garbage, and not used.
fn check_segments(sector: u64, segs: &[Segment], disk_sectors: u64) -> Result<u64, Errno> {
    let mut bad = segs.is_empty();
    let mut total = 0u64;
    for s in segs {
        bad |= (s.first_sect > s.last_sect) | (s.last_sect > 7);
        let n = (s.last_sect as u64)
            .wrapping_sub(s.first_sect as u64)
            .wrapping_add(1);
        total = total.wrapping_add(n);
    }
    if bad {
        return Err(Errno::Inval);
    }
    match sector.checked_add(total) {
        Some(end) if end <= disk_sectors => Ok(total),
        _ => Err(Errno::Inval),
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

    fn indirect(iop: u8, n: usize) -> Request {
        Request {
            op: op::INDIRECT,
            indirect_op: iop,
            nr_segments: n as u8,
            sector: 16,
            ..Request::default()
        }
    }

    /// The first `n` of 64 segments of whole pages.
    fn whole_pages(n: usize) -> ([Segment; MAX_INDIRECT_SEGMENTS], usize) {
        let segs = core::array::from_fn(|i| Segment {
            gref: 100 + i as u32,
            first_sect: 0,
            last_sect: 7,
            pad: 0,
        });
        (segs, n)
    }

    fn check_with(
        r: &Request,
        (segs, n): ([Segment; MAX_INDIRECT_SEGMENTS], usize),
        disk: u64,
    ) -> Result<u64, Errno> {
        r.check_indirect(&segs[..n], disk)
    }

    #[test]
    fn indirect_requests_carry_up_to_64_segments() {
        let r = indirect(op::READ, MAX_INDIRECT_SEGMENTS);
        assert_eq!(r.indirect_segments(), Ok(64));
        assert_eq!(check_with(&r, whole_pages(64), 16 + 512), Ok(512));
        assert_eq!(r.data_op(), op::READ);
        let w = indirect(op::WRITE, 3);
        assert_eq!(check_with(&w, whole_pages(3), 40), Ok(24));
        assert_eq!(w.data_op(), op::WRITE);
        // A direct request's checks never pass an indirect one.
        assert_eq!(r.check(1 << 20), Err(Errno::Inval));
    }

    #[test]
    fn bad_indirect_requests_are_refused() {
        for r in [
            indirect(op::READ, 0),
            indirect(op::READ, MAX_INDIRECT_SEGMENTS + 1),
            indirect(op::READ, 255),
            indirect(op::FLUSH, 1),
            indirect(op::INDIRECT, 1),
            indirect(9, 1),
        ] {
            assert_eq!(r.indirect_segments(), Err(Errno::Inval), "{r:?}");
            assert_eq!(check_with(&r, whole_pages(1), 1 << 20), Err(Errno::Inval));
        }
        let r = indirect(op::READ, 4);
        // Fewer segments read than it names, past the disk's end, a bad segment.
        assert_eq!(check_with(&r, whole_pages(3), 1 << 20), Err(Errno::Inval));
        assert_eq!(check_with(&r, whole_pages(4), 16 + 31), Err(Errno::Inval));
        let (mut segs, n) = whole_pages(4);
        segs[2].first_sect = 5;
        segs[2].last_sect = 4;
        assert_eq!(r.check_indirect(&segs[..n], 1 << 20), Err(Errno::Inval));
        // A direct request naming an indirect count.
        let mut d = req(op::READ, 0, &[(0, 7)]);
        d.nr_segments = 64;
        assert_eq!(d.check(1 << 20), Err(Errno::Inval));
    }
}
