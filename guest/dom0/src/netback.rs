//! The network backend: a switch between domUs' netfronts ([`ferrite_abi::netif`]).
//!
//! Each connected frontend has a transmit and a receive ring in one page it granted to dom0,
//! and a MAC address ([`netif::backend_mac`]: its domain's, or the one it asked for, e.g. the
//! one it kept across a restore), which the backend's device-bus parameter tells it.
//! A transmitted frame goes to the frontend its destination MAC address names, or to every other
//! domU for a broadcast: one grant copy from the sender's page into dom0, where it is checked,
//! and one from there into a receive buffer each receiver posted, so what is delivered is what
//! was checked whatever the sender writes to its page meanwhile (measured: as fast as one copy
//! straight from page to page with the header read apart, which could be raced). Requests are
//! checked first: a bad length or offset, a grant
//! that does not allow the access, or a frame whose source address is not the sender's (it
//! would have its answers sent to another), gets an error response; impossible ring indices
//! disconnect that frontend.
//!
//! dom0's NIC, when it has one, is the switch's uplink ([`crate::virtio::uplink`]): a frame to
//! an address that is no connected domU goes out through it (a broadcast goes there too), and
//! a frame from the wire goes to the domU its destination names (a broadcast or multicast to
//! every domU), copied into a posted receive buffer. Frames with nowhere to go, or for a domU
//! with no posted buffer, are dropped and counted.

use crate::bus::Change;
use crate::events;
use crate::gcopy::{read_pod, read_u32, write_pod, write_u32};
use crate::virtio::uplink;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use ferrite_abi::devbus::{feature, kind, state};
use ferrite_abi::netif::{
    self, MAX_FRAME, Mac, OFFSET_REQ_EVENT, OFFSET_REQ_PROD, OFFSET_RSP_PROD, OFFSET_SLOTS,
    RX_RING_OFFSET, RX_SLOTS, RxRequest, RxResponse, TX_SLOTS, TxRefused, TxRequest, TxResponse,
    mac_to_u64,
};
use ferrite_abi::{Errno, evtchn as ev};
use spin::Mutex;

/// One ring's backend indices.
#[derive(Default)]
struct Indices {
    req_cons: u32,
    rsp_prod: u32,
    dirty: bool,
}

struct Front {
    dom: u16,
    key: u64,
    mac: [u8; 6],
    page: u32,
    port: u32,
    tx: Indices,
    rx: Indices,
    /// Posted receive buffers: (grant, id).
    bufs: VecDeque<(u32, u16)>,
    sent: u64,
    received: u64,
    dropped: u64,
    /// Frames it sent out through the uplink, and frames from the wire it received.
    to_wire: u64,
    from_wire: u64,
}

static FRONTS: Mutex<Vec<Front>> = Mutex::new(Vec::new());

/// Connects the frontends already waiting (the device-bus VIRQ is the block backend's; it
/// calls [`scan`] too).
pub fn start() {
    if events::ready() {
        scan();
    }
}

pub fn scan() {
    // Fronts whose domain is gone are no longer on the bus: look at each served one again,
    // first, so that a restored domain taking back its MAC address finds it free.
    let served: Vec<(u16, u64)> = FRONTS.lock().iter().map(|f| (f.dom, f.key)).collect();
    for (dom, key) in served {
        consider(dom, key);
    }
    crate::bus::for_each(kind::NET, consider);
}

