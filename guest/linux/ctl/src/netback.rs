//! `ferrite-ctl netback [-u <ifname>] [seconds]`: a network backend in Linux dom0's user space,
//! the switch between domUs' netfronts that Ferrite's own dom0 has (`ferrite_abi::netif`,
//! docs/io.md), with one of Linux's NICs as its port to the wire ([`crate::uplink`]) when
//! `-u` names one.
//!
//! Each frontend gets a MAC address by the rule every net backend applies
//! ([`netif::backend_mac`]: its domain's, or the one it asks for after a restore), told in the
//! backend's device-bus parameter. A frame goes to the frontend its destination address names,
//! or to every other one for a broadcast or multicast, with one grant copy from the sender's
//! page into a receive buffer the receiver posted (this process is the grantee of both, so the
//! payload never passes through Linux). A frame for an address that is no connected domU, and a
//! broadcast, also go out through the uplink (copied once into this process); a frame from the
//! wire goes to the domU its destination names, or to every domU. A frame whose length or
//! offset is bad, whose grant does not allow the access, or whose source address is not its
//! sender's gets an error response; a frame with nowhere to go, or for a frontend without a
//! posted buffer, is dropped and counted; a ring whose indices are impossible disconnects that
//! frontend alone.
//!
//! As `ferrite-ctl blkback`, it reaches Ferrite through the control page, cannot receive events
//! (it polls the rings every millisecond) but announces its responses on each frontend's port.
//! It needs a version-2 control page to read what a frontend asks for: with version 1 every
//! frontend gets its domain's address.

use crate::backend;
use crate::uplink::Uplink;
use crate::{Ctrl, Res, err_text, touch};
use ferrite_abi::devbus::{feature, kind, state};
use ferrite_abi::errno::Errno;
use ferrite_abi::evtchn;
use ferrite_abi::grant::{GrantCopy, copy};
use ferrite_abi::netif::{
    self, MAX_FRAME, MIN_FRAME, Mac, OFFSET_REQ_EVENT, OFFSET_REQ_PROD, OFFSET_RSP_PROD,
    OFFSET_SLOTS, RX_RING_OFFSET, RX_SLOTS, RxRequest, RxResponse, TX_SLOTS, TxRefused, TxRequest,
    TxResponse, mac_to_u64,
};
use std::collections::VecDeque;

const TX_SLOT: usize = size_of::<TxRequest>();
const RX_SLOT: usize = size_of::<RxRequest>();

/// Front `f`'s transmit ring's slots (a request's size each, which a response shares).
fn tx_slots(f: &Front) -> backend::Slots {
    backend::Slots {
        dom: f.dom,
        gref: f.ring,
        base: OFFSET_SLOTS,
        stride: TX_SLOT,
        slots: TX_SLOTS,
    }
}

fn rx_slots(f: &Front) -> backend::Slots {
    backend::Slots {
        dom: f.dom,
        gref: f.ring,
        base: RX_RING_OFFSET + OFFSET_SLOTS,
        stride: RX_SLOT,
        slots: RX_SLOTS,
    }
}

/// One ring's backend indices (`rsp_prod`: the responses published).
#[derive(Default)]
struct Indices {
    req_cons: u32,
    rsp_prod: u32,
}

struct Front {
    dom: u16,
    key: u64,
    ring: u32,
    mac: [u8; 6],
    port: Option<u32>,
    tx: Indices,
    rx: Indices,
    /// Posted receive buffers: (grant, id).
    bufs: VecDeque<(u32, u16)>,
    /// Responses made this pass, written by [`Switch::publish`].
    tx_out: Vec<TxResponse>,
    rx_out: Vec<RxResponse>,
    sent: u64,
    received: u64,
    dropped: u64,
    to_wire: u64,
    from_wire: u64,
}

/// Frames taken from the wire per pass, at most: the domUs' rings get their turn.
const WIRE_BURST: usize = 256;

struct Switch<'a> {
    c: &'a Ctrl,
    fronts: Vec<Front>,
    uplink: Option<Uplink>,
    /// A ring's worth of frames copied in from senders ([`TX_SLOTS`]).
    frames: Vec<[u8; MAX_FRAME as usize]>,
    /// A frame on its way to or from the wire (touched once, so Ferrite can reach it; large
    /// enough for what a packet socket may hand over after receive offloads).
    wire_buf: Vec<u8>,
}

impl backend::Polled for Switch<'_> {
    fn scan(&mut self) {
        Switch::scan(self);
    }

    fn serve_all(&mut self) -> bool {
        Switch::serve_all(self)
    }

    fn stop(&mut self) {
        for f in std::mem::take(&mut self.fronts) {
            self.disconnect(&f, "the backend stopped", true);
        }
    }
}

