//! The block backend: serves each domU's blkfront ([`ferrite_abi::blkif`]) from the domU's
//! region of dom0's disk (its `disk=` setting, `DOMCTL DISK`), through dom0's virtio-blk
//! driver.
//!
//! It finds frontends on the device bus ([`ferrite_abi::devbus`]), binds their port, and maps
//! their ring page through Ferrite's grant window. Data moves without a copy: each request's
//! granted pages are mapped too (writable for a read from the disk, read-only for a write to
//! it) and the disk's DMA goes straight into or out of them, at the machine addresses Ferrite
//! returned. The mappings are kept for the next requests, up to a ring's worth of pages per
//! frontend, until it disconnects (Xen's persistent grants): an unmap invalidates the page in
//! every CPU's TLB, which costs more than the I/O. So a connected frontend cannot end the grant
//! of a page it used for I/O (docs/io.md). Several requests are at the disk at once, from every
//! frontend, and each is answered (by its id) as it completes. A FLUSH is a barrier: nothing
//! later is taken from that ring until everything before it has completed and the disk's cache
//! has been flushed.
//!
//! A frontend that asks for [`feature::INDIRECT`] may send requests of up to 64 pages, their
//! segments in a granted page ([`op::INDIRECT`]): blkback maps that page (read-only, through the
//! same cache as data pages), copies the segments out and lets go of it before the request goes
//! on, as a direct request.
//!
//! Every request is checked before the disk is touched: a malformed one, one outside the
//! domain's disk or naming a grant that does not allow the access gets an error response (a
//! mapping that fails half-way is undone first); a ring whose indices are impossible is
//! reported and that frontend disconnected (its requests still at the disk are left to finish
//! and their pages unmapped then, unanswered). Other frontends are served as before.
//!
//! The work is done in dom0's idle loop ([`service`]): its wake-ups are the frontends' events
//! and the disk's completion interrupt.

use crate::bus::Change;
use crate::events;
use crate::psci::hypercall_x1;
mod tables;

use crate::virtio::blk::{Buf, DISK, Disk, MAX_BUFS, Op};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use ferrite_abi::blkif::{
    BlkRing, EIO, MAX_INDIRECT_SEGMENTS, RING_SLOTS, Request, Response, SECTOR_SIZE, Segment, op,
};
use ferrite_abi::call::{self, domctl};
use ferrite_abi::devbus::{feature, kind, state};
use ferrite_abi::ring::BackRing;
use ferrite_abi::{Errno, evtchn as ev};
use spin::Mutex;
use tables::{ByGref, Held, Hold, PagesByTag, Slab};

struct Front {
    /// Names this connection in [`Io`]s, which may outlive it.
    serial: u64,
    dom: u16,
    key: u64,
    /// The ring page, mapped in the grant window at `ring_ipa`.
    ring: BackRing<'static, Request, Response, RING_SLOTS>,
    ring_ipa: u64,
    port: u32,
    first: u64,
    sectors: u64,
    served: u64,
    /// Its requests at the disk.
    in_flight: usize,
    /// The most of its requests that were at the disk at once.
    peak: usize,
    /// A request taken from the ring for which the disk's queue had no room: the next one to
    /// start, once a completion makes room.
    stalled: Option<Request>,
    /// A FLUSH taken from the ring (its id): nothing more is taken until it completed.
    barrier: Option<u64>,
    /// The barrier's flush is at the disk.
    flushing: bool,
    /// Requests may be waiting in the ring that were left there (the disk's queue was full, or
    /// a barrier completed): look again without an event.
    more: bool,
    /// Responses pushed but not yet published.
    answered: bool,
    /// The frontend asked for persistent grants ([`feature::PERSISTENT`]): its data pages stay
    /// mapped in `cache`. Otherwise each request maps its own and unmaps them before it is
    /// answered, so the frontend may end their grants once it has the response.
    persistent: bool,
    /// The frontend asked for indirect requests ([`feature::INDIRECT`]), and they were granted.
    indirect: bool,
    /// Data pages kept mapped between requests, by grant reference (persistent grants).
    cache: ByGref<Cached>,
}

