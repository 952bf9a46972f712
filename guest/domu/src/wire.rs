//! `net-wire <n>`: a netfront reaching past dom0's switch, through dom0's NIC (its uplink), to
//! QEMU's user-mode network: the frames leave the machine and come back.
//!
//! With address 10.0.2.(100 + domid), the domU asks by ARP who has 10.0.2.2 (the user-mode
//! network's gateway), then sends `n` ICMP echo requests there (56 bytes of payload made from
//! the domid and sequence number) and checks every reply: `net-wire: ARP: 10.0.2.2 is at
//! <mac>`, then `net-wire: <ok>/<n> pings to 10.0.2.2 answered, payloads ok`. It answers ARP
//! requests for its own address, as the gateway may ask. Frames are built by hand: ARP and
//! ICMP echo need no network stack.

use crate::net::{Net, connect};
use ferrite_pv::time;

const GATEWAY: [u8; 4] = [10, 0, 2, 2];
const PAYLOAD: usize = 56;
/// Attempts per ARP request or ping, 200 ms apart.
const ATTEMPTS: u32 = 25;

fn our_ip(domid: u16) -> [u8; 4] {
    [10, 0, 2, 100u8.wrapping_add(domid as u8)]
}

/// The Internet checksum (RFC 1071) of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn arp(op: u16, mac: [u8; 6], ip: [u8; 4], to_mac: [u8; 6], to_ip: [u8; 4]) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(if op == 1 { &[0xff; 6] } else { &to_mac });
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..20].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip);
    f[32..38].copy_from_slice(if op == 1 { &[0; 6] } else { &to_mac });
    f[38..42].copy_from_slice(&to_ip);
    f
}

fn payload(domid: u16, seq: u16) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    for (i, b) in p.iter_mut().enumerate() {
        *b = (domid as u8)
            .wrapping_mul(97)
            .wrapping_add((seq as u8).wrapping_mul(13))
            .wrapping_add(i as u8);
    }
    p
}

const PING_LEN: usize = 14 + 20 + 8 + PAYLOAD;

fn ping(domid: u16, mac: [u8; 6], gw: [u8; 6], seq: u16) -> [u8; PING_LEN] {
    let mut f = [0u8; PING_LEN];
    f[..6].copy_from_slice(&gw);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 8 + PAYLOAD) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&seq.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = 1; // ICMP
    ip[12..16].copy_from_slice(&our_ip(domid));
    ip[16..20].copy_from_slice(&GATEWAY);
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut f[34..];
    icmp[0] = 8; // echo request
    icmp[4..6].copy_from_slice(&(0x4600 + domid).to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    icmp[8..].copy_from_slice(&payload(domid, seq));
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

/// What a received frame was, to this mode.
enum Seen {
    ArpReply([u8; 6]),
    EchoReply { seq: u16, ok: bool },
    Other,
}

fn classify(domid: u16, net: &mut Net, f: &[u8]) -> Seen {
    let me = our_ip(domid);
    if f.len() >= 42 && f[12..14] == [0x08, 0x06] {
        let (op, sender_mac, sender_ip, target_ip) = (
            u16::from_be_bytes([f[20], f[21]]),
            &f[22..28],
            &f[28..32],
            &f[38..42],
        );
        if op == 1 && target_ip == me {
            let mac: [u8; 6] = sender_mac.try_into().unwrap_or([0; 6]);
            let ip: [u8; 4] = sender_ip.try_into().unwrap_or([0; 4]);
            let _ = net.send(&arp(2, net.mac, me, mac, ip));
        }
        if op == 2 && sender_ip == GATEWAY && target_ip == me {
            return Seen::ArpReply(sender_mac.try_into().unwrap_or([0; 6]));
        }
        return Seen::Other;
    }
    let is_echo_reply = f.len() >= 42
        && f[12..14] == [0x08, 0x00]
        && f[23] == 1
        && f[26..30] == GATEWAY
        && f[30..34] == me
        && f[34] == 0
        && f[38..40] == (0x4600 + domid).to_be_bytes();
    if !is_echo_reply {
        return Seen::Other;
    }
    let seq = u16::from_be_bytes([f[40], f[41]]);
    let ok = f.len() >= PING_LEN
        && f[42..PING_LEN] == payload(domid, seq)
        && checksum(&f[14..34]) == 0
        && checksum(&f[34..PING_LEN]) == 0;
    Seen::EchoReply { seq, ok }
}

/// Sends `frame` until `want` accepts a received frame; the accepted value, or `None`
/// after [`ATTEMPTS`] tries.
fn exchange<T>(
    domid: u16,
    net: &mut Net,
    frame: &[u8],
    mut want: impl FnMut(Seen) -> Option<T>,
) -> Option<T> {
    let mut buf = [0u8; 2048];
    for _ in 0..ATTEMPTS {
        if let Err(e) = net.send(frame) {
            out!("net-wire: {e}");
        }
        let end = time::now() + time::us_to_ticks(200_000);
        while time::now() < end {
            let Some(len) = net.recv(&mut buf, 20) else {
                continue;
            };
            if let Some(v) = want(classify(domid, net, &buf[..len])) {
                return Some(v);
            }
        }
    }
    None
}

pub fn run(domid: u16, n: u64) {
    let mut net = match connect(domid) {
        Ok(x) => x,
        Err(e) => return out!("net-wire: FAIL: {e}"),
    };
    let me = our_ip(domid);
    let request = arp(1, net.mac, me, [0; 6], GATEWAY);
    let Some(gw) = exchange(domid, &mut net, &request, |s| match s {
        Seen::ArpReply(m) => Some(m),
        _ => None,
    }) else {
        out!("net-wire: FAIL: no ARP reply from 10.0.2.2");
        return crate::front::close(crate::net::KEY);
    };
    out!(
        "net-wire: ARP: 10.0.2.2 is at {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        gw[0],
        gw[1],
        gw[2],
        gw[3],
        gw[4],
        gw[5]
    );
    let (mut answered, mut bad) = (0u64, 0u64);
    for seq in 0..n as u16 {
        let frame = ping(domid, net.mac, gw, seq);
        match exchange(domid, &mut net, &frame, |s| match s {
            Seen::EchoReply { seq: s, ok } if s == seq => Some(ok),
            _ => None,
        }) {
            Some(true) => answered += 1,
            Some(false) => {
                answered += 1;
                bad += 1;
            }
            None => {}
        }
    }
    if bad == 0 {
        out!("net-wire: {answered}/{n} pings to 10.0.2.2 answered, payloads ok");
    } else {
        out!("net-wire: {answered}/{n} pings to 10.0.2.2 answered, {bad} BAD payloads");
    }
    crate::front::close(crate::net::KEY);
}
