//! What every frontend in this domU does: a grant table, frames granted to dom0, an event
//! channel for dom0, and the device-bus handshake ([`ferrite_abi::devbus`]).

use crate::guest::mm;
use core::sync::atomic::Ordering;
use ferrite_abi::devbus::{self, state};
use ferrite_abi::evtchn as ev;
use ferrite_abi::grant::{self, GrantEntry, flags};
use ferrite_abi::{DOMID_SELF, call};
use ferrite_pv::rt::restores;
use ferrite_pv::{cpu, events, hypercall, time};

/// The grant table: VA of its first page (its pages are consecutive), its entries, and the
/// [`ferrite_pv::rt::restores`] count it was given to Ferrite under (a restore forgets it).
/// Set up on first use.
static TABLE: ferrite_pv::sync::SpinLock<Table> = ferrite_pv::sync::SpinLock::new(Table {
    va: 0,
    entries: 0,
    restores: 0,
});

struct Table {
    va: u64,
    entries: u32,
    restores: u64,
}
/// The next free grant reference.
static NEXT_GREF: core::sync::atomic::AtomicU32 =
    core::sync::atomic::AtomicU32::new(grant::GREF_FIRST_FREE);

pub fn device_op(cmd: u64, a: u64, b: u64, c: u64) -> (i64, u64) {
    // SAFETY: DEVICE_OP reads no buffer, changes no mapping, starts no code.
    let (r0, r1) = unsafe { hypercall::raw(call::DEVICE_OP as u64, cmd, a, b, c, 0) };
    (r0 as i64, r1)
}

pub fn take_pending(port: u32) -> bool {
    let Some(s) = events::shared_info() else {
        return false;
    };
    let (w, bit) = ev::word_bit(port);
    s.evtchn_pending[w].fetch_and(!bit, Ordering::AcqRel) & bit != 0
}

/// Waits up to `ms` for `port` to fire, or until the domain is restored ([`restores`]).
/// Waits in WFI with IRQs masked, so the upcall that an event raises keeps it from sleeping
/// (or ends the sleep): trapped, WFI blocks like `SCHED_OP BLOCK`; under `vwfi=native` it
/// waits at EL1. IRQs are opened between waits for the handler to acknowledge the upcall.
pub fn wait_port(port: u32, ms: u64) -> bool {
    let end = time::now() + time::us_to_ticks(ms * 1000);
    let restores_at_start = restores();
    let was_masked = cpu::irqs_masked();
    cpu::irq_mask();
    let mut got = false;
    let _ = hypercall::set_timer(end);
    loop {
        if take_pending(port) {
            got = true;
            break;
        }
        // After a restore the port is gone: the caller reconnects.
        if time::now() >= end || restores() != restores_at_start {
            break;
        }
        cpu::wfi();
        cpu::irq_unmask();
        cpu::irq_mask();
    }
    if !was_masked {
        cpu::irq_unmask();
    }
    got
}

/// A zeroed frame: (VA in the initial mapping, machine address).
pub fn frame() -> Result<(u64, u64), &'static str> {
    let mut m = mm();
    let (pfn, ma) = m.alloc_zeroed().map_err(|_| "out of frames")?;
    Ok((m.frames.va(pfn), ma))
}

/// Grants frame `ma` to dom0 read-write and returns the reference.
pub fn grant_to_dom0(ma: u64) -> Result<u32, &'static str> {
    grant_to(0, ma)
}

/// Grants frame `ma` to domain `dom` read-write and returns the reference.
pub fn grant_to(dom: u16, ma: u64) -> Result<u32, &'static str> {
    let t = table()?;
    let gref = NEXT_GREF.fetch_add(1, Ordering::Relaxed);
    write_entry(&t, gref, dom, ma)?;
    Ok(gref)
}

/// Grants the frame mapped at `va` (in the initial mapping) to `dom` again, as entry `gref`,
/// at its machine address now: what a frontend does for each of its grants after a restore
/// (which emptied the table and moved every frame), so that its references stay the same.
pub fn grant_again(gref: u32, dom: u16, va: u64) -> Result<(), &'static str> {
    let ma = mm()
        .frames
        .va_to_ma(va)
        .ok_or("a granted page is not ours")?;
    write_entry(&*table()?, gref, dom, ma)
}