/// A data page mapped for as long as its frontend is connected.
struct Cached {
    ipa: u64,
    writable: bool,
    /// Requests at the disk that use it.
    users: u32,
}

/// Data pages kept mapped per frontend: as many as a full ring of requests can name, with
/// their indirect pages.
const CACHE_PAGES: usize = RING_SLOTS * (MAX_INDIRECT_SEGMENTS + 1);

/// Pages one request may hold at the disk: an indirect request's.
const MAX_PAGES: usize = MAX_INDIRECT_SEGMENTS;
const _: () = assert!(MAX_PAGES <= MAX_BUFS);

/// The features this backend honours when a frontend asks for them.
const FEATURES: u64 = feature::PERSISTENT | feature::INDIRECT;

/// A request at the disk.
struct Io {
    serial: u64,
    id: u64,
    op: u8,
    /// Its data pages: the first `pages` of its set in [`Backend::held`].
    pages: u8,
}

/// Counter ticks spent serving rings (taking, checking, mapping and submitting requests) and
/// answering completions, and the requests each covered, since the last report: the CPU per
/// request (instructions under -icount), against dom0 reading directly (`make bench`).
#[derive(Default)]
struct Cpu {
    serve: u64,
    begun: u64,
    answer: u64,
    answered: u64,
}

/// What a request is taken apart into on its way to the disk, kept here rather than built on
/// the stack per request: two arrays of 64 are more to clear than the request is to check.
/// Only the request's first entries are written and read.
struct Scratch {
    /// Its data buffers, for the disk.
    bufs: [Buf; MAX_PAGES],
    /// An indirect request's segments, copied out of its indirect page.
    segs: [Segment; MAX_INDIRECT_SEGMENTS],
}

/// Cached pages of frontends that disconnected while requests using them were at the disk:
/// (the frontend's serial, grant reference) -> (address, requests still using it).
type Orphans = BTreeMap<(u64, u32), (u64, u32)>;

struct Backend {
    fronts: Vec<Front>,
    cpu: Cpu,
    /// By the tag it has at the disk (its slot).
    io: Slab<Io>,
    /// How each request at the disk holds its pages, by its tag.
    held: PagesByTag<MAX_PAGES>,
    scratch: Scratch,
    orphans: Orphans,
    next_serial: u64,
}

// SAFETY: the ring views point into grant-window pages Ferrite mapped for their frontend,
// valid until `disconnect` unmaps them; `BACKEND` hands them to one vCPU at a time.
unsafe impl Send for Backend {}

static BACKEND: Mutex<Backend> = Mutex::new(Backend {
    fronts: Vec::new(),
    cpu: Cpu {
        serve: 0,
        begun: 0,
        answer: 0,
        answered: 0,
    },
    io: Slab::new(),
    held: PagesByTag::new(),
    scratch: Scratch {
        bufs: [Buf { addr: 0, len: 0 }; MAX_PAGES],
        segs: [Segment {
            gref: 0,
            first_sect: 0,
            last_sect: 0,
            pad: 0,
        }; MAX_INDIRECT_SEGMENTS],
    },
    orphans: BTreeMap::new(),
    next_serial: 0,
});
/// dom0's port for the device bus's virtual IRQ, 0 until bound.
static BUS_PORT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Binds the device-bus virtual IRQ and connects the frontends already waiting.
pub fn start() {
    if !events::ready() {
        return;
    }
    match events::op(ev::BIND_VIRQ, ev::virq::DEVBUS as u64, 0) {
        Ok(p) => BUS_PORT.store(p as u32, core::sync::atomic::Ordering::Release),
        Err(e) => println!("dom0: backends: cannot bind the device bus VIRQ: {e}"),
    }
    scan();
    crate::netback::start();
}

/// Walks the device bus: connects new block frontends, drops closed ones.
fn scan() {
    crate::bus::for_each(kind::BLOCK, consider);
}

