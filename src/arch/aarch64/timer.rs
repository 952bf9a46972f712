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
/// Nanoseconds per tick when a tick is a whole number of them (62.5 MHz: 16; 1 GHz: 1), else
/// 0: the conversions then multiply instead of dividing in 128 bits (they run on every
/// scheduling decision).
static NS_PER_TICK: AtomicU64 = AtomicU64::new(0);
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
    let f = if f == 0 { 1 } else { f };
    FREQ.store(f, Ordering::Relaxed);
    let exact = f <= 1_000_000_000 && 1_000_000_000 % f == 0;
    NS_PER_TICK.store(if exact { 1_000_000_000 / f } else { 0 }, Ordering::Relaxed);
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

/// Per CPU: when the next periodic tick is due (counter ticks).
static NEXT_TICK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Starts this CPU's tick. The interrupt must be enabled at the GIC by the caller. The first
/// tick comes after a hundredth of a period, so the boot self-check does not wait a whole one.
pub fn start_tick() {
    let cval = counter() + period() / 100;
    NEXT_TICK[super::cpu::index()].store(cval, Ordering::Relaxed);
    set_cval(cval);
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

fn set_cval(cval: u64) {
    // SAFETY: programming this CPU's EL2 physical timer compare value.
    unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) cval, options(nostack, preserves_flags)) };
}

/// The timer interrupt: returns whether the periodic tick was due (then counted, and the next
/// one set one period after the previous deadline, so the rate does not drift with interrupt
/// latency). The caller then calls [`program`] with its own next deadline.
pub fn handle_tick() -> bool {
    let i = super::cpu::index();
    let now = counter();
    let due = NEXT_TICK[i].load(Ordering::Relaxed);
    if now < due {
        return false;
    }
    let mut next = due + period();
    if next <= now {
        next = now + period(); // we fell behind (stopped in a debugger); do not storm
    }
    NEXT_TICK[i].store(next, Ordering::Relaxed);
    TICKS[i].fetch_add(1, Ordering::Relaxed);
    true
}

/// Sets this CPU's timer to fire at the next tick or at `deadline` (counter ticks), whichever
/// is first.
pub fn program(deadline: u64) {
    let tick = NEXT_TICK[super::cpu::index()].load(Ordering::Relaxed);
    set_cval(tick.min(deadline));
}

/// Counter ticks to nanoseconds.
pub fn ticks_to_ns(t: u64) -> u64 {
    match NS_PER_TICK.load(Ordering::Relaxed) {
        0 => (t as u128 * 1_000_000_000 / frequency() as u128) as u64,
        k => t.saturating_mul(k),
    }
}

/// Nanoseconds to counter ticks (rounded up).
pub fn ns_to_ticks(ns: u64) -> u64 {
    match NS_PER_TICK.load(Ordering::Relaxed) {
        0 => (ns as u128 * frequency() as u128).div_ceil(1_000_000_000) as u64,
        k => ns.div_ceil(k),
    }
}

pub fn ticks(cpu: usize) -> u64 {
    TICKS[cpu].load(Ordering::Relaxed)
}

/// Masks the virtual timer's interrupt output on this CPU (CNTV_CTL_EL0.IMASK): the vCPU's
/// timer fired and was turned into an event, or no vCPU is here to take it.
pub fn mask_virtual() {
    // SAFETY: read-modify-write of the running vCPU's timer control; IMASK is the bit a guest
    // clears when it re-arms the timer.
    unsafe {
        asm!("mrs {t}, cntv_ctl_el0", "orr {t}, {t}, #2", "msr cntv_ctl_el0, {t}",
            t = out(reg) _, options(nomem, nostack))
    };
}

/// Stops the virtual timer on this CPU (its vCPU leaves for good).
pub fn stop_virtual() {
    // SAFETY: the timer of a vCPU that no longer runs here.
    unsafe { asm!("msr cntv_ctl_el0, xzr", options(nomem, nostack)) };
}