fn consider(dom: u16, key: u64) {
    let mut fronts = FRONTS.lock();
    let known = fronts.iter().position(|f| f.dom == dom && f.key == key);
    match (crate::bus::change(dom, key, known.is_some()), known) {
        (
            Change::Connect {
                ring,
                port,
                features,
                param,
            },
            _,
        ) => {
            let asked = (features & feature::MAC != 0).then_some(param);
            let holder = |m: [u8; 6]| fronts.iter().find(|f| f.mac == m).map(|f| f.dom);
            let mac = match netif::backend_mac(dom, asked, holder) {
                Ok(m) => m,
                Err(e) => {
                    println!("dom0: net: dom{dom}: not connected: {e}");
                    let _ = crate::bus::set_back(dom, key, state::CLOSED, 0);
                    return;
                }
            };
            match events::op(ev::BIND_INTERDOMAIN, dom as u64, port as u64) {
                Ok(local) => {
                    let honoured = features & feature::MAC;
                    let _ = crate::bus::set_back_features(
                        dom,
                        key,
                        state::CONNECTED,
                        mac_to_u64(mac),
                        honoured,
                    );
                    println!(
                        "dom0: net: dom{dom}: connected (MAC {}{})",
                        Mac(mac),
                        if asked.is_some() { ", its own" } else { "" }
                    );
                    fronts.push(Front {
                        dom,
                        key,
                        mac,
                        page: ring,
                        port: local as u32,
                        tx: Indices::default(),
                        rx: Indices::default(),
                        bufs: VecDeque::new(),
                        sent: 0,
                        received: 0,
                        dropped: 0,
                        to_wire: 0,
                        from_wire: 0,
                    });
                }
                Err(e) => {
                    println!("dom0: net: dom{dom}: not connected: cannot bind port {port}: {e}");
                    let _ = crate::bus::set_back(dom, key, state::CLOSED, 0);
                }
            }
        }
        (Change::Disconnect, Some(i)) => {
            let f = fronts.remove(i);
            disconnect(&f, "the frontend closed");
        }
        _ => {}
    }
}

fn disconnect(f: &Front, why: &str) {
    let _ = events::op(ev::CLOSE, f.port as u64, 0);
    let _ = crate::bus::set_back(f.dom, f.key, state::CLOSED, 0);
    println!(
        "dom0: net: dom{}: {why}: disconnected ({} frames sent, {} received, {} dropped; \
         {} to the wire, {} from it)",
        f.dom, f.sent, f.received, f.dropped, f.to_wire, f.from_wire
    );
}

/// A ring's producer index, checked against its size.
fn req_prod(f: &Front, base: usize, ix: &Indices, slots: usize) -> Result<u32, String> {
    let p = read_u32(f.dom, f.page, base + OFFSET_REQ_PROD)
        .map_err(|e| alloc::format!("reading its ring: {e}"))?;
    if p.wrapping_sub(ix.rsp_prod) as usize > slots {
        return Err(alloc::format!(
            "ring corrupt (req_prod {p}, {} answered)",
            ix.rsp_prod
        ));
    }
    Ok(p)
}

/// Serves the frontends whose port fired (all if `all`).
pub fn service(all: bool) {
    let mut fronts = FRONTS.lock();
    let fired: Vec<bool> = fronts.iter().map(|f| events::take(f.port) || all).collect();
    let wire = uplink::receive();
    if !fired.iter().any(|&x| x) && wire.is_empty() {
        return;
    }
    // Receive buffers first, so frames sent in this round find them.
    let mut dead: Vec<(usize, String)> = Vec::new();
    for (i, f) in fronts.iter_mut().enumerate() {
        if let Err(e) = take_rx_buffers(f) {
            dead.push((i, e));
        }
    }
    for frame in &wire {
        from_wire(&mut fronts, frame);
    }
    for i in 0..fronts.len() {
        if dead.iter().any(|(d, _)| *d == i) {
            continue;
        }
        if let Err(e) = transmit(&mut fronts, i) {
            dead.push((i, e));
        }
    }
    for f in fronts.iter_mut() {
        let _ = publish(f);
    }
    dead.sort_by_key(|(i, _)| core::cmp::Reverse(*i));
    for (i, why) in dead {
        let f = fronts.remove(i);
        disconnect(&f, &why);
    }
}