fn consider(dom: u16, key: u64) {
    let mut b = BACKEND.lock();
    let known = b.fronts.iter().position(|f| f.dom == dom && f.key == key);
    match (crate::bus::change(dom, key, known.is_some()), known) {
        (
            Change::Connect {
                ring,
                port,
                features,
                ..
            },
            _,
        ) => {
            let serial = b.next_serial;
            b.next_serial += 1;
            match connect(serial, dom, key, ring, port, features & FEATURES) {
                Ok(f) => {
                    println!(
                        "dom0: blk: dom{dom}: connected, {} sectors at sector {} of dom0's disk, {}{}",
                        f.sectors,
                        f.first,
                        if f.persistent {
                            "persistent grants"
                        } else {
                            "data pages mapped per request"
                        },
                        if f.indirect {
                            ", indirect requests"
                        } else {
                            ""
                        }
                    );
                    b.fronts.push(f);
                }
                Err(why) => {
                    println!("dom0: blk: dom{dom}: not connected: {why}");
                    let _ = crate::bus::set_back(dom, key, state::CLOSED, 0);
                }
            }
        }
        (Change::Disconnect, Some(i)) => {
            let f = b.fronts.remove(i);
            disconnect(f, &mut b.orphans, "the frontend closed");
            let c = core::mem::take(&mut b.cpu);
            println!(
                "dom0: blk: CPU per request: take and submit {} ns ({} requests), answer {} ns ({})",
                crate::timer::ticks_to_ns(c.serve) / c.begun.max(1),
                c.begun,
                crate::timer::ticks_to_ns(c.answer) / c.answered.max(1),
                c.answered
            );
        }
        _ => {}
    }
}

fn connect(
    serial: u64,
    dom: u16,
    key: u64,
    ring: u32,
    port: u32,
    features: u64,
) -> Result<Front, String> {
    let mut n = 0u64;
    let first = hypercall_x1(call::DOMCTL, domctl::DISK, dom as u64, 0, &mut n);
    if first < 0 {
        return Err("it has no disk= setting".into());
    }
    let Some(capacity) = DISK.lock().as_ref().map(|d| d.capacity) else {
        return Err("dom0 has no disk".into());
    };
    let first = first as u64;
    if first.checked_add(n).is_none_or(|end| end > capacity) {
        return Err(alloc::format!(
            "its disk (sectors {first}+{n}) is outside dom0's disk of {capacity} sectors"
        ));
    }
    // The ring is read for every request: map it rather than copy it.
    let (ring_ipa, _) = crate::gcopy::map(dom, ring, false)
        .map_err(|e| alloc::format!("mapping its ring (grant {ring}): {e}"))?;
    // SAFETY: Ferrite mapped the granted ring page at `ring_ipa` (in the grant window, which
    // dom0's map covers), writable, until `disconnect` unmaps it; the ring holds only Pod
    // slots and atomics, and every index the peer writes is checked by `BackRing`.
    let shared = unsafe { &*(ring_ipa as *const BlkRing) };
    let local = match events::op(ev::BIND_INTERDOMAIN, dom as u64, port as u64) {
        Ok(l) => l,
        Err(e) => {
            let _ = crate::gcopy::unmap(ring_ipa);
            return Err(alloc::format!("binding its port {port}: {e}"));
        }
    };
    if let Err(r) = crate::bus::set_back_features(dom, key, state::CONNECTED, n, features) {
        let _ = events::op(ev::CLOSE, local, 0);
        let _ = crate::gcopy::unmap(ring_ipa);
        return Err(alloc::format!("SET_BACK_STATE: {r}"));
    }
    Ok(Front {
        serial,
        dom,
        key,
        ring: BackRing::new(shared),
        ring_ipa,
        port: local as u32,
        first,
        sectors: n,
        served: 0,
        in_flight: 0,
        peak: 0,
        stalled: None,
        barrier: None,
        flushing: false,
        more: false,
        answered: false,
        persistent: features & feature::PERSISTENT != 0,
        indirect: features & feature::INDIRECT != 0,
        cache: ByGref::new(),
    })
}

