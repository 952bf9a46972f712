//! `blk-write <seed>` / `blk-read <seed>` / `blk-evil`: a blkfront ([`ferrite_abi::blkif`]).
//!
//! It sets up its grant table, a ring page and 8 data pages (256 for `blk-bench`) granted to
//! dom0, an event channel unbound for dom0, publishes them on the device bus, asking for
//! persistent grants (but in `blk-grants`), and waits for dom0's block backend to connect
//! (`blk: connected, <n> sectors`). Then:
//!
//! - `blk-write <seed>`: writes 64 sectors of a pattern made from `seed` at sector 0 in one
//!   8-segment request, flushes, reads them back and compares:
//!   `blk: wrote 64 sectors (seed <seed>), flushed, read back: ok`;
//! - `blk-read <seed>`: reads 64 sectors at 0 and compares with the pattern:
//!   `blk: read 64 sectors: pattern <seed> ok` (or `MISMATCH at sector <s>`);
//! - `blk-evil`: sends requests the backend must refuse (past the end of its disk, a grant it
//!   never made, a bad segment, an unknown op), each answered with an error, then a good one,
//!   then corrupts its ring's producer index (the backend must disconnect it):
//!   `blk-evil: done, <n> refused, <m> allowed`;
//! - `blk-grants <seed>`: connects without asking for persistent grants and, four times,
//!   writes 64 sectors of a pattern and reads them back; after each response it ends its 8
//!   data pages' grants (each must end: the backend unmapped them before answering) and grants
//!   them again for the next request:
//!   `blk-grants: 8 requests without persistent grants, all 64 data grants ended after their responses: ok`;
//! - `blk-bench <MiB>`: reads that much in 8-segment (32 KiB) requests, [`BENCH_DEPTH`] of them
//!   outstanding, each into its own 8 pages, and prints the rate.
//!
//! Every mode ends by closing the device (front state CLOSED).

use crate::front;
use core::sync::atomic::Ordering;
use ferrite_abi::blkif::{BlkRing, MAX_SEGMENTS, Request, Response, Segment, op};
use ferrite_abi::devbus::{self, feature, kind};
use ferrite_abi::ring::FrontRing;
use ferrite_abi::{Errno, errno};
use ferrite_pv::{hypercall, time};

const KEY: u64 = devbus::key(kind::BLOCK, 0);

struct Front {
    ring: &'static BlkRing,
    fr: FrontRing<'static, Request, Response, { ferrite_abi::blkif::RING_SLOTS }>,
    port: u32,
    /// The data pages: 8 per request this frontend may have outstanding.
    data_va: [u64; MAX_PAGES],
    /// The data pages' grants are consecutive from this one.
    first_gref: u32,
    ring_gref: u32,
    sectors: u64,
}

/// Requests `blk-bench` keeps outstanding: as many as dom0's own benchmark keeps at its disk
/// (`dom0.bench.blk`), so the two rates compare.
const BENCH_DEPTH: usize = 32;
const MAX_PAGES: usize = BENCH_DEPTH * MAX_SEGMENTS;
/// Requests completed before the clock starts (96 MiB): dom0's benchmark's warm-up
/// (`BENCH_WARM_UP` in `guest/dom0/src/virtio/blk.rs`; the first requests map the pages).
const WARM_UP: u64 = 3072;

/// Connects with `pages` data pages (at most [`MAX_PAGES`]), asking for `features`
/// ([`feature`] bits).
fn connect(pages: usize, features: u64) -> Result<Front, &'static str> {
    let (ring_va, ring_ma) = front::frame()?;
    // SAFETY: a zeroed frame of ours, mapped writable for good; the ring is Pod and atomics.
    let ring = unsafe { &*(ring_va as *const BlkRing) };
    ring.init();
    let ring_gref = front::grant_to_dom0(ring_ma)?;
    let mut data_va = [0u64; MAX_PAGES];
    let mut first_gref = 0;
    for (i, va) in data_va.iter_mut().take(pages).enumerate() {
        let (v, ma) = front::frame()?;
        *va = v;
        let g = front::grant_to_dom0(ma)?;
        if i == 0 {
            first_gref = g;
        }
    }
    let (port, sectors) = front::handshake(KEY, ring_gref, features)?;
    out!("blk: connected, {sectors} sectors");
    Ok(Front {
        ring,
        fr: FrontRing::new(ring),
        port,
        data_va,
        first_gref,
        ring_gref,
        sectors,
    })
}

