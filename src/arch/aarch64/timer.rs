//! The generic timer: time since boot for the log, and the EL2 physical timer (CNTHP) that
//! drives each CPU's tick.

use super::boot::MAX_CPUS;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use tock_registers::interfaces::{Readable, Writeable};

/// Tick rate: the Credit scheduler accounts every 10 ms.
pub const TICK_HZ: u64 = 100;

static BOOT_COUNT: AtomicU64 = AtomicU64::new(0);
static FREQ: AtomicU64 = AtomicU64::new(0);
static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

pub fn counter() -> u64 {
    // An ISB keeps the read from being hoisted above earlier instructions.
    // SAFETY: barrier only.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
    CNTPCT_EL0.get()
}

/// Records the boot time and the counter frequency. `dt_freq` is the device tree's
/// `clock-frequency`, which overrides CNTFRQ where firmware left it wrong or unset.
pub fn init(dt_freq: Option<u32>) {
    let hw = CNTFRQ_EL0.get();
    let f = match dt_freq {
        Some(f) if f != 0 => f as u64,
        _ => hw,
    };
    FREQ.store(if f == 0 { 1 } else { f }, Ordering::Relaxed);
}

/// Called first thing on the boot CPU so uptimes start near zero.
pub fn mark_boot() {
    BOOT_COUNT.store(counter(), Ordering::Relaxed);
}

pub fn frequency() -> u64 {
    match FREQ.load(Ordering::Relaxed) {
        0 => CNTFRQ_EL0.get().max(1),
        f => f,
    }
}

pub fn uptime_us() -> u64 {
    let ticks = counter().wrapping_sub(BOOT_COUNT.load(Ordering::Relaxed));
    (ticks as u128 * 1_000_000 / frequency() as u128) as u64
}

fn period() -> u64 {
    frequency() / TICK_HZ
}

/// Starts this CPU's tick. The interrupt must be enabled at the GIC by the caller. The first
/// tick comes after a hundredth of a period, so the boot self-check does not wait a whole one.
pub fn start_tick() {
    let cval = counter() + period() / 100;
    // SAFETY: programming this CPU's EL2 physical timer compare value.
    unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) cval, options(nostack, preserves_flags)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// The tick interrupt: count it and re-arm one period after the previous deadline, so the rate
/// does not drift with interrupt latency.
pub fn handle_tick() {
    let cval: u64;
    // SAFETY: reading this CPU's compare value.
    unsafe {
        asm!("mrs {}, cnthp_cval_el2", out(reg) cval, options(nomem, nostack, preserves_flags))
    };
    let now = counter();
    let mut next = cval + period();
    if next <= now {
        next = now + period(); // we fell behind (stopped in a debugger); do not storm
    }
    // SAFETY: as in start_tick.
    unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) next, options(nostack, preserves_flags)) };
    TICKS[super::cpu::index()].fetch_add(1, Ordering::Relaxed);
}

pub fn ticks(cpu: usize) -> u64 {
    TICKS[cpu].load(Ordering::Relaxed)
}
