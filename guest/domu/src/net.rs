//! `net-ping <peer> <n> [gap_ms]` / `net-pong <n> [seconds]`: a netfront
//! ([`ferrite_abi::netif`]) and two domUs exchanging Ethernet frames through dom0's switch.
//!
//! Both connect (`net: connected, MAC 02:fe:00:00:00:<id>`: the address dom0's backend gave,
//! its domain's) and post 16 receive buffers. `net-pong` echoes every frame it receives back to
//! its sender (MACs swapped, payload unchanged) until it has echoed `n` or `seconds` (10) have
//! passed, then prints `net-pong: echoed <n> frames`. `net-ping` sends `n` frames (ethertype
//! 0x88b5, 64 bytes of payload: the sequence number and a pattern made from it) to `peer` (to
//! [`mac_of`]`(peer)`), one at a time, `gap_ms` apart (0), resending after 100 ms without an
//! answer (the peer may not be connected yet), and checks each echo: `net-ping: <ok>/<n> echoes
//! from dom<peer>, payloads ok, <resent> resent`.
//!
//! After a restore (`StartInfo::restores` changed) the connection is gone, and the domain id
//! with it: the next send or receive connects again (`net: the domain was restored: connecting
//! again`, then `net: connected again, MAC <the same>`) with the same pages under the same
//! grant references, on fresh rings, asking dom0 for the MAC address it had
//! ([`devbus::feature::MAC`]), so that its peers still reach it. Frames on the rings at the save
//! are lost (a network may lose frames); a send waiting for its answer is sent again.

use crate::front;
use ferrite_abi::devbus::{self, feature, kind};
use ferrite_abi::netif::{
    MAX_FRAME, Mac, RX_RING_OFFSET, RX_SLOTS, RxRequest, RxResponse, RxRing, TX_SLOTS, TxRequest,
    TxResponse, TxRing, is_unicast, mac_from_u64, mac_of, mac_to_u64,
};
use ferrite_abi::ring::FrontRing;
use ferrite_pv::{rt, time};

pub(crate) const KEY: u64 = devbus::key(kind::NET, 0);
const RX_BUFS: usize = 64;
/// Transmit pages: a frame each, so that `net-blast` can keep this many in flight.
pub(crate) const TX_PAGES: usize = 32;
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const PAYLOAD: usize = 64;

pub(crate) struct Net {
    /// The transmit ring itself, for `net-evil`, which corrupts its indices.
    pub(crate) tx_shared: &'static TxRing,
    rx_shared: &'static RxRing,
    tx: FrontRing<'static, TxRequest, TxResponse, TX_SLOTS>,
    rx: FrontRing<'static, RxRequest, RxResponse, RX_SLOTS>,
    pub(crate) port: u32,
    page_va: u64,
    page_gref: u32,
    tx_va: [u64; TX_PAGES],
    /// Page 0 is the one [`Self::send`] and [`Self::stage`] use.
    pub(crate) tx_gref: [u32; TX_PAGES],
    rx_va: [u64; RX_BUFS],
    rx_gref: [u32; RX_BUFS],
    pub(crate) mac: [u8; 6],
    /// [`rt::restores`] when the connection was made: a restore since ends it.
    restores: u64,
    /// Connections made again after restores.
    pub(crate) reconnections: u64,
    /// Why the connection is gone for good (a reconnection failed).
    pub(crate) gone: Option<&'static str>,
}

