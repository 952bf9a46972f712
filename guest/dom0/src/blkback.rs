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

use crate::events;
use crate::gcopy::{read_from, read_pod, write_pod, write_to};
use crate::psci::{hypercall, hypercall_x1};
use crate::virtio::blk::DISK;
use alloc::string::String;
use alloc::vec::Vec;
use ferrite_abi::blkif::{
    MAX_SEGMENTS, OFFSET_REQ_EVENT, OFFSET_REQ_PROD, OFFSET_RSP_PROD, OFFSET_SLOTS, RING_SLOTS,
    Request, Response, SECTOR_SIZE, SLOT_SIZE, op,
};
use ferrite_abi::call::{self, domctl};
use ferrite_abi::devbus::{self, kind, state};
use ferrite_abi::{Errno, evtchn as ev};
use spin::Mutex;

struct Front {
    dom: u16,
    key: u64,
    ring: u32,
    port: u32,
    first: u64,
    sectors: u64,
    req_cons: u32,
    rsp_prod: u32,
    served: u64,
}

static FRONTS: Mutex<Vec<Front>> = Mutex::new(Vec::new());
/// dom0's port for the device bus's virtual IRQ, 0 until bound.
static BUS_PORT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

fn device_op(cmd: u64, a: u64, b: u64, c: u64, d: u64) -> i64 {
    crate::psci::hypercall5(call::DEVICE_OP, cmd, a, b, c, d)
}

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
    let mut dom = 0u64;
    loop {
        let next = hypercall(call::DOMCTL, domctl::NEXT_DOMAIN, dom, 0);
        if next < 0 {
            break;
        }
        dom = next as u64;
        let mut key = 0u64;
        loop {
            let k = device_op(devbus::NEXT, dom, key, 0, 0);
            if k < 0 {
                break;
            }
            key = k as u64;
            if devbus::kind_of(key) == kind::BLOCK {
                consider(dom as u16, key);
            }
        }
    }
}

fn consider(dom: u16, key: u64) {
    let mut regs = [0u64; 3];
    let st = crate::psci::hypercall_regs(call::DEVICE_OP, devbus::GET, dom as u64, key, &mut regs);
    if st < 0 {
        return;
    }
    let (front, back) = ((st & 0xff) as u8, ((st >> 8) & 0xff) as u8);
    let (ring, port) = (regs[0] as u32, regs[1] as u32);
    let mut fronts = FRONTS.lock();
    let known = fronts.iter().position(|f| f.dom == dom && f.key == key);
    match (front, known) {
        (state::INITIALISED, None) if back != state::CONNECTED && back != state::CLOSED => {
            match connect(dom, key, ring, port) {
                Ok(f) => {
                    println!(
                        "dom0: blk: dom{dom}: connected, {} sectors at sector {} of dom0's disk",
                        f.sectors, f.first
                    );
                    fronts.push(f);
                }
                Err(why) => {
                    println!("dom0: blk: dom{dom}: not connected: {why}");
                    device_op(
                        devbus::SET_BACK_STATE,
                        dom as u64,
                        key,
                        state::CLOSED as u64,
                        0,
                    );
                }
            }
        }
        (state::CLOSING | state::CLOSED, Some(i)) => {
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
    let local = events::op(ev::BIND_INTERDOMAIN, dom as u64, port as u64)
        .map_err(|e| alloc::format!("binding its port {port}: {e}"))?;
    let r = device_op(
        devbus::SET_BACK_STATE,
        dom as u64,
        key,
        state::CONNECTED as u64,
        n,
    );
    if r < 0 {
        let _ = events::op(ev::CLOSE, local, 0);
        return Err(alloc::format!("SET_BACK_STATE: {r}"));
    }
    Ok(Front {
        dom,
        key,
        ring,
        port: local as u32,
        first,
        sectors: n,
        req_cons: 0,
        rsp_prod: 0,
        served: 0,
    })
}

fn disconnect(f: &Front, why: &str) {
    let _ = events::op(ev::CLOSE, f.port as u64, 0);
    device_op(
        devbus::SET_BACK_STATE,
        f.dom as u64,
        f.key,
        state::CLOSED as u64,
        0,
    );
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
        let req_prod = req_prod(f)?;
        if req_prod == f.req_cons {
            // Drained: ask for a notification at the next request (Xen's
            // RING_FINAL_CHECK_FOR_REQUESTS), then look once more for one that raced it.
            let next = f.req_cons.wrapping_add(1).to_le_bytes();
            write_to(f.dom, f.ring, OFFSET_REQ_EVENT, &next)
                .map_err(|e| alloc::format!("writing its ring: {e}"))?;
            if req_prod_of(f)? == f.req_cons {
                break;
            }
            continue;
        }
        answered |= serve_batch(f, req_prod)?;
    }
    if answered {
        write_to(f.dom, f.ring, OFFSET_RSP_PROD, &f.rsp_prod.to_le_bytes())
            .map_err(|e| alloc::format!("publishing responses: {e}"))?;
        let _ = events::op(ev::SEND, f.port as u64, 0);
    }
    Ok(())
}

fn req_prod_of(f: &Front) -> Result<u32, String> {
    let mut hdr = [0u8; 4];
    read_from(f.dom, f.ring, OFFSET_REQ_PROD, &mut hdr)
        .map_err(|e| alloc::format!("reading its ring: {e}"))?;
    Ok(u32::from_le_bytes(hdr))
}

/// The front end's producer index, checked: never more outstanding requests than slots.
fn req_prod(f: &Front) -> Result<u32, String> {
    let req_prod = req_prod_of(f)?;
    if req_prod.wrapping_sub(f.rsp_prod) as usize > RING_SLOTS {
        return Err(alloc::format!(
            "ring corrupt (req_prod {req_prod}, {} answered)",
            f.rsp_prod
        ));
    }
    Ok(req_prod)
}

/// Answers the requests up to `req_prod`; true if there were any.
fn serve_batch(f: &mut Front, req_prod: u32) -> Result<bool, String> {
    let mut answered = false;
    while f.req_cons != req_prod {
        let slot = OFFSET_SLOTS + (f.req_cons as usize % RING_SLOTS) * SLOT_SIZE;
        let req: Request =
            read_pod(f.dom, f.ring, slot).map_err(|e| alloc::format!("reading a request: {e}"))?;
        f.req_cons = f.req_cons.wrapping_add(1);
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
        // Responses go in the slot of the oldest unanswered request, as in Xen.
        let rslot = OFFSET_SLOTS + (f.rsp_prod as usize % RING_SLOTS) * SLOT_SIZE;
        write_pod(f.dom, f.ring, rslot, &rsp)
            .map_err(|e| alloc::format!("writing a response: {e}"))?;
        f.rsp_prod = f.rsp_prod.wrapping_add(1);
        f.served += 1;
        answered = true;
    }
    Ok(answered)
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