/// Drops a frontend and unmaps its pages, but those its requests still at the disk use: they
/// stay mapped until the disk has finished with them (it may still be writing them), and those
/// requests are not answered.
fn disconnect(f: Front, orphans: &mut Orphans, why: &str) {
    let _ = events::op(ev::CLOSE, f.port as u64, 0);
    let _ = crate::gcopy::unmap(f.ring_ipa);
    for (gref, c) in f.cache.iter() {
        if c.users == 0 {
            let _ = crate::gcopy::unmap(c.ipa);
        } else {
            orphans.insert((f.serial, gref), (c.ipa, c.users));
        }
    }
    let _ = crate::bus::set_back(f.dom, f.key, state::CLOSED, 0);
    println!(
        "dom0: blk: dom{}: {why}: disconnected after {} requests (at most {} at the disk at once)",
        f.dom, f.served, f.peak
    );
}

/// Disk rounds one [`service`] call may wait for (see there).
const ROUNDS: usize = 8;

/// Takes the disk's completions and publishes their responses, then serves the rings whose port
/// fired (all if `all`, and those with requests left waiting), and rescans the bus when it
/// changed. Responses go out before new requests are taken: a frontend turns them into its
/// next requests while this submits those already queued (measured: a domU's rate rose from
/// 1.3 to 1.5 GB/s beside dom0, from 1.6 to 2.2 GB/s on a pCPU of its own; docs/io.md).
///
/// While requests are at the disk it waits for them here, up to [`ROUNDS`] times (each at
/// most one disk round trip; the other back ends wait that long), answering each batch and
/// taking what the frontends queued meanwhile, rather than going back round dom0's idle loop
/// between batches: measured, that roughly doubled a domU's rate (docs/io.md).
pub fn service(all: bool) {
    let bus = BUS_PORT.load(core::sync::atomic::Ordering::Acquire);
    if bus != 0 && events::take(bus) {
        scan();
        crate::netback::scan();
    }
    // The order every path takes: the backend, then the disk (`connect` runs under the first).
    let mut b = BACKEND.lock();
    let mut disk = DISK.lock();
    let Some(disk) = disk.as_mut() else { return };
    let b = &mut *b;
    let mut all = all;
    let in_flight = |b: &Backend| b.fronts.iter().map(|f| f.in_flight as u64).sum::<u64>();
    let served = |b: &Backend| b.fronts.iter().map(|f| f.served).sum::<u64>();
    for _ in 0..ROUNDS {
        let (t0, s0) = (crate::timer::counter(), served(b));
        complete(b, disk);
        let (t1, s1, i1) = (crate::timer::counter(), served(b), in_flight(b));
        // Answer before taking more: a frontend on another pCPU turns its responses into new
        // requests while this one submits the requests already queued.
        publish(&mut b.fronts);
        let mut i = 0;
        while i < b.fronts.len() {
            let f = &mut b.fronts[i];
            let due = all || f.more || events::take(f.port);
            if due && let Err(why) = serve(f, disk, &mut b.io, &mut b.held, &mut b.scratch) {
                let f = b.fronts.remove(i);
                disconnect(f, &mut b.orphans, &why);
                continue;
            }
            i += 1;
        }
        let (t2, i2) = (crate::timer::counter(), in_flight(b));
        b.cpu.serve += t2 - t1;
        b.cpu.begun += i2.saturating_sub(i1);
        b.cpu.answer += t1 - t0;
        b.cpu.answered += s1 - s0;
        disk.kick();
        publish(&mut b.fronts);
        all = false;
        if b.io.is_empty() || !disk.wait() {
            break;
        }
    }
}

/// Publishes the responses pushed since the last call, notifying each frontend that asked.
fn publish(fronts: &mut [Front]) {
    for f in fronts {
        if core::mem::take(&mut f.answered) && f.ring.push_responses_and_check_notify() {
            let _ = events::op(ev::SEND, f.port as u64, 0);
        }
    }
}