pub(crate) fn connect(domid: u16) -> Result<Net, &'static str> {
    let (page_va, page_ma) = front::frame()?;
    // SAFETY: a zeroed frame of ours, mapped writable for good; both rings fit in it (checked
    // at compile time in the ABI) and hold only Pod data and atomics.
    let (txr, rxr) = unsafe {
        (
            &*(page_va as *const TxRing),
            &*((page_va + RX_RING_OFFSET as u64) as *const RxRing),
        )
    };
    txr.init();
    rxr.init();
    let page_gref = front::grant_to_dom0(page_ma)?;
    let mut tx_va = [0u64; TX_PAGES];
    let mut tx_gref = [0u32; TX_PAGES];
    for i in 0..TX_PAGES {
        let (va, ma) = front::frame()?;
        tx_va[i] = va;
        tx_gref[i] = front::grant_to_dom0(ma)?;
    }
    let mut rx_va = [0u64; RX_BUFS];
    let mut rx_gref = [0u32; RX_BUFS];
    for i in 0..RX_BUFS {
        let (va, ma) = front::frame()?;
        rx_va[i] = va;
        rx_gref[i] = front::grant_to_dom0(ma)?;
    }
    let restores = rt::restores();
    let (port, param, _) = front::handshake(KEY, page_gref, 0, 0)?;
    // The backend's parameter is the address it gave us; a backend that does not say gives
    // the domain's own.
    let mac = mac_from_u64(param)
        .filter(|&m| is_unicast(m))
        .unwrap_or(mac_of(domid));
    out!("net: connected, MAC {}", Mac(mac));
    let mut n = Net {
        tx_shared: txr,
        rx_shared: rxr,
        tx: FrontRing::new(txr),
        rx: FrontRing::new(rxr),
        port,
        page_va,
        page_gref,
        tx_va,
        tx_gref,
        rx_va,
        rx_gref,
        mac,
        restores,
        reconnections: 0,
        gone: None,
    };
    n.post_all();
    Ok(n)
}

