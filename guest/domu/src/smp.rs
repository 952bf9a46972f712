//! `smp [stay]`: brings up every other vCPU with `VCPU_OP UP`, each spinning on its own
//! counter (one cache line each); vCPU 0 sleeps about a second of counter time, then checks
//! that every counter moved. `smp` then powers off; `smp stay` keeps every vCPU spinning
//! forever (vCPU 0 as a hog too).

use core::sync::atomic::{AtomicU64, Ordering};
use ferrite_pv::cpu::MAX_VCPUS;
use ferrite_pv::{StartInfo, hypercall, smp, time};

/// Pages of each secondary's stack.
const STACK_PAGES: u64 = 4;

#[repr(C, align(64))]
struct Counter(AtomicU64);

static COUNTERS: [Counter; MAX_VCPUS] = [const { Counter(AtomicU64::new(0)) }; MAX_VCPUS];

/// A secondary's life: count, forever. It is the only writer of its counter.
fn spin(v: usize) -> ! {
    let c = &COUNTERS[v].0;
    loop {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

pub fn run(si: &StartInfo, stay: bool) {
    let n = (si.nr_vcpus as usize).clamp(1, MAX_VCPUS);
    let mut started = 1;
    for v in 1..n {
        let top = {
            let mut mm = crate::mm();
            match mm.alloc.alloc_contiguous(STACK_PAGES) {
                Some(pfn) => mm.frames.va(pfn + STACK_PAGES),
                None => {
                    out!("smp: FAIL: no free frames for vcpu{v}'s stack");
                    return;
                }
            }
        };
        // SAFETY: the stack is fresh free frames, mapped writable in the initial map, used by
        // nothing else for the domain's life.
        if let Err(e) = unsafe { smp::start_vcpu(v, top, spin) } {
            out!("smp: FAIL: VCPU_OP UP vcpu{v}: {e}");
            return;
        }
        started += 1;
    }
    for v in 1..n {
        if hypercall::vcpu_is_up(v as u64) != Ok(true) {
            out!("smp: FAIL: vcpu{v} is not up after VCPU_OP UP");
        }
    }
    if let Err(e) = time::sleep_us(1_000_000) {
        out!("smp: FAIL: sleeping: {e}");
        return;
    }
    let mut stuck = 0;
    for (v, c) in COUNTERS.iter().enumerate().take(n).skip(1) {
        if c.0.load(Ordering::Relaxed) == 0 {
            out!("smp: vcpu{v} did not progress");
            stuck += 1;
        }
    }
    if stuck == 0 {
        out!("smp: {started} vcpus all progressed");
    } else {
        out!(
            "smp: FAIL: {stuck} of {} secondary vcpus did not progress",
            n - 1
        );
    }
    if stay {
        crate::hog::spin();
    }
    // Take the others down again (each may be running on another pCPU when asked), and check
    // each is reported down and stops counting.
    let mut down = 0;
    for v in 1..n {
        if hypercall::vcpu_down(v as u64).is_ok() && hypercall::vcpu_is_up(v as u64) == Ok(false) {
            down += 1;
        }
    }
    // Give the IPIs that stop them time to land, then watch the counters stand still.
    for _ in 0..1_000_000 {
        core::hint::spin_loop();
    }
    let before: u64 = COUNTERS
        .iter()
        .take(n)
        .skip(1)
        .map(|c| c.0.load(Ordering::Relaxed))
        .sum();
    for _ in 0..1_000_000 {
        core::hint::spin_loop();
    }
    let after: u64 = COUNTERS
        .iter()
        .take(n)
        .skip(1)
        .map(|c| c.0.load(Ordering::Relaxed))
        .sum();
    if down == n - 1 && before == after {
        out!("smp: {down} vcpus taken down");
    } else {
        out!(
            "smp: FAIL: {down} of {} vcpus taken down, counters moved by {}",
            n - 1,
            after - before
        );
    }
}
