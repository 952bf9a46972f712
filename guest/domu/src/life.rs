//! Modes for the lifecycle tests.
//!
//! - `counter <ms> [fault <n>]`: counts from 1, printing each value every `<ms>` ms with its
//!   interrupts on (so it answers dom0's shutdown requests), forever or until it reaches `<n>`,
//!   where it reads an address nothing maps (a real fault: its own exception handler reports it
//!   and asks Ferrite to end it as crashed). Its count lives in its registers and stack, so a
//!   saved and restored domain goes on from where it was.
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
