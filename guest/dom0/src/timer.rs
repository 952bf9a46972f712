//! The generic timer as an EL1 guest sees it: the virtual counter (CNTVCT) for time, and the
//! virtual timer (CNTV, the timer node's third interrupt, PPI 27) for each vCPU's 100 Hz tick.
//!
//! The virtual timer is the one a hypervisor gives its guests (Ferrite traps nothing here); the
//! physical EL1 timer may be Ferrite's to keep. On bare QEMU the two counters are equal.

use crate::entry::MAX_CPUS;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTVCT_EL0};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tock_registers::interfaces::{Readable, Writeable};

pub const TICK_HZ: u64 = 100;

static BOOT_COUNT: AtomicU64 = AtomicU64::new(0);
static FREQ: AtomicU64 = AtomicU64::new(0);
static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The vCPU that stops dom0 (panic, power-off), or `NOBODY`: each other vCPU parks at its next
/// tick.
static STOPPER: AtomicUsize = AtomicUsize::new(NOBODY);
const NOBODY: usize = usize::MAX;

pub fn counter() -> u64 {
    // An ISB keeps the read from being hoisted above earlier instructions.
    // SAFETY: barrier only.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
    CNTVCT_EL0.get()
}

/// Called first thing on the boot vCPU, so uptimes start near zero.
pub fn mark_boot() {
    BOOT_COUNT.store(counter(), Ordering::Relaxed);
}

/// Records the counter frequency; the device tree's `clock-frequency` overrides CNTFRQ where
/// firmware left it unset.
pub fn init(dt_freq: Option<u32>) {
    let f = match dt_freq {
        Some(f) if f != 0 => f as u64,
        _ => CNTFRQ_EL0.get(),
    };
    FREQ.store(f.max(1), Ordering::Relaxed);
}

pub fn frequency() -> u64 {
    match FREQ.load(Ordering::Relaxed) {
        0 => CNTFRQ_EL0.get().max(1),
        f => f,
    }
}

pub fn ticks_to_us(t: u64) -> u64 {
    (t as u128 * 1_000_000 / frequency() as u128) as u64
}

pub fn ticks_to_ns(t: u64) -> u64 {
    (t as u128 * 1_000_000_000 / frequency() as u128) as u64
}

pub fn uptime_us() -> u64 {
    ticks_to_us(counter().wrapping_sub(BOOT_COUNT.load(Ordering::Relaxed)))
}

/// A deadline `us` microseconds from now, in counter ticks.
pub fn deadline_us(us: u64) -> u64 {
    counter() + (us as u128 * frequency() as u128 / 1_000_000) as u64
}

fn period() -> u64 {
    frequency() / TICK_HZ
}

/// Starts this vCPU's tick; the PPI must be enabled at the GIC by the caller.
pub fn start_tick() {
    CNTV_CVAL_EL0.set(counter() + period());
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

/// The tick interrupt: count it and re-arm one period after the previous deadline, so the rate
/// does not drift with interrupt latency.
pub fn handle_tick(_intid: u32) {
    // Not the stopper itself: a tick between its `stop_all` and its `SYSTEM_OFF` call would
    // park the one vCPU that was about to switch the machine off (CI saw that hang once).
    let stopper = STOPPER.load(Ordering::Acquire);
    if stopper != NOBODY && stopper != crate::cpu::index() {
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
        crate::cpu::park();
    }
    let now = counter();
    let mut next = CNTV_CVAL_EL0.get() + period();
    if next <= now {
        next = now + period(); // we fell behind (a stopped debugger, a busy host): do not storm
    }
    CNTV_CVAL_EL0.set(next);
    TICKS[crate::cpu::index()].fetch_add(1, Ordering::Relaxed);
}

pub fn ticks(cpu: usize) -> u64 {
    TICKS[cpu].load(Ordering::Relaxed)
}

/// Asks every other vCPU to park at its next tick.
pub fn stop_all() {
    let _ = STOPPER.compare_exchange(
        NOBODY,
        crate::cpu::index(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
}