/// Answers every request the disk finished, and unmaps its pages.
fn complete(b: &mut Backend, disk: &mut Disk) {
    while let Some((tag, result)) = disk.poll() {
        let Some(io) = b.io.remove(tag) else {
            continue;
        };
        let held = &b.held.get(tag)[..io.pages as usize];
        let front = b.fronts.iter_mut().find(|f| f.serial == io.serial);
        let Some(f) = front else {
            // Disconnected meanwhile: the pages go now.
            for &h in held {
                match h.get() {
                    Hold::Own(ipa) => drop(crate::gcopy::unmap(ipa)),
                    Hold::Cached(g) => release_orphan(&mut b.orphans, io.serial, g),
                    Hold::Nothing => {}
                }
            }
            continue;
        };
        release(f, held);
        f.in_flight -= 1;
        let status = match result {
            Ok(()) => 0,
            Err(e) => {
                println!(
                    "dom0: blk: dom{}: request {} (op {}): the disk failed: {e}",
                    f.dom, io.id, io.op
                );
                EIO
            }
        };
        if io.op == op::FLUSH {
            f.barrier = None;
            f.flushing = false;
        }
        // A barrier waiting for this one to finish, or requests left behind it: look again.
        f.more = true;
        respond(f, io.id, io.op, status);
    }
}

/// A disconnected frontend's request is done with cached page `gref`.
fn release_orphan(orphans: &mut Orphans, serial: u64, gref: u32) {
    if let Some(o) = orphans.get_mut(&(serial, gref)) {
        o.1 -= 1;
        if o.1 == 0 {
            let _ = crate::gcopy::unmap(o.0);
            orphans.remove(&(serial, gref));
        }
    }
}

/// A request is done with its pages: cached ones stay mapped, its own are unmapped.
fn release(f: &mut Front, held: &[Held]) {
    for h in held {
        match h.get() {
            Hold::Own(ipa) => drop(crate::gcopy::unmap(ipa)),
            Hold::Cached(g) => {
                if let Some(c) = f.cache.get_mut(g) {
                    c.users -= 1;
                }
            }
            Hold::Nothing => {}
        }
    }
}

/// Maps (or finds mapped) `f`'s data page `gref`, writable if `write`: (how it is held, its
/// address in the grant window).
///
/// Inlined for the case almost every page takes, a persistent frontend's page already in the
/// cache as the request needs it; the mapping is out of line ([`map_page`]). All out of line,
/// with a call and a 24-byte result in memory per page, it cost twice the lookup (measured
/// under `-icount`, docs/io.md).
#[inline(always)]
fn hold(f: &mut Front, gref: u32, write: bool) -> Result<(Held, u64), Errno> {
    if f.persistent
        && let Some(c) = f.cache.get_mut(gref)
        && (c.writable || !write)
    {
        c.users += 1;
        return Ok((Held::cached(gref), c.ipa));
    }
    map_page(f, gref, write)
}

/// [`hold`] for a page that is not in the cache as it is needed: maps it (and caches it, for
/// a persistent frontend).
#[inline(never)]
fn map_page(f: &mut Front, gref: u32, write: bool) -> Result<(Held, u64), Errno> {
    if !f.persistent {
        let (ipa, _) = crate::gcopy::map(f.dom, gref, !write)?;
        return Ok((Held::own(ipa), ipa));
    }
    if let Some(c) = f.cache.get_mut(gref) {
        // Cached read-only, and this request needs it writable (a read from the disk).
        if c.users > 0 {
            // Mapped read-only for a request at the disk: this one gets its own mapping.
            let (ipa, _) = crate::gcopy::map(f.dom, gref, false)?;
            return Ok((Held::own(ipa), ipa));
        }
        // Read-only and unused: mapped again, writable.
        let _ = crate::gcopy::unmap(c.ipa);
        f.cache.remove(gref);
    }
    if f.cache.len() >= CACHE_PAGES {
        // Full (a frontend that uses more pages than a ring can name): make room if a page is
        // unused, else this request maps its own.
        let unused = f.cache.iter().find(|(_, c)| c.users == 0).map(|(g, _)| g);
        match unused {
            Some(g) => {
                if let Some(c) = f.cache.remove(g) {
                    let _ = crate::gcopy::unmap(c.ipa);
                }
            }
            None => {
                let (ipa, _) = crate::gcopy::map(f.dom, gref, !write)?;
                return Ok((Held::own(ipa), ipa));
            }
        }
    }
    let (ipa, _) = crate::gcopy::map(f.dom, gref, !write)?;
    let cached = Cached {
        ipa,
        writable: write,
        users: 1,
    };
    if f.cache.insert(gref, cached).is_err() {
        // Beyond any grant table: Ferrite mapped it anyway? Keep it for this request only.
        return Ok((Held::own(ipa), ipa));
    }
    Ok((Held::cached(gref), ipa))
}