impl Net {
    /// Connects again if the domain was restored since the connection was made (module docs).
    /// A failure is for good: [`Self::gone`] says why.
    fn resume(&mut self) -> Result<(), &'static str> {
        if let Some(e) = self.gone {
            return Err(e);
        }
        if self.restores == rt::restores() {
            return Ok(());
        }
        self.reconnect().inspect_err(|&e| {
            out!("net: cannot connect again: {e}");
            self.gone = Some(e);
        })
    }

    fn reconnect(&mut self) -> Result<(), &'static str> {
        out!("net: the domain was restored: connecting again");
        self.restores = rt::restores();
        self.tx_shared.init();
        self.rx_shared.init();
        front::grant_again(self.page_gref, 0, self.page_va)?;
        for i in 0..TX_PAGES {
            front::grant_again(self.tx_gref[i], 0, self.tx_va[i])?;
        }
        for i in 0..RX_BUFS {
            front::grant_again(self.rx_gref[i], 0, self.rx_va[i])?;
        }
        let (port, param, honoured) =
            front::handshake(KEY, self.page_gref, feature::MAC, mac_to_u64(self.mac))?;
        if honoured & feature::MAC == 0 || mac_from_u64(param) != Some(self.mac) {
            front::close(KEY);
            return Err("the backend did not give back our MAC address");
        }
        self.tx = FrontRing::new(self.tx_shared);
        self.rx = FrontRing::new(self.rx_shared);
        self.port = port;
        self.reconnections += 1;
        self.post_all();
        out!("net: connected again, MAC {}", Mac(self.mac));
        Ok(())
    }

    fn post_all(&mut self) {
        for id in 0..RX_BUFS {
            self.post(id as u16);
        }
        self.notify_if(true);
    }

    fn post(&mut self, id: u16) {
        let _ = self.rx.push_request(RxRequest {
            gref: self.rx_gref[id as usize],
            id,
            pad: 0,
        });
    }

    fn notify_if(&mut self, rx: bool) {
        let a = rx && self.rx.push_requests_and_check_notify();
        let b = self.tx.push_requests_and_check_notify();
        if a || b {
            let _ = ferrite_pv::hypercall::evtchn_send(self.port);
        }
    }

    /// Puts `frame` in the TX page (for [`Self::send_raw`]).
    pub(crate) fn stage(&mut self, frame: &[u8]) {
        let len = frame.len().min(4096);
        // SAFETY: our TX page, mapped writable; no send is outstanding (we wait for each).
        let page = unsafe { core::slice::from_raw_parts_mut(self.tx_va[0] as *mut u8, 4096) };
        page[..len].copy_from_slice(&frame[..len]);
    }

    /// Sends `req` as it is and returns the backend's status for it, within 1 s.
    pub(crate) fn send_raw(&mut self, req: TxRequest) -> Result<i16, &'static str> {
        self.tx.push_request(req).map_err(|_| "TX ring full")?;
        self.notify_if(false);
        let end = time::now() + time::us_to_ticks(1_000_000);
        loop {
            match self.tx.take_response() {
                Ok(Some(r)) => return Ok(r.status),
                Ok(None) => {}
                Err(_) => return Err("the backend corrupted the TX ring"),
            }
            if time::now() > end {
                return Err("no TX response within 1 s");
            }
            front::wait_port(self.port, 5);
        }
    }

    /// Sends `req` `n` times, filling the ring before each notification, and returns how many
    /// responses came back (each within 1 s of the last).
    pub(crate) fn flood(&mut self, req: TxRequest, n: u32) -> u32 {
        let (mut sent, mut answered) = (0, 0);
        let mut deadline = time::now() + time::us_to_ticks(1_000_000);
        while answered < n {
            let mut pushed = false;
            while sent < n && self.tx.push_request(req).is_ok() {
                sent += 1;
                pushed = true;
            }
            if pushed {
                self.notify_if(false);
            }
            match self.tx.take_response() {
                Ok(Some(_)) => {
                    answered += 1;
                    deadline = time::now() + time::us_to_ticks(1_000_000);
                    continue;
                }
                Ok(None) => {}
                Err(_) => return answered,
            }
            if time::now() > deadline {
                break;
            }
            front::wait_port(self.port, 5);
        }
        answered
    }

    /// Sends `frame` (waits for the previous send's response first: one TX buffer). After a
    /// restore it connects again and sends the frame again.
    pub(crate) fn send(&mut self, frame: &[u8]) -> Result<(), &'static str> {
        self.resume()?;
        let len = frame.len().min(MAX_FRAME as usize);
        // SAFETY: our TX page, mapped writable; no send is outstanding (we wait for each).
        let page = unsafe { core::slice::from_raw_parts_mut(self.tx_va[0] as *mut u8, 4096) };
        page[..len].copy_from_slice(&frame[..len]);
        'send: loop {
            self.tx
                .push_request(TxRequest {
                    gref: self.tx_gref[0],
                    offset: 0,
                    len: len as u16,
                    id: 0,
                    pad: [0; 3],
                })
                .map_err(|_| "TX ring full")?;
            self.notify_if(false);
            let end = time::now() + time::us_to_ticks(1_000_000);
            loop {
                match self.tx.take_response() {
                    Ok(Some(r)) if r.status == 0 => return Ok(()),
                    Ok(Some(_)) => return Err("the backend refused the frame"),
                    Ok(None) => {}
                    Err(_) => return Err("the backend corrupted the TX ring"),
                }
                if self.restores != rt::restores() {
                    self.resume()?;
                    continue 'send;
                }
                if time::now() > end {
                    return Err("no TX response within 1 s");
                }
                front::wait_port(self.port, 5);
            }
        }
    }

    /// Sends `n` frames of `len` bytes, each its `header` (14 bytes) then its sequence number,
    /// keeping up to `depth` (at most [`TX_PAGES`]) in flight, a transmit page each, and
    /// notifying dom0 once per batch put on the ring. Returns how many the backend answered
    /// with success; stops when no answer came for 1 s.
    pub(crate) fn send_burst(
        &mut self,
        header: &[u8; 14],
        len: usize,
        n: u64,
        depth: usize,
    ) -> u64 {
        let depth = depth.clamp(1, TX_PAGES);
        let len = len.clamp(22, MAX_FRAME as usize);
        let mut free: [u16; TX_PAGES] = core::array::from_fn(|i| i as u16);
        let mut nfree = depth;
        let (mut next, mut answered, mut ok) = (0u64, 0u64, 0u64);
        let mut deadline = time::now() + time::us_to_ticks(1_000_000);
        while answered < n {
            let mut pushed = false;
            while next < n && nfree > 0 {
                let page = free[nfree - 1] as usize;
                // SAFETY: our TX page `page`, mapped writable; it is free (no request in flight
                // names it), so dom0 reads it only after we push the request below.
                let buf =
                    unsafe { core::slice::from_raw_parts_mut(self.tx_va[page] as *mut u8, 4096) };
                buf[..14].copy_from_slice(header);
                buf[14..22].copy_from_slice(&next.to_le_bytes());
                let req = TxRequest {
                    gref: self.tx_gref[page],
                    offset: 0,
                    len: len as u16,
                    id: page as u16,
                    pad: [0; 3],
                };
                if self.tx.push_request(req).is_err() {
                    break;
                }
                nfree -= 1;
                next += 1;
                pushed = true;
            }
            if pushed {
                self.notify_if(false);
            }
            let mut progress = false;
            loop {
                match self.tx.take_response() {
                    Ok(Some(r)) => {
                        answered += 1;
                        ok += u64::from(r.status == 0);
                        if (r.id as usize) < depth && nfree < depth {
                            free[nfree] = r.id;
                            nfree += 1;
                        }
                        progress = true;
                    }
                    Ok(None) if self.tx.final_check_for_responses() => {}
                    Ok(None) => break,
                    Err(_) => return ok,
                }
            }
            if progress {
                deadline = time::now() + time::us_to_ticks(1_000_000);
                continue;
            }
            if time::now() > deadline {
                break;
            }
            front::wait_port(self.port, 5);
        }
        ok
    }

    /// The next received frame, copied into `buf`, within `ms`; its buffer is posted again.
    /// After a restore it connects again first; `None` at once if that failed.
    pub(crate) fn recv(&mut self, buf: &mut [u8; 2048], ms: u64) -> Option<usize> {
        let end = time::now() + time::us_to_ticks(ms * 1000);
        loop {
            self.resume().ok()?;
            match self.rx.take_response() {
                Ok(Some(r)) => {
                    let id = r.id as usize % RX_BUFS;
                    let len = (r.len as usize).min(buf.len());
                    let ok = r.status == 0;
                    if ok {
                        // SAFETY: our RX page `id`, which dom0 has filled and answered.
                        let page = unsafe {
                            core::slice::from_raw_parts(self.rx_va[id] as *const u8, len)
                        };
                        buf[..len].copy_from_slice(page);
                    }
                    self.post(id as u16);
                    self.notify_if(true);
                    if ok {
                        return Some(len);
                    }
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            if time::now() > end {
                return None;
            }
            front::wait_port(self.port, 5);
        }
    }
}

fn payload(seq: u64) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(8) {
        *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
    p
}

pub fn pong(domid: u16, n: u64, seconds: u64) {
    let mut net = match connect(domid) {
        Ok(x) => x,
        Err(e) => return out!("net-pong: FAIL: {e}"),
    };
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    let end = time::now() + time::us_to_ticks(seconds * 1_000_000);
    while echoed < n && time::now() < end {
        let Some(len) = net.recv(&mut buf, 100) else {
            if let Some(e) = net.gone {
                return out!("net-pong: FAIL: {e} (echoed {echoed} frames)");
            }
            continue;
        };
        if len < 14 {
            continue;
        }
        let mut reply = [0u8; 2048];
        reply[..len].copy_from_slice(&buf[..len]);
        reply[..6].copy_from_slice(&buf[6..12]);
        reply[6..12].copy_from_slice(&net.mac);
        match net.send(&reply[..len]) {
            Ok(()) => echoed += 1,
            Err(e) => out!("net-pong: {e}"),
        }
    }
    out!("net-pong: echoed {echoed} frames");
    front::close(KEY);
}

pub fn ping(domid: u16, peer: u16, n: u64, gap_ms: u64) {
    let mut net = match connect(domid) {
        Ok(x) => x,
        Err(e) => return out!("net-ping: FAIL: {e}"),
    };
    let (mut ok, mut resent, mut bad) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 2048];
    let mut best = u64::MAX;
    for seq in 0..n {
        if let Some(e) = net.gone {
            return out!("net-ping: FAIL: {e} ({ok} echoes)");
        }
        if seq > 0 && gap_ms > 0 {
            let _ = time::sleep_us(gap_ms * 1000);
        }
        let mut frame = [0u8; 14 + PAYLOAD];
        frame[..6].copy_from_slice(&mac_of(peer));
        frame[6..12].copy_from_slice(&net.mac);
        frame[12..14].copy_from_slice(&ETHERTYPE);
        frame[14..].copy_from_slice(&payload(seq));
        let mut got = false;
        for attempt in 0..50 {
            if attempt > 0 {
                resent += 1;
            }
            let t0 = time::now();
            if let Err(e) = net.send(&frame) {
                out!("net-ping: {e}");
                continue;
            }
            // Wait for this sequence number's echo; older echoes are skipped. The ring is
            // looked at once more after the deadline: a vCPU kept off its CPU past it (its cap)
            // would otherwise resend a frame whose echo is waiting, and the duplicate would use
            // up one of the peer's echoes.
            let end = time::now() + time::us_to_ticks(100_000);
            let mut last = false;
            while !last {
                last = time::now() >= end;
                let Some(len) = net.recv(&mut buf, if last { 0 } else { 20 }) else {
                    continue;
                };
                if len != frame.len() || buf[12..14] != ETHERTYPE {
                    continue;
                }
                let s = u64::from_le_bytes(buf[14..22].try_into().unwrap_or([0; 8]));
                if s != seq {
                    continue;
                }
                if buf[..6] != net.mac || buf[6..12] != mac_of(peer) || buf[14..len] != payload(seq)
                {
                    bad += 1;
                }
                best = best.min(time::now() - t0);
                got = true;
                break;
            }
            if got {
                break;
            }
        }
        if got {
            ok += 1;
        }
    }
    if bad == 0 {
        out!("net-ping: {ok}/{n} echoes from dom{peer}, payloads ok, {resent} resent");
    } else {
        out!("net-ping: {ok}/{n} echoes from dom{peer}, {bad} BAD payloads, {resent} resent");
    }
    if ok > 0 {
        out!("net-ping: round trip {} us min", time::ticks_to_us(best));
    }
    front::close(KEY);
}

