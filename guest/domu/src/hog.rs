//! `hog`: a CPU-bound vCPU that never blocks, for scheduler tests. It prints one line at start
//! and then only counts; every 2^24 iterations it reads the counter (so a debugger or a later
//! version can see time pass) and publishes its progress in [`PROGRESS`].

use core::sync::atomic::{AtomicU64, Ordering};
use ferrite_pv::{cpu, time};

/// Iterations done so far (updated every 2^24), readable from a debugger.
pub static PROGRESS: AtomicU64 = AtomicU64::new(0);
/// The counter value when [`PROGRESS`] was last updated.
pub static LAST_SEEN: AtomicU64 = AtomicU64::new(0);

pub fn run() -> ! {
    out!("hog: running");
    spin()
}

/// The loop itself, with IRQs masked: nothing but the scheduler takes this vCPU away.
pub fn spin() -> ! {
    cpu::irq_mask();
    let mut i: u64 = 0;
    loop {
        i = core::hint::black_box(i.wrapping_add(1));
        if i & ((1 << 24) - 1) == 0 {
            PROGRESS.store(i, Ordering::Relaxed);
            LAST_SEEN.store(time::now(), Ordering::Relaxed);
        }
    }
}