fn respond(f: &mut Front, id: u64, op: u8, status: i16) {
    let rsp = Response {
        id,
        op,
        status,
        ..Response::default()
    };
    // One response per request taken, and at most a ring of requests is taken: the slot is
    // always there.
    let _ = f.ring.push_response(rsp);
    f.served += 1;
    f.answered = true;
}

/// Takes the frontend's requests while the disk has room, and starts each.
fn serve(
    f: &mut Front,
    disk: &mut Disk,
    io: &mut Slab<Io>,
    held: &mut PagesByTag<MAX_PAGES>,
    scratch: &mut Scratch,
) -> Result<(), String> {
    f.more = false;
    loop {
        if let Some(id) = f.barrier {
            // Everything before the flush has completed: now the flush itself (when the
            // disk's queue has room; a completion brings us back).
            if f.in_flight == 0 && !f.flushing {
                if !disk.room(0) {
                    f.more = true;
                    return Ok(());
                }
                start_flush(f, disk, io, id);
                // Refused: the ring's next requests may go on.
                if f.barrier.is_none() {
                    continue;
                }
            }
            return Ok(());
        }
        let req = match f.stalled.take() {
            Some(req) => req,
            None => match f
                .ring
                .take_request()
                .map_err(|_| "ring corrupt (more requests than slots)".to_string())?
            {
                Some(req) => req,
                // Drained: ask to be told of the next request, and look once more for one
                // that raced.
                None if f.ring.final_check_for_requests() => continue,
                None => return Ok(()),
            },
        };
        // Room for this request's pages, not for the largest a request may have: on a disk
        // without indirect descriptors each page takes a descriptor of the queue, and keeping
        // room for 64 let seven 8-page requests in where twelve fit.
        if req.op != op::FLUSH && !disk.room(pages_of(&req)) {
            // Come back when a completion makes room.
            f.stalled = Some(req);
            f.more = true;
            return Ok(());
        }
        begin(f, disk, io, held, scratch, &req);
    }
}

/// The data pages `req` may hold at the disk: its segment count, at most [`MAX_PAGES`] (a
/// request claiming more is refused before it reaches the disk).
fn pages_of(req: &Request) -> usize {
    (req.nr_segments as usize).min(MAX_PAGES)
}

fn start_flush(f: &mut Front, disk: &mut Disk, io: &mut Slab<Io>, id: u64) {
    let tag = io.next_key();
    // SAFETY: a flush has no buffers.
    match unsafe { disk.submit(tag, Op::Flush, 0, &[]) } {
        Ok(()) => {
            io.insert(Io {
                serial: f.serial,
                id,
                op: op::FLUSH,
                pages: 0,
            });
            f.in_flight += 1;
            f.flushing = true;
        }
        Err(e) => {
            println!("dom0: blk: dom{}: flush {id}: {e}", f.dom);
            f.barrier = None;
            respond(f, id, op::FLUSH, EIO);
        }
    }
}

