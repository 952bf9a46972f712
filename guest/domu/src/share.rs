//! `share-grant <peer>` / `share-map <peer>`: one PV domU maps a page another granted it,
//! through its own validated page tables.
//!
//! The granter fills a page with a pattern, grants it read-write to `peer` as its first free
//! reference (8), and waits for the peer to write a mark into it; ending the grant then
//! must fail, and the granter answers in the page so the peer unmaps (`share-grant: ending the grant while it is mapped: refused (in use)`). Once the
//! peer has unmapped it, ending succeeds: `share-grant: peer wrote its mark, grant ended after
//! unmap`. The mapper asks Ferrite for the frame (`GNTTAB_OP MAP`, retrying until the granter
//! has set up its table), maps it at a free VA with `MMU_UPDATE`, checks the pattern, writes
//! its mark, unmaps it (entry, then `UNMAP`) and checks that `UNMAP` before the entry is gone
//! is `-EBUSY` and a foreign frame it was not granted is refused:
//! `share-map: mapped dom<p>'s page, pattern ok, mark written, unmapped`.

use crate::front;
use crate::guest::mm;
use core::sync::atomic::{AtomicU64, Ordering};
use ferrite_abi::desc::{self, NORMAL, PXN, UXN};
use ferrite_abi::grant::{self, GREF_FIRST_FREE};
use ferrite_abi::{Errno, StartInfo};
use ferrite_pv::{hypercall, time};

const MARK: u64 = 0x6d61_7070_6564_2121;
/// The granter's answer: it has tried to end the grant; the mapper may unmap.
const ACK: u64 = 0x6772_616e_7465_7221;

fn word(va: u64, i: usize) -> &'static AtomicU64 {
    // SAFETY: a page mapped writable for the caller; aligned words; the other domain writes it
    // concurrently, hence atomics.
    unsafe { &*((va as *const AtomicU64).add(i)) }
}

pub fn grant_side(peer: u16) {
    let (va, ma) = match front::frame() {
        Ok(x) => x,
        Err(e) => return out!("share-grant: FAIL: {e}"),
    };
    for i in 1..512 {
        word(va, i).store(i as u64 * 0x0101_0101, Ordering::Relaxed);
    }
    let gref = match front::grant_to(peer, ma) {
        Ok(g) => g,
        Err(e) => return out!("share-grant: FAIL: {e}"),
    };
    let end = time::now() + time::us_to_ticks(5_000_000);
    while word(va, 0).load(Ordering::Acquire) != MARK {
        if time::now() > end {
            return out!("share-grant: FAIL: no mark from dom{peer} within 5 s");
        }
        let _ = time::sleep_us(1000);
    }
    if front::try_end_grant(gref) {
        out!("share-grant: ending the grant while it is mapped: ALLOWED");
    } else {
        out!("share-grant: ending the grant while it is mapped: refused (in use)");
    }
    word(va, 0).store(ACK, Ordering::Release);
    // The peer unmaps right after writing its mark.
    while !front::try_end_grant(gref) {
        if time::now() > end {
            return out!("share-grant: FAIL: the grant stayed in use");
        }
        let _ = time::sleep_us(1000);
    }
    out!("share-grant: peer wrote its mark, grant ended after unmap");
}

fn gnttab(cmd: u64, a: u64, b: u64, c: u64) -> Result<u64, Errno> {
    // SAFETY: MAP and UNMAP read no guest buffer; the frame they name is only reachable once
    // this domain maps it itself.
    let (r0, _) = unsafe { hypercall::raw(ferrite_abi::call::GNTTAB_OP as u64, cmd, a, b, c, 0) };
    ferrite_abi::errno::result(r0)
}

pub fn map_side(si: &StartInfo, peer: u16) {
    let gref = GREF_FIRST_FREE as u64;
    let end = time::now() + time::us_to_ticks(5_000_000);
    let ma = loop {
        match gnttab(grant::MAP, peer as u64, gref, 0) {
            Ok(ma) => break ma,
            Err(_) if time::now() < end => {
                let _ = time::sleep_us(1000);
            }
            Err(e) => return out!("share-map: FAIL: MAP: {e}"),
        }
    };
    // A VA past the initial mapping, in the kernel's half.
    let va = si.virt_base + si.nr_pages * 4096 + (1 << 21);
    let root = mm().kernel_root();
    let leaf = desc::page(ma, NORMAL | UXN | PXN);
    // SAFETY: `va` is unused (past the initial mapping); the mapping adds a page nothing else
    // uses.
    let mapped = unsafe { mm().map(root, va, leaf) }.and_then(|()| mm().flush());
    if let Err(e) = mapped {
        return out!("share-map: FAIL: mapping it: {e:?}");
    }
    let ok = (1..512).all(|i| word(va, i).load(Ordering::Relaxed) == i as u64 * 0x0101_0101);
    word(va, 0).store(MARK, Ordering::Release);
    // Stay mapped until the granter has tried to end the grant.
    let wait = time::now() + time::us_to_ticks(5_000_000);
    while word(va, 0).load(Ordering::Acquire) != ACK && time::now() < wait {
        let _ = time::sleep_us(1000);
    }
    let busy = gnttab(grant::UNMAP, ma, 0, 0);
    // SAFETY: nothing uses `va` any more.
    let unmapped = unsafe { mm().unmap(root, va) }.and_then(|()| mm().flush());
    let done = gnttab(grant::UNMAP, ma, 0, 0);
    // A frame that is not granted to it: the peer's next frame.
    // SAFETY: `va` is unused again; the update must be refused.
    let other = unsafe { mm().map(root, va, desc::page(ma + 4096, NORMAL | UXN | PXN)) }
        .and_then(|()| mm().flush());
    match (ok, busy, unmapped, done, other) {
        (true, Err(Errno::Busy), Ok(()), Ok(_), Err(_)) => {
            out!("share-map: mapped dom{peer}'s page, pattern ok, mark written, unmapped")
        }
        r => out!("share-map: FAIL: {r:?}"),
    }
}