/// Sends `req` and waits for its response's status.
fn submit(f: &mut Front, req: Request) -> Result<i16, &'static str> {
    let fr = &mut f.fr;
    fr.push_request(req).map_err(|_| "ring full")?;
    if fr.push_requests_and_check_notify() {
        let _ = hypercall::evtchn_send(f.port);
    }
    let end = time::now() + time::us_to_ticks(5_000_000);
    loop {
        match fr.take_response() {
            Ok(Some(r)) => return Ok(check_id(r, req.id)),
            // Ask to be notified of the next response (and look again if one raced that).
            Ok(None) if fr.final_check_for_responses() => continue,
            Ok(None) => {}
            Err(_) => return Err("the backend corrupted the ring"),
        }
        if time::now() > end {
            return Err("no response within 5 s");
        }
        front::wait_port(f.port, 10);
    }
}

fn check_id(r: Response, id: u64) -> i16 {
    if r.id != id { i16::MIN } else { r.status }
}

fn segments(first_gref: u32) -> [Segment; MAX_SEGMENTS] {
    core::array::from_fn(|i| Segment {
        gref: first_gref + i as u32,
        first_sect: 0,
        last_sect: 7,
        pad: 0,
    })
}

fn rw(f: &Front, op: u8, id: u64, sector: u64) -> Request {
    rw_into(f, 0, op, id, sector)
}

/// A request moving 8 sectors per page of the `set`th group of 8 data pages.
fn rw_into(f: &Front, set: usize, op: u8, id: u64, sector: u64) -> Request {
    Request {
        op,
        nr_segments: MAX_SEGMENTS as u8,
        id,
        sector,
        seg: segments(f.first_gref + (set * MAX_SEGMENTS) as u32),
        ..Request::default()
    }
}

fn pattern(seed: u64, byte: usize) -> u8 {
    let x = (byte as u64)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(seed.wrapping_mul(131));
    (x ^ (x >> 13)) as u8
}

fn page(f: &Front, i: usize) -> &'static mut [u8] {
    // SAFETY: one of our data frames, mapped writable for good; dom0's disk writes it (by DMA,
    // through dom0's mapping of the grant) only while a request is outstanding (none is, here).
    unsafe { core::slice::from_raw_parts_mut(f.data_va[i] as *mut u8, 4096) }
}

fn close() {
    front::close(KEY);
}

pub fn write(seed: u64) {
    let mut f = match connect(MAX_SEGMENTS, feature::PERSISTENT) {
        Ok(f) => f,
        Err(e) => return out!("blk: FAIL: {e}"),
    };
    for i in 0..MAX_SEGMENTS {
        for (b, x) in page(&f, i).iter_mut().enumerate() {
            *x = pattern(seed, i * 4096 + b);
        }
    }
    let steps: [(&str, Request); 2] = [
        ("write", rw(&f, op::WRITE, 1, 0)),
        (
            "flush",
            Request {
                op: op::FLUSH,
                id: 2,
                ..Request::default()
            },
        ),
    ];
    for (what, req) in steps {
        match submit(&mut f, req) {
            Ok(0) => {}
            Ok(s) => return out!("blk: FAIL: {what}: status {s}"),
            Err(e) => return out!("blk: FAIL: {what}: {e}"),
        }
    }
    for i in 0..MAX_SEGMENTS {
        page(&f, i).fill(0);
    }
    if let Err(e) = read_and_compare(&mut f, seed) {
        return out!("blk: FAIL: {e}");
    }
    out!("blk: wrote 64 sectors (seed {seed}), flushed, read back: ok");
    // Persistent grants: dom0 keeps the data pages mapped while connected.
    if front::try_end_grant(f.first_gref) {
        out!("blk: FAIL: a data page's grant ended while dom0 keeps it mapped");
    } else {
        out!("blk: persistent grants: a data page's grant stays in use while connected");
    }
    close();
}