/// Checks a request, maps its pages and hands it to the disk; answers it at once if it is
/// refused.
fn begin(
    f: &mut Front,
    disk: &mut Disk,
    io: &mut Slab<Io>,
    sets: &mut PagesByTag<MAX_PAGES>,
    scratch: &mut Scratch,
    req: &Request,
) {
    if req.op == op::FLUSH {
        f.barrier = Some(req.id);
        return;
    }
    let tag = io.next_key();
    let held = sets.get_mut(tag);
    let Scratch { bufs, segs } = scratch;
    let mapped = if req.op == op::INDIRECT {
        indirect_segments(f, req, segs).and_then(|n| {
            req.check_indirect(&segs[..n], f.sectors)?;
            map_segments(f, req.indirect_op, &segs[..n], held, bufs)
        })
    } else {
        // The same checks as every backend's (Linux dom0's `ferrite-ctl blkback` too).
        req.check(f.sectors).and_then(|_| {
            let segs = &req.seg[..req.nr_segments as usize];
            map_segments(f, req.op, segs, held, bufs)
        })
    };
    match mapped {
        Ok(n) => {
            let dir = if req.data_op() == op::WRITE {
                Op::Write
            } else {
                Op::Read
            };
            // SAFETY: the buffers are the granted pages mapped just now; they stay mapped
            // until `complete` has this tag's completion, and dom0 does not touch them.
            match unsafe { disk.submit(tag, dir, f.first + req.sector, &bufs[..n]) } {
                Ok(()) => {
                    io.insert(Io {
                        serial: f.serial,
                        id: req.id,
                        op: req.op,
                        pages: n as u8,
                    });
                    f.in_flight += 1;
                    f.peak = f.peak.max(f.in_flight);
                }
                Err(e) => {
                    println!("dom0: blk: dom{}: request {}: {e}", f.dom, req.id);
                    release(f, &held[..n]);
                    respond(f, req.id, req.op, EIO);
                }
            }
        }
        Err(e) => {
            println!(
                "dom0: blk: dom{}: request {} (op {}, sector {}) refused: {e}",
                f.dom, req.id, req.op, req.sector
            );
            respond(f, req.id, req.op, e.to_ret() as i16);
        }
    }
}

/// An [`op::INDIRECT`] request's segments, read from its indirect page into `segs`: how many
/// are the request's. The page is held (read-only) only while they are copied out:
/// the frontend may reuse it once it has the response, and nothing later reads it again.
fn indirect_segments(
    f: &mut Front,
    req: &Request,
    segs: &mut [Segment; MAX_INDIRECT_SEGMENTS],
) -> Result<usize, Errno> {
    if !f.indirect {
        return Err(Errno::Inval);
    }
    let n = req.indirect_segments()?;
    let (h, ipa) = hold(f, req.seg[0].gref, false)?;
    // Read as words: a volatile read of a `Segment` is one load per field.
    let page = ipa as *const u64;
    for (i, s) in segs[..n].iter_mut().enumerate() {
        // The frontend may change the page meanwhile: each segment is read once, and only the
        // copy is checked and used.
        // SAFETY: the granted page is mapped at `ipa` (grant window) until `release` below; `n`
        // segments of 8 bytes fit in it, at 8-byte alignment.
        let word = unsafe { page.add(i).read_volatile() };
        // SAFETY: a `Segment` is 8 bytes of integers (`Pod`): any bits are one.
        *s = unsafe { core::mem::transmute::<u64, Segment>(word) };
    }
    release(f, &[h]);
    Ok(n)
}

/// Holds the pages of a checked READ or WRITE's segments mapped: how in `held`, the data
/// buffers in them in `bufs` (filled in place: returned, the two arrays were copied again).
/// Returns how many. A mapping that fails lets go of those held before it.
fn map_segments(
    f: &mut Front,
    data_op: u8,
    segs: &[Segment],
    held: &mut [Held; MAX_PAGES],
    bufs: &mut [Buf; MAX_PAGES],
) -> Result<usize, Errno> {
    let write = match data_op {
        op::READ => false,
        op::WRITE => true,
        _ => return Err(Errno::Inval),
    };
    if segs.len() > MAX_PAGES {
        return Err(Errno::Inval);
    }
    for (i, s) in segs.iter().enumerate() {
        // A write to the disk only reads the page: a read-only grant is enough.
        match hold(f, s.gref, !write) {
            Ok((h, ipa)) => {
                held[i] = h;
                bufs[i] = Buf {
                    addr: ipa + s.first_sect as u64 * SECTOR_SIZE,
                    len: (s.last_sect - s.first_sect + 1) as usize * SECTOR_SIZE as usize,
                };
            }
            Err(e) => {
                release(f, &held[..i]);
                return Err(e);
            }
        }
    }
    Ok(segs.len())
}
