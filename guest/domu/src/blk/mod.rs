//! `blk-write <seed>` / `blk-read <seed>` / `blk-evil`: a blkfront ([`ferrite_abi::blkif`]).
//!
//! It sets up its grant table, a ring page, data pages (64 for the tests, a set per request
//! outstanding for `blk-bench`) and, for indirect requests, an indirect page per set, all
//! granted to dom0, and an event channel unbound for dom0; publishes them on the device bus,
//! asking for persistent grants (but in `blk-grants`) and indirect requests, and waits for
//! dom0's block backend to connect (`blk: connected, <n> sectors`, `, indirect requests` when
//! the backend takes them). Then:
//!
//! - `blk-write <seed>`: writes 64 sectors of a pattern made from `seed` at sector 0 in one
//!   8-segment request, flushes, reads them back and compares:
//!   `blk: wrote 64 sectors (seed <seed>), flushed, read back: ok`; then, if the backend takes
//!   indirect requests, the same with 512 sectors at sector 64 (a second pattern, `seed` +
//!   1000) in one 64-segment indirect request: `blk: indirect: wrote 512 sectors at sector 64
//!   in one request, flushed, read back: ok`;
//! - `blk-read <seed>`: reads 64 sectors at 0 and compares with the pattern:
//!   `blk: read 64 sectors: pattern <seed> ok` (or `MISMATCH at sector <s>`); then, with
//!   indirect requests, the 512 at sector 64: `blk: indirect: read 512 sectors at sector 64:
//!   pattern <seed + 1000> ok`;
//! - `blk-evil`: sends requests the backend must refuse (past the end of its disk, a grant it
//!   never made, a bad segment, an unknown op; indirect ones with too many segments, an
//!   indirect page it never granted, a bad segment in it, a flush inside), each answered with
//!   an error, then a good one,
//!   then corrupts its ring's producer index (the backend must disconnect it):
//!   `blk-evil: done, <n> refused, <m> allowed`;
//! - `blk-grants <seed>`: connects without asking for persistent grants and, four times,
//!   writes 64 sectors of a pattern and reads them back; after each response it ends its 8
//!   data pages' grants (each must end: the backend unmapped them before answering) and grants
//!   them again for the next request:
//!   `blk-grants: 8 requests without persistent grants, all 64 data grants ended after their responses: ok`;
//! - `blk-loop <seed> <rounds> [gap_ms]`: each round writes 64 sectors of the pattern of
//!   `seed` + round at sector 0, flushes, reads them back and compares
//!   (`blk-loop: round <r>: pattern <p> written, flushed, read back: ok`), then sleeps `gap_ms`
//!   (100); at the end `blk-loop: <rounds> rounds ok, <n> reconnections after restores`. For a
//!   test that saves and restores the domain between (or during) rounds;
//! - `blk-bench <MiB> [<KiB per request> [<outstanding>]]`: reads that much in requests of
//!   that size (32 KiB, 8 segments, unless given; larger ones are indirect), that many
//!   outstanding (32), each into its own pages, and prints the rate.
//!
//! Every mode ends by closing the device (front state CLOSED).
//!
//! After a restore (`StartInfo::restores` changed, `virq::RESTORED`) the connection is gone:
//! the next request, or the one waiting for its response, connects again (`blk: the domain
//! was restored: connecting again`, then `blk: connected again, <n> sectors`) with the same
//! pages under the same grant references on a fresh ring, and is sent again. `blk-bench` does
//! not (it keeps only its first pages' addresses, and a rate across a save means nothing).

use crate::front;
use ferrite_abi::blkif::{
    BlkRing, MAX_INDIRECT_SEGMENTS, MAX_SEGMENTS, Request, Response, Segment, op,
};
use ferrite_abi::devbus::{self, feature, kind};
use ferrite_abi::ring::FrontRing;
use ferrite_pv::{hypercall, rt, time};

mod bench;
mod evil;

pub use bench::bench;
pub use evil::evil;

const KEY: u64 = devbus::key(kind::BLOCK, 0);