/// Rounds of `blk-grants`: each a write and a read.
const GRANT_ROUNDS: u64 = 4;

/// `blk-grants <seed>` (module docs).
pub fn grants(seed: u64) {
    let mut f = match connect(MAX_SEGMENTS, 0) {
        Ok(f) => f,
        Err(e) => return out!("blk-grants: FAIL: {e}"),
    };
    let mut ended = 0;
    for round in 0..GRANT_ROUNDS {
        let s = seed + round;
        for i in 0..MAX_SEGMENTS {
            for (b, x) in page(&f, i).iter_mut().enumerate() {
                *x = pattern(s, i * 4096 + b);
            }
        }
        for (op, id) in [(op::WRITE, 2 * round + 1), (op::READ, 2 * round + 2)] {
            let req = rw(&f, op, id, 0);
            match submit(&mut f, req) {
                Ok(0) => {}
                Ok(st) => return out!("blk-grants: FAIL: request {id} (op {op}): status {st}"),
                Err(e) => return out!("blk-grants: FAIL: request {id} (op {op}): {e}"),
            }
            // The response means the backend has let go of the pages: every grant ends.
            for g in 0..MAX_SEGMENTS as u32 {
                let gref = f.first_gref + g;
                if !front::try_end_grant(gref) {
                    return out!(
                        "blk-grants: FAIL: grant {gref} still in use after the response to request {id}"
                    );
                }
                ended += 1;
                if !front::regrant(gref) {
                    return out!("blk-grants: FAIL: grant {gref} could not be granted again");
                }
            }
            if op == op::WRITE {
                for i in 0..MAX_SEGMENTS {
                    page(&f, i).fill(0);
                }
            }
        }
        for i in 0..MAX_SEGMENTS {
            for (b, &x) in page(&f, i).iter().enumerate() {
                if x != pattern(s, i * 4096 + b) {
                    return out!(
                        "blk-grants: FAIL: round {round}: MISMATCH at sector {}",
                        (i * 4096 + b) / 512
                    );
                }
            }
        }
    }
    out!(
        "blk-grants: {} requests without persistent grants, all {ended} data grants ended after their responses: ok",
        2 * GRANT_ROUNDS
    );
    close();
}

fn read_and_compare(f: &mut Front, seed: u64) -> Result<(), alloc_free::Msg> {
    match submit(f, rw(f, op::READ, 3, 0)) {
        Ok(0) => {}
        Ok(s) => return Err(alloc_free::Msg::Status("read", s)),
        Err(e) => return Err(alloc_free::Msg::Text(e)),
    }
    for i in 0..MAX_SEGMENTS {
        for (b, &x) in page(f, i).iter().enumerate() {
            if x != pattern(seed, i * 4096 + b) {
                return Err(alloc_free::Msg::Mismatch((i * 4096 + b) as u64 / 512));
            }
        }
    }
    Ok(())
}

pub fn read(seed: u64) {
    let mut f = match connect(MAX_SEGMENTS, feature::PERSISTENT) {
        Ok(f) => f,
        Err(e) => return out!("blk: FAIL: {e}"),
    };
    match read_and_compare(&mut f, seed) {
        Ok(()) => out!("blk: read 64 sectors: pattern {seed} ok"),
        Err(e) => out!("blk: {e}"),
    }
    close();
}

