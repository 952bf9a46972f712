//! The network check: send one ARP request for QEMU user networking's gateway (10.0.2.2, with
//! our address 10.0.2.15) and wait, bounded, for its reply.
//!
//! Frames are built and parsed by hand: one ARP exchange needs no network stack.

use super::DevIrq;
use crate::dt::Irq;
use crate::timer;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use virtio_drivers::transport::mmio::MmioTransport;

const RX_BUFFERS: usize = 4;
use super::uplink::{Net, RX_BUFFER_SIZE};
const OUR_IP: [u8; 4] = [10, 0, 2, 15];
const GATEWAY_IP: [u8; 4] = [10, 0, 2, 2];
const REPLY_TIMEOUT_US: u64 = 2_000_000;

struct Mac([u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let m = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An Ethernet broadcast carrying an ARP request "who has `target`, tell `ip`", padded to the
/// 60-byte minimum.
fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// If `frame` is an ARP reply from `from` to `to`, the sender's MAC.
fn arp_reply_from(frame: &[u8], from: [u8; 4], to: [u8; 4]) -> Option<[u8; 6]> {
    let arp = frame.get(14..42)?;
    let is_reply = frame[12..14] == [0x08, 0x06] && arp[6..8] == [0, 2];
    (is_reply && arp[14..18] == from && arp[24..28] == to).then(|| arp[8..14].try_into().unwrap())
}

pub fn check(transport: MmioTransport<'static>, irq: Option<Irq>) -> bool {
    match run(transport, irq) {
        Ok(u) => {
            super::uplink::install(u);
            true
        }
        Err(e) => {
            println!("dom0: net: FAILED: {e}");
            false
        }
    }
}

/// The check; on success the NIC, still running, becomes the network backend's uplink.
fn run(
    transport: MmioTransport<'static>,
    irq: Option<Irq>,
) -> Result<super::uplink::Uplink, alloc::string::String> {
    // Declared before the device so that they are dropped after it: dropping the device unsets
    // its queues, and only then may the buffers it still holds be freed.
    let mut rx: Vec<Vec<u8>> = (0..RX_BUFFERS).map(|_| vec![0u8; RX_BUFFER_SIZE]).collect();
    let mut net = Net::new(transport).map_err(|e| alloc::format!("init: {e}"))?;
    let mac = net.mac_address();
    let mut irq = DevIrq::new(irq, "net");
    net.enable_interrupts();

    // Receive buffers first, so the reply has somewhere to land.
    let mut tokens = [0u16; RX_BUFFERS];
    for (i, b) in rx.iter_mut().enumerate() {
        // SAFETY: each buffer is a heap allocation that stays put and untouched until its token
        // is completed below (the Vec of buffers is never resized).
        tokens[i] = unsafe { net.receive_begin(b) }.map_err(|e| alloc::format!("rx: {e}"))?;
    }

    let frame = arp_request(mac, OUR_IP, GATEWAY_IP);
    let mut tx = vec![0u8; 64 + frame.len()];
    let hdr = net
        .fill_buffer_header(&mut tx)
        .map_err(|e| alloc::format!("tx header: {e}"))?;
    tx.truncate(hdr + frame.len());
    tx[hdr..].copy_from_slice(&frame);
    // The reply may come (and interrupt) while the transmission is still being completed: QEMU
    // answers at once. So the interrupt is looked for from here on.
    let mark = irq.mark();
    // SAFETY: `tx` stays alive and untouched until `transmit_complete`.
    let token = unsafe { net.transmit_begin(&tx) }.map_err(|e| alloc::format!("tx: {e}"))?;
    // Transmit completions are not necessarily announced by an interrupt (drivers suppress
    // them), so this one is only waited for.
    let sent = irq.wait(|| net.poll_transmit() == Some(token));
    net.ack_interrupt();
    irq.rearm();
    if !sent {
        return Err("the ARP request was not sent within 2 s".into());
    }
    // SAFETY: the buffer submitted with `token`.
    unsafe { net.transmit_complete(token, &tx) }.map_err(|e| alloc::format!("tx: {e}"))?;

    let deadline = timer::deadline_us(REPLY_TIMEOUT_US);
    let mut received = 0;
    let mut reply = None;
    while reply.is_none() && timer::counter() < deadline {
        if !irq.wait(|| net.poll_receive().is_some()) {
            break;
        }
        net.ack_interrupt();
        irq.rearm();
        while let Some(t) = net.poll_receive() {
            let i = tokens
                .iter()
                .position(|&x| x == t)
                .ok_or("the device completed a buffer we did not post")?;
            // SAFETY: buffer `i` is the one posted with token `t`.
            let (hdr, len) = unsafe { net.receive_complete(t, &mut rx[i]) }
                .map_err(|e| alloc::format!("rx: {e}"))?;
            received += 1;
            if reply.is_none() {
                reply = arp_reply_from(&rx[i][hdr..hdr + len], GATEWAY_IP, OUR_IP);
            }
            // SAFETY: as for the first posting: the buffer stays put until completed again.
            tokens[i] =
                unsafe { net.receive_begin(&mut rx[i]) }.map_err(|e| alloc::format!("rx: {e}"))?;
        }
    }
    if received > 0 {
        irq.confirm("net", mark);
    }
    let Some(gw) = reply else {
        return Err(alloc::format!(
            "mac {}, sent 1 frame, received {received} frames, no ARP reply from 10.0.2.2 within 2 s",
            Mac(mac)
        ));
    };
    println!(
        "dom0: net: mac {}, sent 1 frame, received {received} frames, ARP reply from 10.0.2.2 at {}: ok",
        Mac(mac),
        Mac(gw)
    );
    match irq.intid().filter(|_| irq.taken > 0) {
        Some(i) => println!("dom0: net: reply by interrupt (INTID {i})"),
        None => println!("dom0: net: reply found by polling"),
    }
    irq.rearm();
    super::uplink::Uplink::new(net, rx, &tokens, irq)
}
