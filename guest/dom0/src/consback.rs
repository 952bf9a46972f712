//! The console back end: every domU's console ring ([`ferrite_abi::console_ring`]) reaches
//! dom0's console, one line at a time, prefixed with the domain (`dom0: console: dom<N>: `).
//!
//! dom0 finds each domU's ring and port with `DOMCTL CONSOLE`, binds the port, and reads the
//! ring with grant copies only (it never maps a domU's page): the indices first, then the bytes
//! between them, then it publishes the new consumer index and notifies the domU. A ring whose
//! indices are impossible (a hostile or broken front end) is reported and disconnected; the
//! other domains' consoles go on.
//!
//! Each domain's last lines are kept ([`history`]) for the toolstack's `console` command, which
//! also follows one domain ([`follow`]): its lines are printed as they are, without the prefix.
//! Domains the toolstack creates are connected with [`rescan`], and dropped when they go.

use crate::events;
use crate::psci::hypercall;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use ferrite_abi::call::{self, domctl};
use ferrite_abi::console_ring::{self as cr, OUT_SIZE};
use ferrite_abi::grant::{self, GrantCopy, GrantPtr, copy};
use ferrite_abi::{errno, evtchn as ev};
use spin::Mutex;

struct Back {
    dom: u16,
    gref: u32,
    port: u32,
    line: Vec<u8>,
    lines: u64,
    dead: bool,
    /// Its last [`HISTORY`] lines.
    history: VecDeque<String>,
}

static BACKS: Mutex<Vec<Back>> = Mutex::new(Vec::new());
/// Lines kept per domain for `console`.
const HISTORY: usize = 100;
/// 1 + the domain whose lines are printed bare (the toolstack's `console`), 0 for none.
static FOLLOW: AtomicU64 = AtomicU64::new(0);

/// Binds domain `d`'s console port, if it has a console; `None` if it has none or the bind
/// failed (said on the console).
fn connect(d: u64) -> Option<Back> {
    let mut x1 = 0u64;
    let port = crate::psci::hypercall_x1(call::DOMCTL, domctl::CONSOLE, d, 0, &mut x1);
    if port < 0 {
        return None;
    }
    match events::op(ev::BIND_INTERDOMAIN, d, port as u64) {
        Ok(local) => {
            println!("dom0: console: dom{d}: connected (its port {port}, ours {local})");
            Some(Back {
                dom: d as u16,
                gref: x1 as u32,
                port: local as u32,
                line: Vec::new(),
                lines: 0,
                dead: false,
                history: VecDeque::new(),
            })
        }
        Err(e) => {
            println!("dom0: console: dom{d}: cannot bind port {port}: {e}");
            None
        }
    }
}

/// Connects to every domU that has a console ring.
pub fn start() {
    if !events::ready() {
        return;
    }
    let mut d = 0u64;
    let mut backs = BACKS.lock();
    loop {
        let next = hypercall(call::DOMCTL, domctl::NEXT_DOMAIN, d, 0);
        if next < 0 {
            break;
        }
        d = next as u64;
        if let Some(b) = connect(d) {
            backs.push(b);
        }
    }
    let checks: Vec<(u16, u32)> = backs.iter().map(|b| (b.dom, b.gref)).collect();
    drop(backs);
    // Output written before we connected is drained now.
    service(true);
    for (dom, gref) in checks {
        map_check(dom, gref);
    }
}

/// Maps a console page through the grant window, reads its producer index there, checks it
/// against a grant copy of the same word, and unmaps it: `dom0: grant map: ...`.
fn map_check(dom: u16, gref: u32) {
    let (ipa, ma) = match crate::gcopy::map(dom, gref, true) {
        Ok(x) => x,
        Err(e) => return println!("dom0: grant map: dom{dom}: MAP failed: {e}"),
    };
    // SAFETY: Ferrite just mapped a granted page at `ipa`, inside the grant window, which
    // dom0's own map covers as memory; an aligned u32 read.
    let seen =
        unsafe { core::ptr::read_volatile((ipa as usize + cr::OFFSET_OUT_PROD) as *const u32) };
    let copied = crate::gcopy::read_u32(dom, gref, cr::OFFSET_OUT_PROD);
    let again = crate::gcopy::unmap(ipa).and_then(|()| crate::gcopy::unmap(ipa));
    match (copied, again) {
        (Ok(c), Err(errno::Errno::NoEnt)) if c == seen || c >= seen => println!(
            "dom0: grant map: dom{dom}: console page at {ipa:#x} (machine {ma:#x}), out_prod {seen} as copied, unmapped"
        ),
        other => println!("dom0: grant map: dom{dom}: FAILED: mapped {seen}, {other:?}"),
    }
}

/// Brings the connections up to date with the domains that exist: drains and drops those whose
/// domain is gone (or `gone` says is going, or whose port is no longer bound to it), connects
/// new domUs (the toolstack's, restarted ones). Quiet about domains it already serves.
pub fn rescan(gone: Option<u64>) {
    if !events::ready() {
        return;
    }
    let ids = crate::toolstack::ctl::domain_ids();
    let mut backs = BACKS.lock();
    backs.retain(|b| {
        let keep = ids.contains(&(b.dom as u64)) && gone != Some(b.dom as u64) && !stale(b);
        if !keep && !b.dead {
            let _ = events::op(ev::CLOSE, b.port as u64, 0);
        }
        keep
    });
    drop(backs);
    // What the remaining domains wrote is printed before anything new connects.
    service(true);
    let mut backs = BACKS.lock();
    for &d in ids.iter().filter(|&&d| d != 0 && gone != Some(d)) {
        if !backs.iter().any(|b| b.dom as u64 == d)
            && let Some(b) = connect(d)
        {
            backs.push(b);
        }
    }
}