pub fn evil() {
    let mut f = match connect(MAX_SEGMENTS, feature::PERSISTENT) {
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
        match submit(&mut f, req) {
            Ok(0) => {
                allowed += 1;
                out!("blk-evil: {name}: ALLOWED");
            }
            Ok(s) => {
                refused += 1;
                let e = Errno::from_ret(s as i64);
                match e {
                    Some(e) if e == want => out!("blk-evil: {name}: refused {e}"),
                    _ => out!("blk-evil: {name}: refused {s} (unexpected, the ABI says {want})"),
                }
            }
            Err(e) => {
                allowed += 1;
                out!("blk-evil: {name}: FAIL: {e}");
            }
        }
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

/// Error text without a heap.
mod alloc_free {
    pub enum Msg {
        Text(&'static str),
        Status(&'static str, i16),
        Mismatch(u64),
    }

    impl core::fmt::Display for Msg {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Msg::Text(t) => f.write_str(t),
                Msg::Status(w, s) => write!(f, "FAIL: {w}: status {s}"),
                Msg::Mismatch(s) => write!(f, "MISMATCH at sector {s}"),
            }
        }
    }
}

/// `blk-bench <MiB>`: reads `mib` MiB through dom0 (around again past its disk's end) in
/// 8-segment (32 KiB) requests, [`BENCH_DEPTH`] outstanding, and prints the rate in real time
/// after [`WARM_UP`] requests. Each outstanding request has
/// a set of 8 pages of its own, named by its id; responses come in any order and give their
/// set back for the next request.
pub fn bench(mib: u64) {
    let mut f = match connect(MAX_PAGES, feature::PERSISTENT) {
        Ok(f) => f,
        Err(e) => return out!("blk-bench: FAIL: {e}"),
    };
    let per = 64u64;
    // Past the disk's end, around again from sector 0.
    let span = f.sectors / per;
    if span == 0 {
        return out!("blk-bench: FAIL: the disk is smaller than one request");
    }
    let total = (mib << 20) / (per * 512);
    // Which set of pages each outstanding request uses (by slot), and the free sets.
    let mut set_of = [u64::MAX; BENCH_DEPTH];
    let mut free: [usize; BENCH_DEPTH] = core::array::from_fn(|i| i);
    let mut nfree = BENCH_DEPTH;
    let (mut next, mut done) = (0u64, 0u64);
    // The clock starts once the warm-up's requests have completed, as in dom0's benchmark.
    let warm = if total > WARM_UP { WARM_UP } else { 0 };
    let mut t0 = time::now();
    let end = t0 + time::us_to_ticks(60_000_000);
    while done < total {
        while next < total && nfree > 0 {
            nfree -= 1;
            let set = free[nfree];
            set_of[set] = next;
            // The id names the set: the response gives it back.
            let req = rw_into(&f, set, op::READ, set as u64, (next % span) * per);
            if f.fr.push_request(req).is_err() {
                return out!("blk-bench: FAIL: ring full");
            }
            next += 1;
        }
        if f.fr.push_requests_and_check_notify() {
            let _ = hypercall::evtchn_send(f.port);
        }
        let mut got = false;
        loop {
            match f.fr.take_response() {
                Ok(Some(r)) => {
                    let set = r.id as usize;
                    if r.status != 0 || set >= BENCH_DEPTH || set_of[set] == u64::MAX {
                        return out!(
                            "blk-bench: FAIL at request {}: response id {} status {}",
                            done,
                            r.id,
                            r.status
                        );
                    }
                    set_of[set] = u64::MAX;
                    free[nfree] = set;
                    nfree += 1;
                    done += 1;
                    got = true;
                    if done == warm {
                        t0 = time::now();
                    }
                }
                Ok(None) if f.fr.final_check_for_responses() => {}
                Ok(None) => break,
                Err(_) => return out!("blk-bench: FAIL: the backend corrupted the ring"),
            }
        }
        if !got {
            if time::now() > end {
                return out!("blk-bench: FAIL: {done} of {total} requests answered in 60 s");
            }
            front::wait_port(f.port, 10);
        }
    }
    let us = time::ticks_to_us(time::now() - t0).max(1);
    let kib = (total - warm) * per / 2;
    out!(
        "blk-bench: read {kib} KiB through dom0 in {us} us, after {warm} requests of warm-up ({BENCH_DEPTH} requests of 32 KiB outstanding): {} KiB/s",
        kib * 1_000_000 / us
    );
    close();
}