fn write_entry(t: &Table, gref: u32, dom: u16, ma: u64) -> Result<(), &'static str> {
    if gref >= t.entries {
        return Err("grant table full");
    }
    // SAFETY: `t.va` is our grant table, mapped writable; entry `gref` is inside it.
    let e = unsafe { &*((t.va as *const GrantEntry).add(gref as usize)) };
    e.domid.store(dom, Ordering::Relaxed);
    e.frame.store((ma >> 12) as u32, Ordering::Relaxed);
    e.flags.store(flags::PERMIT_ACCESS, Ordering::Release);
    Ok(())
}

/// The grant table, locked, given to Ferrite: on first use, and again (the same pages, at
/// their new machine addresses, emptied) after a restore.
fn table() -> Result<ferrite_pv::sync::SpinGuard<'static, Table>, &'static str> {
    let mut t = TABLE.lock();
    let now = restores();
    if t.va == 0 {
        let (va, entries) = set_table()?;
        *t = Table {
            va,
            entries,
            restores: now,
        };
    } else if t.restores != now {
        let pages = (t.entries / grant::ENTRIES_PER_PAGE) as u64;
        let m = mm();
        let ma = m
            .frames
            .va_to_ma(t.va)
            .ok_or("the grant table is not ours")?;
        let consecutive =
            (0..pages).all(|i| m.frames.va_to_ma(t.va + i * 4096) == Some(ma + i * 4096));
        drop(m);
        let pages = if consecutive { pages } else { 1 };
        // SAFETY: the table's pages are ours, mapped writable, and hold only grant entries,
        // which no one else honours now (Ferrite forgot the table at the restore).
        unsafe { core::ptr::write_bytes(t.va as *mut u8, 0, pages as usize * 4096) };
        // SAFETY: SET_TABLE reads nothing; the frames are ours.
        unsafe { hypercall::gnttab_op(grant::SET_TABLE, ma, pages) }
            .map_err(|_| "SET_TABLE refused after the restore")?;
        t.entries = pages as u32 * grant::ENTRIES_PER_PAGE;
        t.restores = now;
    }
    Ok(t)
}

/// Gives Ferrite our grant table: the most pages Ferrite allows ([`grant::MAX_TABLE_PAGES`], a
/// benchmark's requests grant hundreds of pages) when we have them consecutive in both our
/// VAs and machine addresses, else one. Returns (its VA, its entries).
fn set_table() -> Result<(u64, u32), &'static str> {
    let pages = grant::MAX_TABLE_PAGES;
    let mut m = mm();
    if let Some(pfn) = m.alloc.alloc_contiguous(pages) {
        let ma = m.frames.ma(pfn);
        let consecutive = (0..pages).all(|i| {
            let want = ma.map(|a| a + i * 4096);
            m.frames.ma(pfn + i) == want
        });
        let va = m.frames.va(pfn);
        drop(m);
        if let (true, Some(ma)) = (consecutive, ma) {
            // SAFETY: the frames are ours, free until now, and mapped writable in the initial
            // map at consecutive VAs: nothing Rust holds lives in them.
            unsafe { core::ptr::write_bytes(va as *mut u8, 0, pages as usize * 4096) };
            // SAFETY: SET_TABLE reads nothing; the frames are ours and free.
            if unsafe { hypercall::gnttab_op(grant::SET_TABLE, ma, pages) }.is_ok() {
                return Ok((va, pages as u32 * grant::ENTRIES_PER_PAGE));
            }
        }
        // Not consecutive (or refused): one page will do.
        let mut m = mm();
        for i in 0..pages {
            m.free_frame(pfn + i);
        }
    } else {
        drop(m);
    }
    let (va, table_ma) = frame()?;
    // SAFETY: SET_TABLE reads nothing; the frame is ours and free.
    unsafe { hypercall::gnttab_op(grant::SET_TABLE, table_ma, 1) }
        .map_err(|_| "SET_TABLE refused")?;
    Ok((va, grant::ENTRIES_PER_PAGE))
}

/// The port of the device bus's virtual IRQ (raised when a backend changes one of our
/// devices), bound on first use; 0 if it could not be.
/// With the [`restores`] count it was bound under: a restore forgets it.
static BUS_PORT: ferrite_pv::sync::SpinLock<Option<(u32, u64)>> =
    ferrite_pv::sync::SpinLock::new(None);

