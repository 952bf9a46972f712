//! Shared-memory I/O modes.
//!
//! - `ring-console <n> [gap_ms]`: writes `n` lines (`ring line <i> of <n>`) into its console ring
//!   (not `CONSOLE_IO`), notifying dom0 through the console event channel, `gap_ms` apart;
//!   waits until dom0 has consumed them all and prints
//!   `domU<id>: ring-console: <n> lines consumed by dom0, <k> notifications back`, plus the
//!   event round trip it measured (`ring-console: round trip <t> ns min over <r>`).
//! - `evil-io`: tries bad event-channel and grant calls (each must be refused with the ABI's
//!   errno), floods its console port, then corrupts its console ring's indices, which dom0
//!   must detect and disconnect. Ends with `evil-io: done, <n> refused, <m> allowed`.

use core::sync::atomic::Ordering;
use ferrite_abi::console_ring::{ConsoleRing, OUT_SIZE};
use ferrite_abi::evtchn as ev;
use ferrite_abi::grant::{self, GrantCopy, GrantPtr, copy};
use ferrite_abi::{Errno, StartInfo};
use ferrite_pv::{hypercall, time};

fn ring(si: &StartInfo) -> Option<&'static ConsoleRing> {
    // SAFETY: the builder maps the console page writable in the initial mapping, for good;
    // the fields dom0 writes (through Ferrite's grant copies) are atomics or bytes we only
    // write.
    (si.console_ring != 0).then(|| unsafe { &*(si.console_ring as *const ConsoleRing) })
}

use crate::front::{take_pending, wait_port};

fn put(r: &ConsoleRing, port: u32, bytes: &[u8]) -> Result<(), &'static str> {
    for &b in bytes {
        let mut spins = 0;
        while r
            .out_prod
            .load(Ordering::Relaxed)
            .wrapping_sub(r.out_cons.load(Ordering::Acquire)) as usize
            >= OUT_SIZE
        {
            // Full: dom0 notifies when it has consumed.
            wait_port(port, 10);
            spins += 1;
            if spins > 500 {
                return Err("ring stayed full for 5 s");
            }
        }
        let prod = r.out_prod.load(Ordering::Relaxed);
        let slot = &r.out[prod as usize % OUT_SIZE] as *const u8 as *mut u8;
        // SAFETY: a byte of our own console page that dom0 only reads.
        unsafe { slot.write_volatile(b) };
        r.out_prod.store(prod.wrapping_add(1), Ordering::Release);
    }
    hypercall::evtchn_send(port).map_err(|_| "EVTCHN send failed")
}

pub fn ring_console(si: &StartInfo, n: u64, gap_ms: u64) {
    let (Some(r), port) = (ring(si), si.console_evtchn) else {
        out!("ring-console: no console ring");
        return;
    };
    if port == 0 {
        out!("ring-console: no console event channel");
        return;
    }
    let mut back = 0u64;
    for i in 1..=n {
        let mut line = Line::default();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("ring line {i} of {n}\n"));
        if let Err(e) = put(r, port, line.bytes()) {
            out!("ring-console: {e}");
            return;
        }
        if take_pending(port) {
            back += 1;
        }
        if gap_ms > 0 {
            let _ = time::sleep_us(gap_ms * 1000);
        }
    }
    // Wait for dom0 to consume everything.
    let end = time::now() + time::us_to_ticks(5_000_000);
    while r.out_cons.load(Ordering::Acquire) != r.out_prod.load(Ordering::Relaxed)
        && time::now() < end
    {
        if wait_port(port, 10) {
            back += 1;
        }
    }
    let left = r
        .out_prod
        .load(Ordering::Relaxed)
        .wrapping_sub(r.out_cons.load(Ordering::Acquire));
    if left != 0 {
        out!("ring-console: dom0 left {left} bytes unconsumed");
        return;
    }
    out!("ring-console: {n} lines consumed by dom0, {back} notifications back");
    // Event round trip: an empty notification, answered by dom0's back end.
    let mut best = u64::MAX;
    let rounds = 20;
    let mut got = 0;
    for _ in 0..rounds {
        take_pending(port);
        let t0 = time::now();
        let _ = hypercall::evtchn_send(port);
        if wait_port(port, 100) {
            best = best.min(time::now() - t0);
            got += 1;
        }
    }
    let ns = if got > 0 {
        (best as u128 * 1_000_000_000 / time::hz().max(1) as u128) as u64
    } else {
        0
    };
    out!(
        "ring-console: round trip {} us ({ns} ns) min over {got} of {rounds}",
        ns / 1000
    );
}

