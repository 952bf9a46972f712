//! Modes for the lifecycle tests.
//!
//! - `counter <ms> [fault <n>]`: counts from 1, printing each value every `<ms>` ms with its
//!   interrupts on (so it answers dom0's shutdown requests), forever or until it reaches `<n>`,
//!   where it reads an address nothing maps (a real fault: its own exception handler reports it
//!   and asks Ferrite to end it as crashed). Its count lives in its registers and stack, so a
//!   saved and restored domain goes on from where it was.
//! - `console-echo <n>`: prints back the lines typed into its console ring.
//! - `evil-ctl`: calls every domain-control operation (DOMCTL, SCHED_CTL) a domU must not
//!   have, and reports each answer; each must be `-EPERM`.

use ferrite_abi::{Errno, call};
use ferrite_pv::{cpu, hypercall, time};

pub fn counter(ms: u64, fault_at: Option<u64>) -> ! {
    cpu::irq_unmask();
    let mut n: u64 = 0;
    loop {
        n += 1;
        out!("counter: {n}");
        if fault_at == Some(n) {
            out!("counter: faulting on purpose at {n}");
            let bad = core::hint::black_box(0xdead_0000_0000u64) as *const u64;
            // SAFETY: deliberately invalid; the resulting fault is the point of this mode.
            let v = unsafe { core::ptr::read_volatile(bad) };
            out!("counter: the bad read returned {v}: no fault?");
        }
        if let Err(e) = time::sleep_us(ms * 1000) {
            out!("counter: sleep refused: {e}");
        }
    }
}

pub fn evil_ctl() {
    use call::domctl as dc;
    let mut refused = 0;
    let mut allowed = 0;
    let calls: [(&str, u64, u64); 12] = [
        ("DOMCTL CREATE", call::DOMCTL as u64, dc::CREATE),
        ("DOMCTL PAUSE", call::DOMCTL as u64, dc::PAUSE),
        ("DOMCTL UNPAUSE", call::DOMCTL as u64, dc::UNPAUSE),
        ("DOMCTL DESTROY", call::DOMCTL as u64, dc::DESTROY),
        ("DOMCTL SHUTDOWN", call::DOMCTL as u64, dc::SHUTDOWN),
        ("DOMCTL GET_INFO", call::DOMCTL as u64, dc::GET_INFO),
        ("DOMCTL PHYSINFO", call::DOMCTL as u64, dc::PHYSINFO),
        ("DOMCTL DMESG", call::DOMCTL as u64, dc::DMESG),
        ("DOMCTL SAVE_BEGIN", call::DOMCTL as u64, dc::SAVE_BEGIN),
        (
            "DOMCTL RESTORE_BEGIN",
            call::DOMCTL as u64,
            dc::RESTORE_BEGIN,
        ),
        (
            "SCHED_CTL SET_WEIGHT",
            call::SCHED_CTL as u64,
            call::sched_ctl::SET_WEIGHT,
        ),
        (
            "SCHED_CTL SET_CAP",
            call::SCHED_CTL as u64,
            call::sched_ctl::SET_CAP,
        ),
    ];
    for (name, f, cmd) in calls {
        // Aimed at dom0 (id 0) and at itself: neither may be touched.
        // SAFETY: the arguments are plain numbers; Ferrite refuses the call before reading
        // memory (and a refusal is what this mode checks).
        let (r, _) = unsafe { hypercall::raw(f, cmd, 0, 0, 0, 0) };
        match Errno::from_ret(r as i64) {
            Some(Errno::Perm) => refused += 1,
            other => {
                allowed += 1;
                out!("evil-ctl: {name}: not refused with EPERM: {r:#x} ({other:?})");
            }
        }
    }
    out!("evil-ctl: {refused} refused with EPERM, {allowed} allowed");
}

/// `console-echo <n>`: reads `n` lines typed into its console ring (Ferrite's console focused
/// on this domain with Ctrl-A three times) and prints each back, then powers off.
pub fn console_echo(si: &ferrite_abi::StartInfo, n: u64) {
    use core::sync::atomic::Ordering;
    use ferrite_abi::console_ring::{ConsoleRing, IN_SIZE};
    if si.console_ring == 0 {
        out!("console-echo: no console ring");
        return;
    }
    // SAFETY: the builder maps the console page writable in the initial mapping, for good;
    // `inp` and the input indices are the input consumer's to read and advance.
    let ring = unsafe { &*(si.console_ring as *const ConsoleRing) };
    out!("console-echo: ready for {n} lines");
    let mut line = [0u8; 80];
    let mut len = 0;
    let mut got = 0;
    while got < n {
        let prod = ring.in_prod.load(Ordering::Acquire);
        let mut cons = ring.in_cons.load(Ordering::Relaxed);
        if prod.wrapping_sub(cons) as usize > IN_SIZE {
            out!("console-echo: input ring corrupt");
            return;
        }
        while cons != prod {
            let b = ring.inp[cons as usize % IN_SIZE];
            cons = cons.wrapping_add(1);
            match b {
                b'\r' | b'\n' => {
                    let text = core::str::from_utf8(&line[..len]).unwrap_or("?");
                    out!("console-echo: got '{text}'");
                    len = 0;
                    got += 1;
                }
                _ if len < line.len() => {
                    line[len] = b;
                    len += 1;
                }
                _ => {}
            }
        }
        ring.in_cons.store(cons, Ordering::Release);
        let _ = time::sleep_us(10_000);
    }
    out!("console-echo: {got} lines");
}
