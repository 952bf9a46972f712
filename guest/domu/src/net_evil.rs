//! `net-evil`: a hostile netfront. It sends dom0's switch transmit requests that break the
//! protocol, each of which must be answered with the documented error, floods the ring with
//! frames for a domain that does not exist, checks a good frame still goes through, and then
//! corrupts its ring's indices, which must disconnect it alone. Lines: `net-evil: <case>:
//! refused <errno>` (or `ALLOWED`), then `net-evil: done, <r> refused, <a> allowed`.

use crate::net::connect;
use core::sync::atomic::Ordering;
use ferrite_abi::errno::Errno;
use ferrite_abi::netif::{MAX_FRAME, TxRequest, mac_of};
use ferrite_pv::{hypercall, time};

fn req(gref: u32, offset: u16, len: u16, id: u16) -> TxRequest {
    TxRequest {
        gref,
        offset,
        len,
        id,
        pad: [0; 3],
    }
}

pub fn run(domid: u16) {
    let mut net = match connect(domid) {
        Ok(n) => n,
        Err(e) => return out!("net-evil: FAIL: {e}"),
    };
    // A valid frame in our TX page, to a domain that does not exist.
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&mac_of(99));
    frame[6..12].copy_from_slice(&net.mac);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    net.stage(&frame);
    let g = net.tx_gref[0];
    let cases = [
        (
            "a frame shorter than its header",
            req(g, 0, 10, 1),
            Errno::Inval,
        ),
        (
            "a frame longer than 1514 bytes",
            req(g, 0, MAX_FRAME + 1, 2),
            Errno::Inval,
        ),
        (
            "a frame running past its page",
            req(g, 4000, 200, 3),
            Errno::Inval,
        ),
        (
            "a grant reference it never made",
            req(200, 0, 60, 4),
            Errno::Perm,
        ),
    ];
    let (mut refused, mut allowed) = (0, 0);
    // Last, a frame from another domain's address (dom1's, or dom2's for dom1 itself).
    let mut spoofed = frame;
    spoofed[6..12].copy_from_slice(&mac_of(if domid == 1 { 2 } else { 1 }));
    let spoof = (
        "a frame from another domain's address",
        req(g, 0, 60, 5),
        Errno::Perm,
    );
    for (i, (name, r, want)) in cases.into_iter().chain([spoof]).enumerate() {
        if i == 4 {
            net.stage(&spoofed);
        }
        match net.send_raw(r) {
            Ok(0) => {
                allowed += 1;
                out!("net-evil: {name}: ALLOWED");
            }
            Ok(s) => {
                refused += 1;
                match Errno::from_ret(s as i64) {
                    Some(e) if e == want => out!("net-evil: {name}: refused {e}"),
                    _ => out!("net-evil: {name}: refused {s} (unexpected, the ABI says {want})"),
                }
            }
            Err(e) => {
                allowed += 1;
                out!("net-evil: {name}: FAIL: {e}");
            }
        }
    }
    net.stage(&frame);
    // A flood: the whole ring at once, again and again, 1024 frames for nobody.
    let answered = net.flood(req(g, 0, 60, 100), 1024);
    out!("net-evil: flooded 1024 frames for a domain that does not exist: {answered} answered");
    match net.send_raw(req(g, 0, 60, 7)) {
        Ok(0) => out!("net-evil: a good frame after them: ok"),
        other => out!("net-evil: a good frame after them: FAIL {other:?}"),
    }
    // Claim 1000 requests in a 64-slot ring.
    let prod = net.tx_shared.req_prod.load(Ordering::Relaxed);
    net.tx_shared
        .req_prod
        .store(prod.wrapping_add(1000), Ordering::Release);
    let _ = hypercall::evtchn_send(net.port);
    out!("net-evil: corrupted its ring (req_prod + 1000)");
    let _ = time::sleep_us(50_000);
    out!("net-evil: done, {refused} refused, {allowed} allowed");
}
