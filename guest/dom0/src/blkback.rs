//! The block backend: serves each domU's blkfront ([`ferrite_abi::blkif`]) from the domU's
//! region of dom0's disk (its `disk=` setting, `DOMCTL DISK`), through dom0's virtio-blk
//! driver.
//!
//! It finds frontends on the device bus ([`ferrite_abi::devbus`]), binds their port, and
//! reaches their ring and data pages by grant copy only: the request slots are copied in, the
//! data copied between the granted pages and a dom0 buffer, the responses and `rsp_prod`
//! copied back. Every request is checked before the disk is touched: a malformed one, one
//! outside the domain's disk or naming a grant that does not allow the access gets an error
//! response; a ring whose indices are impossible is reported and that frontend disconnected.
//! Other frontends are served as before.

use crate::bus::Change;
use crate::events;
use crate::gcopy::{read_from, write_to};
use crate::psci::hypercall_x1;
use crate::virtio::blk::DISK;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use ferrite_abi::blkif::{BlkRing, MAX_SEGMENTS, RING_SLOTS, Request, Response, SECTOR_SIZE, op};
use ferrite_abi::call::{self, domctl};
use ferrite_abi::devbus::{kind, state};
use ferrite_abi::ring::BackRing;
use ferrite_abi::{Errno, evtchn as ev};
use spin::Mutex;

struct Front {
    dom: u16,
    key: u64,
    /// The ring page, mapped in the grant window at `ring_ipa`.
    ring: BackRing<'static, Request, Response, RING_SLOTS>,
    ring_ipa: u64,
    port: u32,
    first: u64,
    sectors: u64,
    served: u64,
}

// SAFETY: the ring view points into the grant window page Ferrite mapped for this frontend,
// valid until `disconnect` unmaps it; `FRONTS` hands it to one vCPU at a time.
unsafe impl Send for Front {}

static FRONTS: Mutex<Vec<Front>> = Mutex::new(Vec::new());
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
    let mut fronts = FRONTS.lock();
    let known = fronts.iter().position(|f| f.dom == dom && f.key == key);
    match (crate::bus::change(dom, key, known.is_some()), known) {
        (Change::Connect { ring, port }, _) => match connect(dom, key, ring, port) {
            Ok(f) => {
                println!(
                    "dom0: blk: dom{dom}: connected, {} sectors at sector {} of dom0's disk",
                    f.sectors, f.first
                );
                fronts.push(f);
            }
            Err(why) => {
                println!("dom0: blk: dom{dom}: not connected: {why}");
                let _ = crate::bus::set_back(dom, key, state::CLOSED, 0);
            }
        },
        (Change::Disconnect, Some(i)) => {
            let f = fronts.remove(i);
            disconnect(&f, "the frontend closed");
        }
        _ => {}
    }
}

fn connect(dom: u16, key: u64, ring: u32, port: u32) -> Result<Front, String> {
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
    if let Err(r) = crate::bus::set_back(dom, key, state::CONNECTED, n) {
        let _ = events::op(ev::CLOSE, local, 0);
        let _ = crate::gcopy::unmap(ring_ipa);
        return Err(alloc::format!("SET_BACK_STATE: {r}"));
    }
    Ok(Front {
        dom,
        key,
        ring: BackRing::new(shared),
        ring_ipa,
        port: local as u32,
        first,
        sectors: n,
        served: 0,
    })
}

fn disconnect(f: &Front, why: &str) {
    let _ = events::op(ev::CLOSE, f.port as u64, 0);
    let _ = crate::gcopy::unmap(f.ring_ipa);
    let _ = crate::bus::set_back(f.dom, f.key, state::CLOSED, 0);
    println!(
        "dom0: blk: dom{}: {why}: disconnected after {} requests",
        f.dom, f.served
    );
}

/// Serves the rings whose port fired (all if `all`), and rescans the bus when it changed.
pub fn service(all: bool) {
    let bus = BUS_PORT.load(core::sync::atomic::Ordering::Acquire);
    if bus != 0 && events::take(bus) {
        scan();
        crate::netback::scan();
    }
    let mut fronts = FRONTS.lock();
    let mut i = 0;
    while i < fronts.len() {
        let f = &mut fronts[i];
        if (all || events::take(f.port))
            && let Err(why) = serve(f)
        {
            let f = fronts.remove(i);
            disconnect(&f, &why);
            continue;
        }
        i += 1;
    }
}

fn serve(f: &mut Front) -> Result<(), String> {
    let mut answered = false;
    loop {
        while let Some(req) = f
            .ring
            .take_request()
            .map_err(|_| "ring corrupt (more requests than slots)".to_string())?
        {
            let status = match handle(f, &req) {
                Ok(()) => 0,
                Err(e) => {
                    println!(
                        "dom0: blk: dom{}: request {} (op {}, sector {}) refused: {e}",
                        f.dom, req.id, req.op, req.sector
                    );
                    e.to_ret() as i16
                }
            };
            let rsp = Response {
                id: req.id,
                op: req.op,
                status,
                ..Response::default()
            };
            // One response per request taken: the slot is always there.
            let _ = f.ring.push_response(rsp);
            f.served += 1;
            answered = true;
        }
        // Drained: ask to be told of the next request, and look once more for one that raced.
        if !f.ring.final_check_for_requests() {
            break;
        }
    }
    if answered && f.ring.push_responses_and_check_notify() {
        let _ = events::op(ev::SEND, f.port as u64, 0);
    }
    Ok(())
}

fn handle(f: &Front, req: &Request) -> Result<(), Errno> {
    let mut disk = DISK.lock();
    let disk = disk.as_mut().ok_or(Errno::NoEnt)?;
    match req.op {
        op::FLUSH => return disk.flush().map_err(|_| Errno::Busy),
        op::READ | op::WRITE => {}
        _ => return Err(Errno::Inval),
    }
    let n = req.nr_segments as usize;
    if n == 0 || n > MAX_SEGMENTS {
        return Err(Errno::Inval);
    }
    let segs = &req.seg[..n];
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
    if req
        .sector
        .checked_add(total)
        .is_none_or(|end| end > f.sectors)
    {
        return Err(Errno::Inval);
    }
    // The segments follow each other on the disk: one disk request for all of them (up to
    // 32 KiB), one grant copy per segment.
    let write = req.op == op::WRITE;
    let mut buf = alloc::vec![0u8; total as usize * SECTOR_SIZE as usize];
    let sector = f.first + req.sector;
    if !write {
        disk.io(false, sector, &mut buf).map_err(|_| Errno::Busy)?;
    }
    let mut at = 0;
    for s in segs {
        let len = (s.last_sect - s.first_sect + 1) as usize * SECTOR_SIZE as usize;
        let off = s.first_sect as usize * SECTOR_SIZE as usize;
        let b = &mut buf[at..at + len];
        if write {
            read_from(f.dom, s.gref, off, b)?;
        } else {
            write_to(f.dom, s.gref, off, b)?;
        }
        at += len;
    }
    if write {
        disk.io(true, sector, &mut buf).map_err(|_| Errno::Busy)?;
    }
    Ok(())
}
