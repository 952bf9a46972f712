//! `blk-evil`: requests a blkback must refuse, each answered with the ABI's error, then a good
//! one, then a corrupted ring (module docs of [`super`]).

use super::{Front, connect, indirect, rw, submit};
use crate::front;
use core::sync::atomic::Ordering;
use ferrite_abi::blkif::{MAX_INDIRECT_SEGMENTS, MAX_SEGMENTS, Request, op};
use ferrite_abi::devbus::feature;
use ferrite_abi::{Errno, errno};
use ferrite_pv::{hypercall, time};

pub fn evil() {
    let mut f = match connect(MAX_SEGMENTS, 1, feature::PERSISTENT) {
        Ok(f) => f,
        Err(e) => return out!("blk-evil: FAIL: {e}"),
    };
    let (mut refused, mut allowed) = (0, 0);
    let mut bad_seg = rw(&f, op::READ, 12, 0);
    bad_seg.seg[3].first_sect = 6;
    bad_seg.seg[3].last_sect = 2;
    let mut never = rw(&f, op::READ, 13, 0);
    never.seg[0].gref = 200;
    let mut many = rw(&f, op::WRITE, 14, 0);
    many.nr_segments = 9;
    let cases: [(&str, Request, Errno); 5] = [
        (
            "read past the end of its disk",
            rw(&f, op::READ, 10, f.sectors - 8),
            Errno::Inval,
        ),
        (
            "write at sector 2^63",
            rw(&f, op::WRITE, 11, 1 << 63),
            Errno::Inval,
        ),
        ("a segment ending before it starts", bad_seg, Errno::Inval),
        ("a grant reference it never made", never, Errno::Perm),
        ("nine segments", many, Errno::Inval),
    ];
    for (name, req, want) in cases {
        if verdict(name, submit(&mut f, req), want) {
            refused += 1;
        } else {
            allowed += 1;
        }
    }
    if f.indirect {
        let (r, a) = evil_indirect(&mut f);
        refused += r;
        allowed += a;
    } else {
        allowed += 1;
        out!("blk-evil: FAIL: the backend takes no indirect requests");
    }
    match submit(
        &mut f,
        Request {
            op: 99,
            id: 15,
            ..Request::default()
        },
    ) {
        Ok(s) if s == errno::EINVAL as i16 => {
            refused += 1;
            out!("blk-evil: an unknown op: refused EINVAL");
        }
        other => {
            allowed += 1;
            out!("blk-evil: an unknown op: {other:?}");
        }
    }
    // A good request still works after all that.
    let good = rw(&f, op::READ, 16, 0);
    match submit(&mut f, good) {
        Ok(0) => out!("blk-evil: a good request after them: ok"),
        other => out!("blk-evil: a good request after them: FAIL {other:?}"),
    }
    // dom0 maps the ring: ending that grant must fail while it is mapped.
    if front::try_end_grant(f.ring_gref) {
        allowed += 1;
        out!("blk-evil: ending its ring grant while dom0 maps it: ALLOWED");
    } else {
        refused += 1;
        out!("blk-evil: ending its ring grant while dom0 maps it: refused (in use)");
    }
    // Claim 1000 requests in a 32-slot ring.
    let prod = f.ring.req_prod.load(Ordering::Relaxed);
    f.ring
        .req_prod
        .store(prod.wrapping_add(1000), Ordering::Release);
    let _ = hypercall::evtchn_send(f.port);
    out!("blk-evil: corrupted its ring (req_prod + 1000)");
    let _ = time::sleep_us(50_000);
    out!("blk-evil: done, {refused} refused, {allowed} allowed");
}

/// Prints how bad request `name` was answered; true if it was refused (with `want`, or the
/// line says it was unexpected).
fn verdict(name: &str, answer: Result<i16, &str>, want: Errno) -> bool {
    match answer {
        Ok(0) => {
            out!("blk-evil: {name}: ALLOWED");
            false
        }
        Ok(s) => {
            match Errno::from_ret(s as i64) {
                Some(e) if e == want => out!("blk-evil: {name}: refused {e}"),
                _ => out!("blk-evil: {name}: refused {s} (unexpected, the ABI says {want})"),
            }
            true
        }
        Err(e) => {
            out!("blk-evil: {name}: FAIL: {e}");
            false
        }
    }
}

/// `blk-evil`'s indirect requests: (refused as the ABI says, allowed or refused otherwise).
/// Each is built just before it is sent: they share one indirect page.
fn evil_indirect(f: &mut Front) -> (u32, u32) {
    const PAGES: (usize, usize) = (0, MAX_SEGMENTS);
    type Build = fn(&Front) -> Request;
    let cases: [(&str, Build, Errno); 5] = [
        (
            "an indirect request of 65 segments",
            |f| {
                indirect(
                    f,
                    0,
                    op::READ,
                    20,
                    0,
                    (0, MAX_INDIRECT_SEGMENTS + 1),
                    |_, _| {},
                )
            },
            Errno::Inval,
        ),
        (
            "an indirect page it never granted",
            |f| {
                let mut r = indirect(f, 0, op::READ, 21, 0, PAGES, |_, _| {});
                r.seg[0].gref = 300;
                r
            },
            Errno::Perm,
        ),
        (
            "a segment ending before it starts, in its indirect page",
            |f| {
                indirect(f, 0, op::WRITE, 22, 0, PAGES, |i, s| {
                    if i == 5 {
                        s.first_sect = 6;
                        s.last_sect = 2;
                    }
                })
            },
            Errno::Inval,
        ),
        (
            "an indirect flush",
            |f| indirect(f, 0, op::FLUSH, 23, 0, (0, 1), |_, _| {}),
            Errno::Inval,
        ),
        (
            "an indirect read past the end of its disk",
            |f| indirect(f, 0, op::READ, 24, f.sectors - 8, PAGES, |_, _| {}),
            Errno::Inval,
        ),
    ];
    let (mut refused, mut allowed) = (0, 0);
    for (name, build, want) in cases {
        let req = build(f);
        if verdict(name, submit(f, req), want) {
            refused += 1;
        } else {
            allowed += 1;
        }
    }
    let good = indirect(f, 0, op::READ, 25, 0, PAGES, |_, _| {});
    match submit(f, good) {
        Ok(0) => out!("blk-evil: a good indirect request after them: ok"),
        other => {
            allowed += 1;
            out!("blk-evil: a good indirect request after them: FAIL {other:?}");
        }
    }
    (refused, allowed)
}