impl Switch<'_> {
    fn read<T: ferrite_abi::ring::Pod + Default>(&self, f: &Front, off: usize) -> Res<T> {
        backend::read(self.c, f.dom, f.ring, off).map_err(|e| format!("its ring: {}", err_text(e)))
    }

    fn write<T: ferrite_abi::ring::Pod>(&self, f: &Front, off: usize, v: &T) -> Res<()> {
        backend::write(self.c, f.dom, f.ring, off, v)
            .map_err(|e| format!("its ring: {}", err_text(e)))
    }

    /// Walks the bus: first the frontends served (so that a restored domain taking back its
    /// address finds it free), then every net device.
    fn scan(&mut self) {
        let served: Vec<(u16, u64)> = self.fronts.iter().map(|f| (f.dom, f.key)).collect();
        for (dom, key) in served {
            self.consider(dom, key);
        }
        for (dom, key) in backend::devices(self.c, kind::NET) {
            self.consider(dom, key);
        }
    }

    fn consider(&mut self, dom: u16, key: u64) {
        let known = self
            .fronts
            .iter()
            .position(|f| f.dom == dom && f.key == key);
        let entry = backend::get(self.c, dom, key);
        match (entry, known) {
            (None, Some(i)) => {
                let f = self.fronts.remove(i);
                self.disconnect(&f, "its domain is gone", false);
            }
            (Some(e), Some(i)) if e.front == state::CLOSING || e.front == state::CLOSED => {
                let f = self.fronts.remove(i);
                self.disconnect(&f, "the frontend closed", true);
            }
            (Some(e), None)
                if e.front == state::INITIALISED
                    && e.back != state::CONNECTED
                    && e.back != state::CLOSED =>
            {
                match self.connect(dom, key, &e) {
                    Ok(f) => self.fronts.push(f),
                    Err(why) => {
                        println!("ferrite-ctl: netback: dom{dom}: not connected: {why}");
                        let _ = backend::set_back(self.c, dom, key, state::CLOSED, 0, 0);
                    }
                }
            }
            _ => {}
        }
    }

    fn connect(&self, dom: u16, key: u64, e: &backend::Entry) -> Res<Front> {
        let asked = (e.features & feature::MAC != 0).then_some(e.param);
        let holder = |m: [u8; 6]| self.fronts.iter().find(|f| f.mac == m).map(|f| f.dom);
        let mac = netif::backend_mac(dom, asked, holder).map_err(|r| r.to_string())?;
        let f = Front {
            dom,
            key,
            ring: e.ring,
            mac,
            port: None,
            tx: Indices::default(),
            rx: Indices::default(),
            bufs: VecDeque::new(),
            tx_out: Vec::new(),
            rx_out: Vec::new(),
            sent: 0,
            received: 0,
            dropped: 0,
            to_wire: 0,
            from_wire: 0,
        };
        // The ring must be reachable before we say we are connected.
        self.read::<u32>(&f, OFFSET_REQ_PROD)?;
        let f = Front {
            port: backend::bind(self.c, dom, e.port),
            ..f
        };
        let honoured = e.features & feature::MAC;
        if let Err(err) = backend::set_back(
            self.c,
            dom,
            key,
            state::CONNECTED,
            mac_to_u64(mac),
            honoured,
        ) {
            if let Some(p) = f.port {
                let _ = backend::evtchn(self.c, evtchn::CLOSE, p as u64, 0);
            }
            return Err(format!("SET_BACK_STATE: {}", err_text(err)));
        }
        println!(
            "ferrite-ctl: netback: dom{dom}: connected (MAC {}{})",
            Mac(mac),
            if asked.is_some() { ", its own" } else { "" }
        );
        Ok(f)
    }

    fn disconnect(&self, f: &Front, why: &str, device_left: bool) {
        if let Some(p) = f.port {
            let _ = backend::evtchn(self.c, evtchn::CLOSE, p as u64, 0);
        }
        if device_left {
            let _ = backend::set_back(self.c, f.dom, f.key, state::CLOSED, 0, 0);
        }
        println!(
            "ferrite-ctl: netback: dom{}: {why}: disconnected ({} frames sent, {} received, {} \
             dropped; {} to the wire, {} from it)",
            f.dom, f.sent, f.received, f.dropped, f.to_wire, f.from_wire
        );
    }

    /// A ring's producer index, checked against its size.
    fn req_prod(&self, f: &Front, base: usize, ix: &Indices, slots: usize) -> Res<u32> {
        let p: u32 = self.read(f, base + OFFSET_REQ_PROD)?;
        if p.wrapping_sub(ix.rsp_prod) as usize > slots {
            return Err(format!(
                "ring corrupt (req_prod {p}, {} answered)",
                ix.rsp_prod
            ));
        }
        Ok(p)
    }

    /// Takes the receive buffers front `i` posted.
    fn take_rx_buffers(&mut self, i: usize) -> Res<()> {
        let f = &self.fronts[i];
        let prod = self.req_prod(f, RX_RING_OFFSET, &f.rx, RX_SLOTS)?;
        let n = prod.wrapping_sub(f.rx.req_cons) as usize;
        let reqs: Vec<RxRequest> = backend::read_slots(self.c, rx_slots(f), f.rx.req_cons, n)
            .map_err(|e| format!("its ring: {}", err_text(e)))?;
        if n > 0 {
            self.write(f, RX_RING_OFFSET + OFFSET_REQ_EVENT, &prod.wrapping_add(1))?;
        }
        let f = &mut self.fronts[i];
        f.rx.req_cons = prod;
        f.bufs.extend(reqs.iter().map(|r| (r.gref, r.id)));
        Ok(())
    }

    /// A receive buffer front `j` posted, taking from its ring those it posted since this
    /// pass began; none (the frame dropped for it, counted) if it has none.
    fn rx_buffer(&mut self, j: usize) -> Option<(u32, u16)> {
        if self.fronts[j].bufs.is_empty() {
            let _ = self.take_rx_buffers(j);
        }
        let b = self.fronts[j].bufs.pop_front();
        if b.is_none() {
            self.fronts[j].dropped += 1;
        }
        b
    }

    /// Serves every frontend's transmit ring once; disconnects a frontend whose ring is
    /// corrupt or unreachable. Returns whether any frame moved.
    fn serve_all(&mut self) -> bool {
        let mut dead: Vec<(usize, String)> = Vec::new();
        for i in 0..self.fronts.len() {
            if let Err(e) = self.take_rx_buffers(i) {
                dead.push((i, e));
            }
        }
        let mut busy = self.take_in();
        for i in 0..self.fronts.len() {
            if dead.iter().any(|(d, _)| *d == i) {
                continue;
            }
            match self.transmit(i) {
                Ok(n) => busy |= n > 0,
                Err(e) => dead.push((i, e)),
            }
        }
        for i in 0..self.fronts.len() {
            if let Err(e) = self.publish(i)
                && !dead.iter().any(|(d, _)| *d == i)
            {
                dead.push((i, e));
            }
        }
        dead.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, why) in dead {
            let f = self.fronts.remove(i);
            let (why, left) = backend::why_disconnected(self.c, f.dom, f.key, why);
            self.disconnect(&f, &why, left);
        }
        busy
    }

    /// Switches every frame front `i` has queued, with a few calls per pass rather than per
    /// frame: the requests in one, the frames into this process in one, the copies to every
    /// receiver in one (64 ops a call), the responses in one ([`Self::publish`]). Returns how
    /// many.
    fn transmit(&mut self, i: usize) -> Res<usize> {
        // Kept from pass to pass, touched once: a buffer allocated afresh would be new pages
        // for Linux to fault in before Ferrite may copy into them.
        let mut frames = std::mem::take(&mut self.frames);
        let r = self.transmit_into(i, &mut frames);
        self.frames = frames;
        r
    }

    fn transmit_into(&mut self, i: usize, frames: &mut [[u8; MAX_FRAME as usize]]) -> Res<usize> {
        let f = &self.fronts[i];
        let prod = self.req_prod(f, 0, &f.tx, TX_SLOTS)?;
        let n = prod.wrapping_sub(f.tx.req_cons) as usize;
        if n == 0 {
            return Ok(0);
        }
        let reqs: Vec<TxRequest> = backend::read_slots(self.c, tx_slots(f), f.tx.req_cons, n)
            .map_err(|e| format!("its ring: {}", err_text(e)))?;
        self.fronts[i].tx.req_cons = prod;
        let src = self.fronts[i].dom;
        let mut outcome: Vec<Result<(), TxRefused>> = reqs.iter().map(netif::check_tx).collect();
        // The well-formed frames, into this process: what is checked and routed is what is
        // delivered, whatever the sender writes to its pages meanwhile.
        let wanted: Vec<usize> = (0..n).filter(|&k| outcome[k].is_ok()).collect();
        let mut ops: Vec<GrantCopy> = wanted
            .iter()
            .map(|&k| GrantCopy {
                source: backend::granted(src, reqs[k].gref, reqs[k].offset as usize),
                dest: backend::local(frames[k].as_ptr()),
                len: reqs[k].len,
                flags: copy::SOURCE_GREF,
                status: 0,
            })
            .collect();
        backend::copy_each(self.c, &mut ops).map_err(|e| format!("copying: {}", err_text(e)))?;
        for (&k, op) in wanted.iter().zip(&ops) {
            if op.status != 0 {
                outcome[k] = Err(Errno::from_ret(op.status as i64)
                    .unwrap_or(Errno::Inval)
                    .into());
            }
        }
        // Route each; the copies into receivers' buffers are queued: (frame, receiver, id).
        let mut deliveries: Vec<(usize, usize, u16)> = Vec::new();
        let mut data: Vec<GrantCopy> = Vec::new();
        for k in 0..n {
            if outcome[k].is_ok() {
                let frame = &frames[k][..reqs[k].len as usize];
                outcome[k] = self.route(i, frame, k, &mut deliveries, &mut data);
            }
        }
        backend::copy_each(self.c, &mut data).map_err(|e| format!("copying: {}", err_text(e)))?;
        for (&(k, j, id), op) in deliveries.iter().zip(&data) {
            // A buffer the receiver did not grant as it should goes back to it with the error;
            // the frame is dropped for it, which is not the sender's fault.
            let (status, len) = if op.status == 0 {
                self.fronts[j].received += 1;
                (0, reqs[k].len)
            } else {
                self.fronts[j].dropped += 1;
                (op.status as i16, 0)
            };
            self.push_rx(
                j,
                RxResponse {
                    id,
                    status,
                    len,
                    pad: 0,
                },
            );
        }
        for (req, out) in reqs.iter().zip(outcome) {
            let status = match out {
                Ok(()) => 0,
                Err(e) => {
                    println!(
                        "ferrite-ctl: netback: dom{src}: frame {} refused: {e}",
                        req.id
                    );
                    e.errno().to_ret() as i16
                }
            };
            self.fronts[i].tx_out.push(TxResponse {
                id: req.id,
                status,
                pad: 0,
            });
        }
        let f = &self.fronts[i];
        self.write(f, OFFSET_REQ_EVENT, &prod.wrapping_add(1))?;
        Ok(n)
    }

    /// Where frame `k` of front `i` (this process's copy) goes: out through the uplink (sent
    /// at once), and a copy into a posted buffer of each receiving domU, queued in `data` with
    /// `(k, receiver, buffer id)` in `deliveries`.
    fn route(
        &mut self,
        i: usize,
        frame: &[u8],
        k: usize,
        deliveries: &mut Vec<(usize, usize, u16)>,
        data: &mut Vec<GrantCopy>,
    ) -> Result<(), TxRefused> {
        let hdr = &frame[..14];
        TxRefused::check_source(hdr, self.fronts[i].mac)?;
        let dst = &hdr[..6];
        self.fronts[i].sent += 1;
        let group = dst[0] & 1 != 0;
        let to_domu = self.fronts.iter().position(|f| f.mac == dst);
        if group || to_domu.is_none() {
            self.send_out(i, frame, group);
        }
        let targets: Vec<usize> = if group {
            (0..self.fronts.len()).filter(|&j| j != i).collect()
        } else {
            match to_domu {
                Some(j) if j != i => vec![j],
                Some(_) => {
                    self.fronts[i].dropped += 1;
                    return Ok(());
                }
                None => return Ok(()),
            }
        };
        for j in targets {
            let Some((gref, id)) = self.rx_buffer(j) else {
                continue;
            };
            data.push(GrantCopy {
                source: backend::local(frame.as_ptr()),
                dest: backend::granted(self.fronts[j].dom, gref, 0),
                len: frame.len() as u16,
                flags: copy::DEST_GREF,
                status: 0,
            });
            deliveries.push((k, j, id));
        }
        Ok(())
    }

    /// Sends front `i`'s frame (this process's copy) out through the uplink; without one, a
    /// frame that is no broadcast is dropped and counted.
    fn send_out(&mut self, i: usize, frame: &[u8], group: bool) {
        let Some(up) = self.uplink.as_mut() else {
            if !group {
                self.fronts[i].dropped += 1;
            }
            return;
        };
        if up.send(frame) {
            self.fronts[i].to_wire += 1;
        } else {
            self.fronts[i].dropped += 1;
        }
    }

    /// Delivers what came from the wire since the last pass (at most [`WIRE_BURST`] frames):
    /// to the domU its destination names, or to every domU for a broadcast or multicast;
    /// anything else is Linux's, or no one's. Returns whether any frame came.
    fn take_in(&mut self) -> bool {
        let Some(mut up) = self.uplink.take() else {
            return false;
        };
        let mut any = false;
        for _ in 0..WIRE_BURST {
            let Some(len) = up.receive(&mut self.wire_buf) else {
                break;
            };
            any = true;
            if !(MIN_FRAME as usize..=MAX_FRAME as usize).contains(&len) {
                continue;
            }
            let dst = &self.wire_buf[..6];
            let targets: Vec<usize> = if dst[0] & 1 != 0 {
                (0..self.fronts.len()).collect()
            } else {
                self.fronts
                    .iter()
                    .position(|f| f.mac == dst)
                    .into_iter()
                    .collect()
            };
            for j in targets {
                let Some((gref, id)) = self.rx_buffer(j) else {
                    continue;
                };
                let r = backend::copy(
                    self.c,
                    &mut [GrantCopy {
                        source: backend::local(self.wire_buf.as_ptr()),
                        dest: backend::granted(self.fronts[j].dom, gref, 0),
                        len: len as u16,
                        flags: copy::DEST_GREF,
                        status: 0,
                    }],
                );
                let (status, n) = match r {
                    Ok(()) => {
                        self.fronts[j].from_wire += 1;
                        self.fronts[j].received += 1;
                        (0, len as u16)
                    }
                    Err(e) => (e.to_ret() as i16, 0),
                };
                self.push_rx(
                    j,
                    RxResponse {
                        id,
                        status,
                        len: n,
                        pad: 0,
                    },
                );
            }
        }
        self.uplink = Some(up);
        any
    }

    /// Queues a receive response for front `j`: [`Self::publish`] writes them.
    fn push_rx(&mut self, j: usize, rsp: RxResponse) {
        self.fronts[j].rx_out.push(rsp);
    }

    /// Writes front `i`'s queued responses (each ring's in one call), publishes both rings'
    /// producer indices and announces them once.
    fn publish(&mut self, i: usize) -> Res<()> {
        let mut tx_out = std::mem::take(&mut self.fronts[i].tx_out);
        let mut rx_out = std::mem::take(&mut self.fronts[i].rx_out);
        let f = &self.fronts[i];
        let e = |x| format!("its ring: {}", err_text(x));
        backend::write_slots(self.c, tx_slots(f), f.tx.rsp_prod, &mut tx_out).map_err(e)?;
        backend::write_slots(self.c, rx_slots(f), f.rx.rsp_prod, &mut rx_out).map_err(e)?;
        let tx_prod = f.tx.rsp_prod.wrapping_add(tx_out.len() as u32);
        let rx_prod = f.rx.rsp_prod.wrapping_add(rx_out.len() as u32);
        if !tx_out.is_empty() {
            self.write(f, OFFSET_RSP_PROD, &tx_prod)?;
        }
        if !rx_out.is_empty() {
            self.write(f, RX_RING_OFFSET + OFFSET_RSP_PROD, &rx_prod)?;
        }
        let f = &mut self.fronts[i];
        f.tx.rsp_prod = tx_prod;
        f.rx.rsp_prod = rx_prod;
        if let (false, Some(p)) = (tx_out.is_empty() && rx_out.is_empty(), f.port) {
            let _ = backend::evtchn(self.c, evtchn::SEND, p as u64, 0);
        }
        Ok(())
    }
}

/// Runs the switch until killed, or for `seconds`, with the NIC `uplink` names as its port to
/// the wire.
pub fn run(c: &Ctrl, uplink: Option<&str>, seconds: Option<u64>) -> Res<()> {
    let uplink = uplink.map(Uplink::open).transpose()?;
    let mut wire_buf = vec![0u8; 64 << 10];
    touch(&mut wire_buf);
    let mut frames = vec![[0u8; MAX_FRAME as usize]; TX_SLOTS];
    touch(crate::bytes_of_slice(&mut frames));
    let mut s = Switch {
        c,
        fronts: Vec::new(),
        uplink,
        frames,
        wire_buf,
    };
    println!(
        "ferrite-ctl: netback: switching domUs' frames (control page version {}){}",
        c.version,
        s.uplink.as_ref().map_or(String::new(), |u| format!(
            ", to and from the wire through {} (promiscuous)",
            u.name
        ))
    );
    backend::run_polled(c, seconds, &mut s)?;
    if let Some(u) = &s.uplink {
        println!(
            "ferrite-ctl: netback: {}: {} frames out, {} in, {} refused by the socket",
            u.name, u.sent, u.received, u.failed
        );
    }
    Ok(())
}