struct Front {
    ring: &'static BlkRing,
    fr: FrontRing<'static, Request, Response, { ferrite_abi::blkif::RING_SLOTS }>,
    port: u32,
    /// The first [`MAX_INDIRECT_SEGMENTS`] data pages, which the tests fill and check (the
    /// benchmark's others are only read into; their VAs are not kept: the stack is 16 KiB).
    data_va: [u64; MAX_INDIRECT_SEGMENTS],
    /// The data pages' grants are consecutive from this one.
    first_gref: u32,
    /// An indirect page per set (VA), their grants consecutive from `first_indirect_gref`.
    indirect_va: [u64; MAX_SETS],
    first_indirect_gref: u32,
    /// The backend takes indirect requests.
    indirect: bool,
    /// The backend keeps the data pages mapped while connected ([`feature::PERSISTENT`]).
    persistent: bool,
    ring_gref: u32,
    sectors: u64,
    /// Data pages and indirect pages granted, and the features asked for: what a reconnection
    /// grants and asks for again.
    pages: usize,
    sets: usize,
    features: u64,
    /// [`rt::restores`] when the connection was made: a restore since ends it.
    restores: u64,
    /// Connections made again after restores.
    reconnections: u64,
}

/// Sets of pages, each with an indirect page: a ring's worth of requests.
const MAX_SETS: usize = ferrite_abi::blkif::RING_SLOTS;
/// Data pages: 32 requests of 8 pages, or 8 of 64.
const MAX_PAGES: usize = 512;
/// Bytes completed before the clock starts: dom0's benchmark's warm-up
/// (`BENCH_WARM_UP_BYTES` in `guest/dom0/src/virtio/blk.rs`; the first requests map the pages).
const WARM_UP_BYTES: u64 = 96 << 20;
/// Where `blk-write`'s indirect request writes, and its pattern's seed offset.
const INDIRECT_AT: u64 = 64;
const INDIRECT_SEED: u64 = 1000;

/// Connects with `pages` data pages (at most [`MAX_PAGES`]) and `sets` indirect pages (at
/// most [`MAX_SETS`]; asking for indirect requests if any), asking for `features` too
/// ([`feature`] bits).
fn connect(pages: usize, sets: usize, features: u64) -> Result<Front, &'static str> {
    let (ring_va, ring_ma) = front::frame()?;
    // SAFETY: a zeroed frame of ours, mapped writable for good; the ring is Pod and atomics.
    let ring = unsafe { &*(ring_va as *const BlkRing) };
    ring.init();
    let ring_gref = front::grant_to_dom0(ring_ma)?;
    let mut data_va = [0u64; MAX_INDIRECT_SEGMENTS];
    let mut first_gref = 0;
    for i in 0..pages {
        let (v, ma) = front::frame()?;
        if let Some(va) = data_va.get_mut(i) {
            *va = v;
        }
        let g = front::grant_to_dom0(ma)?;
        if i == 0 {
            first_gref = g;
        }
    }
    let mut indirect_va = [0u64; MAX_SETS];
    let mut first_indirect_gref = 0;
    for (i, va) in indirect_va.iter_mut().take(sets).enumerate() {
        let (v, ma) = front::frame()?;
        *va = v;
        let g = front::grant_to_dom0(ma)?;
        if i == 0 {
            first_indirect_gref = g;
        }
    }
    let features = if sets > 0 {
        features | feature::INDIRECT
    } else {
        features
    };
    let restores = rt::restores();
    let (port, sectors, honoured) = front::handshake(KEY, ring_gref, features, 0)?;
    let indirect = honoured & feature::INDIRECT != 0;
    let persistent = honoured & feature::PERSISTENT != 0;
    out!(
        "blk: connected, {sectors} sectors{}",
        if indirect { ", indirect requests" } else { "" }
    );
    Ok(Front {
        ring,
        fr: FrontRing::new(ring),
        port,
        data_va,
        first_gref,
        indirect_va,
        first_indirect_gref,
        indirect,
        persistent,
        ring_gref,
        sectors,
        pages,
        sets,
        features,
        restores,
        reconnections: 0,
    })
}

/// Connects again after a restore (module docs): grants the same pages under the same
/// references (so outstanding requests' segments still name them), on a fresh ring, with a
/// new port, and waits for a backend as [`connect`] does.
fn reconnect(f: &mut Front) -> Result<(), &'static str> {
    out!("blk: the domain was restored: connecting again");
    if f.pages > MAX_INDIRECT_SEGMENTS {
        // Only the first data pages' VAs are kept (module docs).
        return Err("blk-bench does not reconnect after a restore");
    }
    let restores = rt::restores();
    f.ring.init();
    front::grant_again(f.ring_gref, 0, f.ring as *const BlkRing as u64)?;
    for i in 0..f.pages {
        front::grant_again(f.first_gref + i as u32, 0, f.data_va[i])?;
    }
    for i in 0..f.sets {
        front::grant_again(f.first_indirect_gref + i as u32, 0, f.indirect_va[i])?;
    }
    let (port, sectors, honoured) = front::handshake(KEY, f.ring_gref, f.features, 0)?;
    f.fr = FrontRing::new(f.ring);
    f.port = port;
    f.sectors = sectors;
    f.indirect = honoured & feature::INDIRECT != 0;
    f.persistent = honoured & feature::PERSISTENT != 0;
    f.restores = restores;
    f.reconnections += 1;
    out!("blk: connected again, {sectors} sectors");
    Ok(())
}