/// Whether our port no longer leads to the domain's console: the domain went (its id may have
/// been given to another, a restarted one), leaving our port unbound.
fn stale(b: &Back) -> bool {
    if b.dead {
        return false;
    }
    let mut r = [0u64; 6];
    let kind = crate::psci::hypercall_regs(
        call::EVTCHN_OP,
        ev::STATUS,
        b.port as u64,
        ferrite_abi::call::DOMID_SELF as u64,
        &mut r,
    );
    !(kind == ev::status::INTERDOMAIN as i64 && r[0] == b.dom as u64)
}

/// Domain `dom`'s last lines (and its unfinished one), or `None` if dom0 does not serve its
/// console.
pub fn history(dom: u64) -> Option<Vec<String>> {
    service(true);
    let backs = BACKS.lock();
    let b = backs.iter().find(|b| b.dom as u64 == dom)?;
    let mut h: Vec<String> = b.history.iter().cloned().collect();
    if !b.line.is_empty() {
        h.push(String::from_utf8_lossy(&b.line).into_owned());
    }
    Some(h)
}

/// Prints `dom`'s new lines bare (no prefix) until [`unfollow`].
pub fn follow(dom: u64) {
    FOLLOW.store(dom + 1, Ordering::Release);
}

pub fn unfollow() {
    FOLLOW.store(0, Ordering::Release);
}

fn gcopy(ops: &mut [GrantCopy]) -> Result<(), errno::Errno> {
    let r = hypercall(
        call::GNTTAB_OP,
        grant::COPY,
        ops.as_mut_ptr() as u64,
        ops.len() as u64,
    );
    errno::result(r as u64)?;
    for op in ops.iter() {
        if op.status != 0 {
            return Err(errno::Errno::from_ret(op.status as i64).unwrap_or(errno::Errno::Inval));
        }
    }
    Ok(())
}

fn from_ring(b: &Back, offset: usize, into: &mut [u8]) -> GrantCopy {
    GrantCopy {
        source: GrantPtr {
            gref_or_va: b.gref as u64,
            domid: b.dom,
            offset: offset as u16,
            pad: 0,
        },
        dest: GrantPtr {
            gref_or_va: into.as_mut_ptr() as u64,
            ..GrantPtr::default()
        },
        len: into.len() as u16,
        flags: copy::SOURCE_GREF,
        status: 0,
    }
}

/// Drains the rings whose port fired (all of them if `all`).
pub fn service(all: bool) {
    // The echo backend has no hook of its own in the main loop: it looks in here.
    crate::echo::service();
    let mut backs = BACKS.lock();
    for b in backs.iter_mut().filter(|b| !b.dead) {
        if !events::take(b.port) && !all {
            continue;
        }
        if let Err(why) = drain(b) {
            println!("dom0: console: dom{}: {why}: disconnected", b.dom);
            b.dead = true;
            let _ = events::op(ev::CLOSE, b.port as u64, 0);
        }
    }
}

fn drain(b: &mut Back) -> Result<(), String> {
    // out_cons and out_prod, adjacent: one copy reads both.
    let mut raw = [0u8; 8];
    gcopy(&mut [from_ring(b, cr::OFFSET_OUT_CONS, &mut raw)])
        .map_err(|e| alloc::format!("reading its ring indices: {e}"))?;
    let cons = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let prod = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let Some(pieces) = cr::pending(cons, prod, OUT_SIZE) else {
        return Err(alloc::format!(
            "ring corrupt (out_cons {cons}, out_prod {prod})"
        ));
    };
    let mut data = alloc::vec![0u8; pieces[0].1 + pieces[1].1];
    let (first, second) = data.split_at_mut(pieces[0].1);
    let mut ops = Vec::new();
    if !first.is_empty() {
        ops.push(from_ring(b, cr::OFFSET_OUT + pieces[0].0, first));
    }
    if !second.is_empty() {
        ops.push(from_ring(b, cr::OFFSET_OUT + pieces[1].0, second));
    }
    gcopy(&mut ops).map_err(|e| alloc::format!("reading its output: {e}"))?;
    for &c in &data {
        if c == b'\n' {
            let line = String::from_utf8_lossy(&b.line);
            let line = line.trim_end_matches('\r');
            if FOLLOW.load(Ordering::Acquire) == b.dom as u64 + 1 {
                println!("{line}");
            } else {
                println!("dom0: console: dom{}: {}", b.dom, line);
            }
            if b.history.len() == HISTORY {
                b.history.pop_front();
            }
            b.history.push_back(line.into());
            b.line.clear();
            b.lines += 1;
        } else if b.line.len() < 512 {
            b.line.push(c);
        }
    }
    // Publish the consumer index (when it moved), then tell the domU there is room.
    if prod == cons {
        let _ = events::op(ev::SEND, b.port as u64, 0);
        return Ok(());
    }
    let mut newcons = prod.to_le_bytes();
    let mut w = from_ring(b, cr::OFFSET_OUT_CONS, &mut newcons);
    core::mem::swap(&mut w.source, &mut w.dest);
    w.flags = copy::DEST_GREF;
    gcopy(&mut [w]).map_err(|e| alloc::format!("writing its ring index: {e}"))?;
    let _ = events::op(ev::SEND, b.port as u64, 0);
    Ok(())
}