/// A line formatted without a heap.
struct Line {
    buf: [u8; 64],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl Line {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

struct Tally {
    refused: u32,
    allowed: u32,
}

impl Tally {
    fn check(&mut self, name: &str, r: Result<u64, Errno>, want: Errno) {
        match r {
            Err(e) if e == want => {
                self.refused += 1;
                out!("evil-io: {name}: refused {e}");
            }
            Err(e) => {
                self.refused += 1;
                out!("evil-io: {name}: refused {e} (unexpected, the ABI says {want})");
            }
            Ok(v) => {
                self.allowed += 1;
                out!("evil-io: {name}: ALLOWED ({v})");
            }
        }
    }

    fn copy(&mut self, name: &str, op: GrantCopy, want: Errno) {
        let mut ops = [op];
        let r = hypercall::grant_copy(&mut ops).and_then(|_| {
            if ops[0].status == 0 {
                Ok(0)
            } else {
                Err(Errno::from_ret(ops[0].status as i64).unwrap_or(Errno::NoSys))
            }
        });
        self.check(name, r, want);
    }
}

fn gptr(gref: u64, domid: u16, offset: u16) -> GrantPtr {
    GrantPtr {
        gref_or_va: gref,
        domid,
        offset,
        pad: 0,
    }
}

pub fn evil(si: &StartInfo) {
    let mut t = Tally {
        refused: 0,
        allowed: 0,
    };
    let mut buf = [0u8; 64];
    let local = gptr(buf.as_mut_ptr() as u64, 0, 0);
    let op = |source, dest, len, flags| GrantCopy {
        source,
        dest,
        len,
        flags,
        status: 0,
    };
    t.check(
        "send on port 0",
        hypercall::evtchn_op(ev::SEND, 0, 0),
        Errno::NoEnt,
    );
    t.check(
        "send on port 5000",
        hypercall::evtchn_op(ev::SEND, 5000, 0),
        Errno::Inval,
    );
    t.check(
        "bind to another domU's console port (offered to dom0)",
        hypercall::evtchn_op(ev::BIND_INTERDOMAIN, 1, 1),
        Errno::Inval,
    );
    t.check(
        "bind to a domain that does not exist",
        hypercall::evtchn_op(ev::BIND_INTERDOMAIN, 63, 1),
        Errno::NoEnt,
    );
    t.check(
        "allocate a port in dom0",
        hypercall::evtchn_op(ev::ALLOC_UNBOUND, 0, 0),
        Errno::Perm,
    );
    t.check(
        "read dom0's port status",
        hypercall::evtchn_op(ev::STATUS, 1, 0),
        Errno::Perm,
    );
    t.check(
        "replace its shared-info page",
        hypercall::evtchn_op(ev::SET_SHARED_INFO, 0x4000_0000, 0),
        Errno::Exist,
    );
    t.check(
        "bind an unknown VIRQ",
        hypercall::evtchn_op(ev::BIND_VIRQ, 99, 0),
        Errno::Inval,
    );
    t.check(
        "bind an IPI to vCPU 40",
        hypercall::evtchn_op(ev::BIND_IPI, 40, 0),
        Errno::NoEnt,
    );
    t.copy(
        "copy from dom0's grant 8",
        op(gptr(8, 0, 0), local, 16, copy::SOURCE_GREF),
        Errno::NoEnt,
    );
    t.copy(
        "copy from its own console grant (dom0's alone)",
        op(
            gptr(grant::GREF_CONSOLE as u64, si.domid as u16, 0),
            local,
            16,
            copy::SOURCE_GREF,
        ),
        Errno::Perm,
    );
    t.copy("copy 5000 bytes", op(local, local, 5000, 0), Errno::Inval);
    t.copy(
        "copy past a granted frame's end",
        op(gptr(9, 0, 4000), local, 200, copy::SOURCE_GREF),
        Errno::Inval,
    );
    let bad = hypercall::grant_copy(unsafe_bad_ops());
    t.check("copy with an unmapped op array", bad, Errno::Fault);
    // SAFETY: SET_TABLE reads nothing; the frames named are refused or ours.
    let r = unsafe { hypercall::gnttab_op(grant::SET_TABLE, 0x4000_0000, 1) };
    t.check("grant table in dom0's memory", r, Errno::Perm);
    // A real table in one of its free frames, then a reference it never granted.
    let ma = crate::guest::mm().alloc_zeroed().map_or(0, |(_, ma)| ma);
    // SAFETY: as above.
    let r = unsafe { hypercall::gnttab_op(grant::SET_TABLE, ma, 1) };
    if r.is_ok() {
        t.copy(
            "copy through a reference it never granted",
            op(gptr(20, si.domid as u16, 0), local, 8, copy::SOURCE_GREF),
            Errno::Perm,
        );
        // SAFETY: as above.
        let again = unsafe { hypercall::gnttab_op(grant::SET_TABLE, ma, 1) };
        t.check("set the grant table twice", again, Errno::Exist);
    } else {
        out!("evil-io: could not set its own grant table: {r:?}");
        t.allowed += 1;
    }
    t.check("DOMCTL", errno_of(hypercall_domctl()), Errno::Perm);
    // Flood: dom0 must keep up (or coalesce) and keep serving the others.
    let port = si.console_evtchn;
    for _ in 0..10_000 {
        let _ = hypercall::evtchn_send(port);
    }
    out!("evil-io: flooded its console port with 10000 events");
    if let Some(r) = ring(si) {
        let cons = r.out_cons.load(Ordering::Acquire);
        r.out_prod
            .store(cons.wrapping_add(100_000), Ordering::Release);
        let _ = hypercall::evtchn_send(port);
        out!("evil-io: corrupted its console ring (out_prod = out_cons + 100000)");
        let _ = time::sleep_us(50_000);
    }
    out!(
        "evil-io: done, {} refused, {} allowed",
        t.refused,
        t.allowed
    );
}

fn unsafe_bad_ops() -> &'static mut [GrantCopy] {
    // SAFETY: never dereferenced here: only its address goes to Ferrite, which must refuse it
    // (nothing is mapped at 16 in a PV domU's address space).
    unsafe { core::slice::from_raw_parts_mut(16 as *mut GrantCopy, 1) }
}

fn hypercall_domctl() -> u64 {
    // SAFETY: DOMCTL reads no buffer.
    let (r0, _) = unsafe {
        hypercall::raw(
            ferrite_abi::call::DOMCTL as u64,
            ferrite_abi::call::domctl::NEXT_DOMAIN,
            0,
            0,
            0,
            0,
        )
    };
    r0
}

fn errno_of(r0: u64) -> Result<u64, Errno> {
    ferrite_abi::errno::result(r0)
}