/// An indirect request moving 8 sectors per page of data pages `first..first + n` from
/// `sector`, its segments written straight into set `set`'s indirect page (64 at most: the
/// count may say more, for `blk-evil`). `edit` may change each segment as it is written.
fn indirect(
    f: &Front,
    set: usize,
    data_op: u8,
    id: u64,
    sector: u64,
    (first, n): (usize, usize),
    edit: impl Fn(usize, &mut Segment),
) -> Request {
    let page = f.indirect_va[set] as *mut Segment;
    for i in 0..n.min(MAX_INDIRECT_SEGMENTS) {
        let mut s = Segment {
            gref: f.first_gref + (first + i) as u32,
            first_sect: 0,
            last_sect: 7,
            pad: 0,
        };
        edit(i, &mut s);
        // SAFETY: one of our indirect frames, mapped writable for good; 64 segments of 8 bytes
        // fit in it; dom0 reads it (through its read-only mapping of the grant) only while a
        // request naming it is outstanding, and none that names it is.
        unsafe { page.add(i).write_volatile(s) };
    }
    let mut r = Request {
        op: op::INDIRECT,
        indirect_op: data_op,
        nr_segments: n as u8,
        id,
        sector,
        ..Request::default()
    };
    r.seg[0].gref = f.first_indirect_gref + set as u32;
    r
}

/// Sends `req` and waits for its response's status.
/// After a restore it connects again and sends `req` again (a read or write of the same pages
/// gives the same result twice; a response that reached the ring before the save is taken as
/// it is).
fn submit(f: &mut Front, req: Request) -> Result<i16, &'static str> {
    'send: loop {
        while f.restores != rt::restores() {
            reconnect(f)?;
        }
        let port = f.port;
        let fr = &mut f.fr;
        fr.push_request(req).map_err(|_| "ring full")?;
        if fr.push_requests_and_check_notify() {
            let _ = hypercall::evtchn_send(port);
        }
        let end = time::now() + time::us_to_ticks(5_000_000);
        loop {
            match f.fr.take_response() {
                Ok(Some(r)) => return Ok(check_id(r, req.id)),
                // Ask to be notified of the next response (and look again if one raced that).
                Ok(None) if f.fr.final_check_for_responses() => continue,
                Ok(None) => {}
                Err(_) => return Err("the backend corrupted the ring"),
            }
            if f.restores != rt::restores() {
                continue 'send;
            }
            if time::now() > end {
                return Err("no response within 5 s");
            }
            front::wait_port(port, 10);
        }
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

