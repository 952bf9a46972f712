//! The uplink: dom0's virtio-net NIC, kept after its boot check for the network backend, which
//! sends out through it the domUs' frames addressed to no domU and hands it back the frames
//! the wire addresses to a domU.
//!
//! dom0 has no network stack of its own: the NIC only carries the domUs' traffic. QEMU's
//! virtio-net starts promiscuous (the driver never turns that off), so frames to the domUs'
//! MAC addresses reach it. Frames are copied through dom0 here (one copy each way), which is
//! what a NIC behind a bridge costs; the domU-to-domU path stays zero-copy in dom0.

use super::DevIrq;
use alloc::vec;
use alloc::vec::Vec;
use spin::Mutex;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::MmioTransport;

const QUEUE_SIZE: usize = 16;
/// Receive buffers kept posted: the whole receive queue.
pub const RX_BUFFERS: usize = QUEUE_SIZE;
pub const RX_BUFFER_SIZE: usize = 2048;
/// How long a transmission may take before the NIC is reported stuck.
const TX_TIMEOUT_US: u64 = 100_000;

pub type Net = VirtIONetRaw<super::Dom0Hal, MmioTransport<'static>, QUEUE_SIZE>;

pub struct Uplink {
    // Dropped before the buffers it may still hold (fields drop in order); in practice it lives
    // in a static for good.
    net: Net,
    rx: Vec<Vec<u8>>,
    tokens: [u16; RX_BUFFERS],
    tx: Vec<u8>,
    irq: DevIrq,
    /// The NIC's interrupt count when it was last acknowledged.
    seen: u32,
    mac: [u8; 6],
}

static UPLINK: Mutex<Option<Uplink>> = Mutex::new(None);

impl Uplink {
    /// Takes over the NIC after its check: `rx[..posted.len()]` are still posted with the
    /// tokens in `posted`; the rest of the receive queue is filled with new buffers.
    pub fn new(
        mut net: Net,
        mut rx: Vec<Vec<u8>>,
        posted: &[u16],
        irq: DevIrq,
    ) -> Result<Self, alloc::string::String> {
        if posted.len() > RX_BUFFERS || posted.len() != rx.len() {
            return Err("the check's receive buffers do not fit the uplink's queue".into());
        }
        let mut tokens = [0u16; RX_BUFFERS];
        tokens[..posted.len()].copy_from_slice(posted);
        // Growing the outer Vec moves only the inner Vecs' headers, never the posted buffers.
        rx.resize_with(RX_BUFFERS, || vec![0u8; RX_BUFFER_SIZE]);
        for i in posted.len()..RX_BUFFERS {
            // SAFETY: each buffer is a heap allocation owned by the uplink for good, untouched
            // until its token completes.
            tokens[i] =
                unsafe { net.receive_begin(&mut rx[i]) }.map_err(|e| alloc::format!("rx: {e}"))?;
        }
        let mac = net.mac_address();
        let seen = irq.mark();
        Ok(Self {
            seen,
            net,
            rx,
            tokens,
            tx: vec![0u8; RX_BUFFER_SIZE + 64],
            irq,
            mac,
        })
    }
}

/// Makes `u` the backend's uplink.
pub fn install(u: Uplink) {
    let mac = u.mac;
    *UPLINK.lock() = Some(u);
    println!(
        "dom0: net: uplink: the NIC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} carries the domUs' \
         frames to and from the wire",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    );
}

pub fn present() -> bool {
    UPLINK.lock().is_some()
}

/// Sends one Ethernet frame out of the NIC. `Ok(false)`: there is no uplink.
pub fn send(frame: &[u8]) -> Result<bool, &'static str> {
    let mut g = UPLINK.lock();
    let Some(u) = g.as_mut() else {
        return Ok(false);
    };
    transmit(u, frame).map(|()| true)
}

fn transmit(u: &mut Uplink, frame: &[u8]) -> Result<(), &'static str> {
    let hdr = u
        .net
        .fill_buffer_header(&mut u.tx)
        .map_err(|_| "the NIC's header does not fit")?;
    let len = hdr + frame.len();
    if len > u.tx.len() {
        return Err("frame too long for the NIC");
    }
    u.tx[hdr..len].copy_from_slice(frame);
    let buf = &u.tx[..len];
    // SAFETY: `u.tx` stays alive and untouched (we hold the uplink's lock) until
    // `transmit_complete` below, or for good if the NIC never completes it.
    let token = unsafe { u.net.transmit_begin(buf) }.map_err(|_| "the NIC's queue is full")?;
    // QEMU completes a transmission within a few microseconds of the notify, and completions
    // need not interrupt: spin on the used ring, bounded.
    let deadline = crate::timer::deadline_us(TX_TIMEOUT_US);
    while u.net.poll_transmit() != Some(token) {
        if crate::timer::counter() > deadline {
            return Err("the NIC did not complete a transmission within 100 ms");
        }
        core::hint::spin_loop();
    }
    // SAFETY: the buffer submitted with `token`, which the device has completed.
    unsafe { u.net.transmit_complete(token, buf) }.map_err(|_| "the NIC's completion")?;
    Ok(())
}

/// Takes every frame the NIC received since the last call (each copied out, its buffer posted
/// again). Cheap when nothing came: one look at the used ring.
pub fn receive() -> Vec<Vec<u8>> {
    let mut g = UPLINK.lock();
    let Some(u) = g.as_mut() else {
        return Vec::new();
    };
    let mut frames = Vec::new();
    // The interrupt handler masks the line; it is acknowledged at the NIC and unmasked here,
    // whatever it announced (a completed transmission too).
    let irqs = u.irq.mark();
    let interrupted = irqs != u.seen;
    if u.net.poll_receive().is_none() && !interrupted {
        return frames;
    }
    u.seen = irqs;
    u.net.ack_interrupt();
    while let Some(t) = u.net.poll_receive() {
        let Some(i) = u.tokens.iter().position(|&x| x == t) else {
            // A token we never posted: the device is confused; stop taking from it.
            println!("dom0: net: uplink: the NIC completed a buffer we did not post");
            break;
        };
        // SAFETY: buffer `i` is the one posted with token `t`, now completed.
        match unsafe { u.net.receive_complete(t, &mut u.rx[i]) } {
            Ok((hdr, len)) => frames.push(u.rx[i][hdr..hdr + len].to_vec()),
            Err(e) => println!("dom0: net: uplink: a received frame: {e}"),
        }
        // SAFETY: as in `new`: the buffer stays put, untouched until it completes again.
        match unsafe { u.net.receive_begin(&mut u.rx[i]) } {
            Ok(t) => u.tokens[i] = t,
            Err(e) => println!("dom0: net: uplink: posting a receive buffer: {e}"),
        }
    }
    u.irq.rearm();
    frames
}