/// `net-blast <peer> <n> [depth]`: sends `n` full-size frames to `peer` as fast as the TX ring
/// answers, `depth` (32, at most [`TX_PAGES`]) in flight.
pub fn blast(domid: u16, peer: u16, n: u64, depth: u64) {
    let mut net = match connect(domid) {
        Ok(x) => x,
        Err(e) => return out!("net-blast: FAIL: {e}"),
    };
    // Give the sink a moment to post its buffers (frames to a domU without any are dropped).
    let _ = time::sleep_us(20_000);
    let mut header = [0u8; 14];
    header[..6].copy_from_slice(&mac_of(peer));
    header[6..12].copy_from_slice(&net.mac);
    header[12..14].copy_from_slice(&ETHERTYPE);
    let depth = (depth as usize).clamp(1, TX_PAGES);
    let sent = net.send_burst(&header, MAX_FRAME as usize, n, depth);
    out!("net-blast: sent {sent} frames of {MAX_FRAME} bytes to dom{peer}, {depth} in flight");
    front::close(KEY);
}

/// `net-sink <n>`: receives until `n` frames came or none came for 2 s, and prints the rate
/// from the first frame to the last, in virtual time, and whether `net-blast`'s sequence
/// numbers came in order.
pub fn sink(domid: u16, n: u64) {
    let mut net = match connect(domid) {
        Ok(x) => x,
        Err(e) => return out!("net-sink: FAIL: {e}"),
    };
    let mut buf = [0u8; 2048];
    let (mut got, mut bytes, mut first, mut last) = (0u64, 0u64, 0u64, 0u64);
    // `net-blast` numbers its frames: each must come after the one before it (a switch may
    // drop frames, never reorder or repeat them).
    let (mut next_seq, mut disorder) = (0u64, 0u64);
    while got < n {
        let Some(len) = net.recv(&mut buf, 2000) else {
            break;
        };
        let now = time::now();
        if got == 0 {
            first = now;
        }
        last = now;
        got += 1;
        bytes += len as u64;
        if len >= 22 && buf[12..14] == ETHERTYPE {
            let seq = u64::from_le_bytes(buf[14..22].try_into().unwrap_or([0; 8]));
            if seq < next_seq {
                disorder += 1;
            }
            next_seq = seq + 1;
        }
    }
    let us = time::ticks_to_us(last.saturating_sub(first)).max(1);
    out!(
        "net-sink: {got} frames, {} KiB in {us} us: {} KiB/s",
        bytes >> 10,
        (bytes >> 10) * 1_000_000 / us
    );
    if disorder == 0 {
        out!("net-sink: in order, none repeated");
    } else {
        out!("net-sink: FAIL: {disorder} frames out of order or repeated");
    }
    front::close(KEY);
}