fn take_rx_buffers(f: &mut Front) -> Result<(), String> {
    loop {
        let prod = req_prod(f, RX_RING_OFFSET, &f.rx, RX_SLOTS)?;
        while f.rx.req_cons != prod {
            let slot = RX_RING_OFFSET + OFFSET_SLOTS + (f.rx.req_cons as usize % RX_SLOTS) * 8;
            let r: RxRequest = read_pod(f.dom, f.page, slot).map_err(|e| alloc::format!("{e}"))?;
            f.rx.req_cons = f.rx.req_cons.wrapping_add(1);
            f.bufs.push_back((r.gref, r.id));
        }
        write_u32(
            f.dom,
            f.page,
            RX_RING_OFFSET + OFFSET_REQ_EVENT,
            prod.wrapping_add(1),
        )
        .map_err(|e| alloc::format!("{e}"))?;
        if req_prod(f, RX_RING_OFFSET, &f.rx, RX_SLOTS)? == prod {
            return Ok(());
        }
    }
}

/// A receive buffer of `f` for one frame. Buffers it posted since this round took them (or
/// before dom0 first served it, right after it connected) are in its ring: they are taken then,
/// rather than the frame dropped. A broken ring is left for the next round to disconnect.
fn rx_buffer(f: &mut Front) -> Option<(u32, u16)> {
    if f.bufs.is_empty() {
        let _ = take_rx_buffers(f);
    }
    f.bufs.pop_front()
}

fn transmit(fronts: &mut [Front], i: usize) -> Result<(), String> {
    loop {
        let prod = req_prod(&fronts[i], 0, &fronts[i].tx, TX_SLOTS)?;
        while fronts[i].tx.req_cons != prod {
            let f = &mut fronts[i];
            let slot = OFFSET_SLOTS + (f.tx.req_cons as usize % TX_SLOTS) * 16;
            let req: TxRequest =
                read_pod(f.dom, f.page, slot).map_err(|e| alloc::format!("{e}"))?;
            f.tx.req_cons = f.tx.req_cons.wrapping_add(1);
            let status = match switch(fronts, i, &req) {
                Ok(()) => 0,
                Err(e) => {
                    println!(
                        "dom0: net: dom{}: frame {} refused: {e}",
                        fronts[i].dom, req.id
                    );
                    e.errno().to_ret() as i16
                }
            };
            let f = &mut fronts[i];
            let rsp = TxResponse {
                id: req.id,
                status,
                pad: 0,
            };
            let rslot = OFFSET_SLOTS + (f.tx.rsp_prod as usize % TX_SLOTS) * 16;
            write_pod(f.dom, f.page, rslot, &rsp).map_err(|e| alloc::format!("{e}"))?;
            f.tx.rsp_prod = f.tx.rsp_prod.wrapping_add(1);
            f.tx.dirty = true;
        }
        let f = &fronts[i];
        write_u32(f.dom, f.page, OFFSET_REQ_EVENT, prod.wrapping_add(1))
            .map_err(|e| alloc::format!("{e}"))?;
        if req_prod(f, 0, &f.tx, TX_SLOTS)? == prod {
            return Ok(());
        }
    }
}

/// Delivers one frame from frontend `i` to its destination(s).
fn switch(fronts: &mut [Front], i: usize, req: &TxRequest) -> Result<(), TxRefused> {
    netif::check_tx(req)?;
    let src = fronts[i].dom;
    // The frame comes into dom0 first and goes to every receiver from there: what is checked
    // is what is delivered, whatever the sender writes to its page meanwhile. (A copy straight
    // from page to page would need the header read first and checked apart from the copy.)
    let mut words = [0u64; (MAX_FRAME as usize).div_ceil(8)];
    // SAFETY: plain bytes over the word array (8-aligned, so the copies move words).
    let frame = unsafe {
        core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), req.len as usize)
    };
    crate::gcopy::read_from(src, req.gref, req.offset as usize, frame)?;
    let hdr = &frame[..14];
    // A frame must come from its sender's own address: one from another's would have its
    // answers sent to that other (Xen's anti-spoofing, here always on).
    TxRefused::check_source(hdr, fronts[i].mac)?;
    let dst = &hdr[..6];
    fronts[i].sent += 1;
    let to_domu = fronts.iter().position(|f| f.mac == dst);
    let group = dst[0] & 1 != 0;
    if group || to_domu.is_none() {
        to_wire(fronts, i, frame, group);
    }
    let targets: Vec<usize> = if group {
        (0..fronts.len()).filter(|&j| j != i).collect()
    } else {
        match to_domu {
            Some(j) if j != i => alloc::vec![j],
            Some(_) => {
                fronts[i].dropped += 1;
                return Ok(());
            }
            None => return Ok(()),
        }
    };
    for j in targets {
        let Some((gref, id)) = rx_buffer(&mut fronts[j]) else {
            fronts[j].dropped += 1;
            continue;
        };
        let to = &mut fronts[j];
        // A buffer the receiver did not grant as it should goes back to it with the error; the
        // frame is dropped for it, which is not the sender's fault.
        let (status, len) = match crate::gcopy::write_to(to.dom, gref, 0, frame) {
            Ok(()) => {
                to.received += 1;
                (0, req.len)
            }
            Err(e) => {
                to.dropped += 1;
                (e.to_ret() as i16, 0)
            }
        };
        push_rx(
            to,
            RxResponse {
                id,
                status,
                len,
                pad: 0,
            },
        );
    }
    Ok(())
}