/// A request moving 8 sectors per page of the first 8 data pages.
fn rw(f: &Front, op: u8, id: u64, sector: u64) -> Request {
    Request {
        op,
        nr_segments: MAX_SEGMENTS as u8,
        id,
        sector,
        seg: segments(f.first_gref),
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
    let mut f = match connect(MAX_INDIRECT_SEGMENTS, 1, feature::PERSISTENT) {
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
    if f.indirect {
        if let Err(e) = write_indirect(&mut f, seed + INDIRECT_SEED) {
            return out!("blk: indirect: FAIL: {e}");
        }
        out!(
            "blk: indirect: wrote {} sectors at sector {INDIRECT_AT} in one request, flushed, read back: ok",
            MAX_INDIRECT_SEGMENTS * 8
        );
    } else {
        out!("blk: the backend takes no indirect requests");
    }
    // Persistent grants: dom0 keeps the data pages mapped while connected. A backend that
    // did not say it would (one that copies, in Linux dom0's user space) holds nothing.
    if !f.persistent {
        out!("blk: the backend keeps no pages mapped (no persistent grants)");
    } else if front::try_end_grant(f.first_gref) {
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
    let mut f = match connect(MAX_SEGMENTS, 0, 0) {
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

/// `blk-write`'s indirect part: a 64-page pattern at [`INDIRECT_AT`] in one request, flushed,
/// read back into zeroed pages in one more.
fn write_indirect(f: &mut Front, seed: u64) -> Result<(), alloc_free::Msg> {
    let n = MAX_INDIRECT_SEGMENTS;
    for i in 0..n {
        for (b, x) in page(f, i).iter_mut().enumerate() {
            *x = pattern(seed, i * 4096 + b);
        }
    }
    let w = indirect(f, 0, op::WRITE, 4, INDIRECT_AT, (0, n), |_, _| {});
    let flush = Request {
        op: op::FLUSH,
        id: 5,
        ..Request::default()
    };
    for (what, req) in [("indirect write", w), ("flush", flush)] {
        succeed(f, what, req)?;
    }
    for i in 0..n {
        page(f, i).fill(0);
    }
    read_indirect(f, seed)
}

/// Reads [`INDIRECT_AT`]'s 64 pages in one indirect request and compares them with the
/// pattern of `seed`.
fn read_indirect(f: &mut Front, seed: u64) -> Result<(), alloc_free::Msg> {
    let n = MAX_INDIRECT_SEGMENTS;
    let r = indirect(f, 0, op::READ, 6, INDIRECT_AT, (0, n), |_, _| {});
    succeed(f, "indirect read", r)?;
    compare(f, n, INDIRECT_AT, seed)
}

/// Reads 64 sectors at 0 in one direct request and compares them with the pattern of `seed`.
fn read_and_compare(f: &mut Front, seed: u64) -> Result<(), alloc_free::Msg> {
    succeed(f, "read", rw(f, op::READ, 3, 0))?;
    compare(f, MAX_SEGMENTS, 0, seed)
}

/// Sends `req` and expects status 0.
fn succeed(f: &mut Front, what: &'static str, req: Request) -> Result<(), alloc_free::Msg> {
    match submit(f, req) {
        Ok(0) => Ok(()),
        Ok(s) => Err(alloc_free::Msg::Status(what, s)),
        Err(e) => Err(alloc_free::Msg::Text(e)),
    }
}

/// Compares the first `pages` data pages, read from sector `at`, with the pattern of `seed`.
fn compare(f: &Front, pages: usize, at: u64, seed: u64) -> Result<(), alloc_free::Msg> {
    for i in 0..pages {
        for (b, &x) in page(f, i).iter().enumerate() {
            if x != pattern(seed, i * 4096 + b) {
                return Err(alloc_free::Msg::Mismatch(at + (i * 4096 + b) as u64 / 512));
            }
        }
    }
    Ok(())
}

pub fn read(seed: u64) {
    let mut f = match connect(MAX_INDIRECT_SEGMENTS, 1, feature::PERSISTENT) {
        Ok(f) => f,
        Err(e) => return out!("blk: FAIL: {e}"),
    };
    match read_and_compare(&mut f, seed) {
        Ok(()) => out!("blk: read 64 sectors: pattern {seed} ok"),
        Err(e) => out!("blk: {e}"),
    }
    if f.indirect {
        let s = seed + INDIRECT_SEED;
        match read_indirect(&mut f, s) {
            Ok(()) => out!(
                "blk: indirect: read {} sectors at sector {INDIRECT_AT}: pattern {s} ok",
                MAX_INDIRECT_SEGMENTS * 8
            ),
            Err(e) => out!("blk: indirect: {e}"),
        }
    }
    close();
}

/// `blk-loop <seed> <rounds> [gap_ms]` (module docs).
pub fn rounds(seed: u64, rounds: u64, gap_ms: u64) {
    let mut f = match connect(MAX_SEGMENTS, 0, feature::PERSISTENT) {
        Ok(f) => f,
        Err(e) => return out!("blk-loop: FAIL: {e}"),
    };
    for round in 0..rounds {
        let s = seed + round;
        for i in 0..MAX_SEGMENTS {
            for (b, x) in page(&f, i).iter_mut().enumerate() {
                *x = pattern(s, i * 4096 + b);
            }
        }
        let flush = Request {
            op: op::FLUSH,
            id: 3 * round + 2,
            ..Request::default()
        };
        for (what, req) in [
            ("write", rw(&f, op::WRITE, 3 * round + 1, 0)),
            ("flush", flush),
        ] {
            if let Err(e) = succeed(&mut f, what, req) {
                return out!("blk-loop: FAIL: round {round}: {e}");
            }
        }
        for i in 0..MAX_SEGMENTS {
            page(&f, i).fill(0);
        }
        let read = rw(&f, op::READ, 3 * round + 3, 0);
        if let Err(e) = succeed(&mut f, "read", read).and_then(|()| compare(&f, MAX_SEGMENTS, 0, s))
        {
            return out!("blk-loop: FAIL: round {round}: {e}");
        }
        out!("blk-loop: round {round}: pattern {s} written, flushed, read back: ok");
        if let Err(e) = time::sleep_us(gap_ms * 1000) {
            return out!("blk-loop: FAIL: the timer was refused: {e}");
        }
    }
    out!(
        "blk-loop: {rounds} rounds ok, {} reconnections after restores",
        f.reconnections
    );
    close();
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