fn bus_port() -> u32 {
    let mut b = BUS_PORT.lock();
    let now = restores();
    match *b {
        Some((p, r)) if r == now => p,
        _ => {
            let p = hypercall::evtchn_op(ev::BIND_VIRQ, ev::virq::DEVBUS as u64, 0)
                .map_or(0, |p| p as u32);
            *b = Some((p, now));
            p
        }
    }
}

/// Publishes device `key` (its ring page's grant, a new port for dom0, the
/// [`devbus::feature`] bits it asks for and its parameter) and waits up to 5 s
/// for dom0's backend to connect. Returns (port, the backend's parameter, the feature bits it
/// honours). It sleeps until the
/// device bus's virtual IRQ says a backend changed something (at most 10 ms at a time, as the
/// IRQ goes to vCPU 0), rather than polling: a frontend waiting for dom0 to get round to it
/// takes no CPU from dom0 meanwhile.
pub fn handshake(
    key: u64,
    ring_gref: u32,
    features: u64,
    param: u64,
) -> Result<(u32, u64, u64), &'static str> {
    let port = hypercall::evtchn_op(ev::ALLOC_UNBOUND, 0, DOMID_SELF as u64)
        .map_err(|_| "ALLOC_UNBOUND refused")? as u32;
    let r: u64;
    // SAFETY: DEVICE_OP PUBLISH reads no buffer, changes no mapping, starts no code; x0..x3
    // are clobbered by the call.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") call::DEVICE_OP as u64 => r,
            inout("x1") devbus::PUBLISH => _,
            inout("x2") key => _,
            inout("x3") ring_gref as u64 => _,
            in("x4") port as u64,
            in("x5") features,
            in("x6") param,
            options(nostack)
        );
    }
    let r = r as i64;
    if r < 0 {
        return Err("PUBLISH refused");
    }
    let end = time::now() + time::us_to_ticks(5_000_000);
    loop {
        let (st, param, honoured) = get(key);
        let back = ((st >> 8) & 0xff) as u8;
        if st >= 0 && back == state::CONNECTED {
            return Ok((port, param, honoured));
        }
        if st >= 0 && back == state::CLOSED {
            return Err("the backend refused the device");
        }
        if time::now() > end {
            return Err("no backend connected within 5 s");
        }
        match bus_port() {
            0 => drop(time::sleep_us(1000)),
            p => drop(wait_port(p, 10)),
        }
    }
}

/// `DEVICE_OP GET` for our own device: (x0, x3 = the backend's parameter, x5 = its features).
fn get(key: u64) -> (i64, u64, u64) {
    let (x0, x3, x5): (u64, u64, u64);
    // SAFETY: DEVICE_OP GET reads no buffer; x0..x3 are clobbered by the call.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") call::DEVICE_OP as u64 => x0,
            inout("x1") devbus::GET => _,
            inout("x2") DOMID_SELF as u64 => _,
            inout("x3") key => x3,
            out("x4") _, out("x5") x5, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _,
            options(nostack)
        );
    }
    (x0 as i64, x3, x5)
}

/// Tells the backend this device is closed.
pub fn close(key: u64) {
    device_op(devbus::SET_FRONT_STATE, key, state::CLOSED as u64, 0);
}

/// Grants again entry `gref`, which [`try_end_grant`] ended, to the same domain and frame (a
/// frontend without persistent grants grants its data pages for each request). False if the
/// entry was not ended.
pub fn regrant(gref: u32) -> bool {
    swap_flags(gref, 0, flags::PERMIT_ACCESS)
}

/// Tries to end grant `gref` as Xen's `gnttab_end_foreign_access` does: a compare-and-swap of
/// its flags from "granted" to 0, which fails while Ferrite marks the entry in use (a copy in
/// progress, or dom0 mapping it). True if the grant ended.
pub fn try_end_grant(gref: u32) -> bool {
    swap_flags(gref, flags::PERMIT_ACCESS, 0)
}

/// Compare-and-swaps entry `gref`'s flags from `from` to `to`; false if they were not `from`
/// (or there is no such entry).
fn swap_flags(gref: u32, from: u16, to: u16) -> bool {
    let t = TABLE.lock();
    if t.va == 0 || gref >= t.entries {
        return false;
    }
    // SAFETY: `t.va` is our grant table, mapped writable; entry `gref` is inside it.
    let e = unsafe { &*((t.va as *const GrantEntry).add(gref as usize)) };
    e.flags
        .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}