/// Sends frontend `i`'s frame (dom0's copy) out through the uplink; without one, a frame that
/// is no broadcast is dropped and counted.
fn to_wire(fronts: &mut [Front], i: usize, frame: &[u8], group: bool) {
    if !uplink::present() {
        if !group {
            fronts[i].dropped += 1;
        }
        return;
    }
    match uplink::send(frame) {
        Ok(_) => fronts[i].to_wire += 1,
        Err(e) => {
            fronts[i].dropped += 1;
            println!(
                "dom0: net: uplink: dom{}: frame dropped: {e}",
                fronts[i].dom
            );
        }
    }
}

/// Delivers a frame from the wire: to the domU its destination names, or to every domU for a
/// broadcast or multicast. Anything else (dom0 has no stack of its own) is dropped.
fn from_wire(fronts: &mut [Front], frame: &[u8]) {
    if frame.len() < 14 || frame.len() > MAX_FRAME as usize {
        return;
    }
    let dst = &frame[..6];
    let targets: Vec<usize> = if dst[0] & 1 != 0 {
        (0..fronts.len()).collect()
    } else {
        match fronts.iter().position(|f| f.mac == dst) {
            Some(j) => alloc::vec![j],
            None => return,
        }
    };
    for j in targets {
        let to = &mut fronts[j];
        let Some((gref, id)) = rx_buffer(to) else {
            to.dropped += 1;
            continue;
        };
        let (status, len) = match crate::gcopy::write_to(to.dom, gref, 0, frame) {
            Ok(()) => {
                to.from_wire += 1;
                to.received += 1;
                (0, frame.len() as u16)
            }
            Err(e) => (e.to_ret() as i16, 0),
        };
        push_rx(
            to,
            RxResponse {
                id,
                status,
                len,
                pad: 0,
            },
        );
    }
}

fn push_rx(to: &mut Front, rsp: RxResponse) {
    let slot = RX_RING_OFFSET + OFFSET_SLOTS + (to.rx.rsp_prod as usize % RX_SLOTS) * 8;
    if write_pod(to.dom, to.page, slot, &rsp).is_ok() {
        to.rx.rsp_prod = to.rx.rsp_prod.wrapping_add(1);
        to.rx.dirty = true;
    }
}

/// Publishes both rings' responses and notifies the frontend once.
fn publish(f: &mut Front) -> Result<(), Errno> {
    let mut notify = false;
    if f.tx.dirty {
        write_u32(f.dom, f.page, OFFSET_RSP_PROD, f.tx.rsp_prod)?;
        f.tx.dirty = false;
        notify = true;
    }
    if f.rx.dirty {
        write_u32(
            f.dom,
            f.page,
            RX_RING_OFFSET + OFFSET_RSP_PROD,
            f.rx.rsp_prod,
        )?;
        f.rx.dirty = false;
        notify = true;
    }
    if notify {
        let _ = events::op(ev::SEND, f.port as u64, 0);
    }
    Ok(())
}
