//! Time: the virtual counter (CNTVCT_EL0, the clock `SET_TIMER_OP` deadlines use), its
//! frequency (`StartInfo::counter_hz`, else CNTFRQ_EL0), and sleeping with the one-shot timer.
//!
//! [`sleep_until`] arms `SET_TIMER_OP` and `SCHED_OP BLOCK`s with IRQs masked, unmasking only
//! between blocks so the timer's upcall is taken (and acknowledged by [`crate::events`]); the
//! vCPU costs nothing while it waits.

use crate::{cpu, events, hypercall};
use core::sync::atomic::{AtomicU64, Ordering};
use ferrite_abi::Errno;
use ferrite_abi::shared_info::virq;

static HZ: AtomicU64 = AtomicU64::new(0);

/// Records the counter frequency (the entry code passes `StartInfo::counter_hz`; 0 means
/// "ask CNTFRQ_EL0").
pub fn init(hz: u64) {
    HZ.store(hz, Ordering::Relaxed);
}

/// The virtual counter now.
#[cfg(target_arch = "aarch64")]
pub fn now() -> u64 {
    let t: u64;
    // SAFETY: the ISB keeps the read from being hoisted over earlier instructions; reading
    // CNTVCT_EL0 has no side effects.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) t, options(nomem, nostack, preserves_flags))
    };
    t
}

#[cfg(not(target_arch = "aarch64"))]
pub fn now() -> u64 {
    0
}

#[cfg(target_arch = "aarch64")]
fn cntfrq() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack, preserves_flags))
    };
    f
}

#[cfg(not(target_arch = "aarch64"))]
fn cntfrq() -> u64 {
    62_500_000
}

/// Counter ticks per second.
pub fn hz() -> u64 {
    match HZ.load(Ordering::Relaxed) {
        0 => cntfrq().max(1),
        f => f,
    }
}

/// `us` microseconds in ticks of a `hz` counter (rounded up, so a deadline is never early).
pub const fn us_to_ticks_at(us: u64, hz: u64) -> u64 {
    ((us as u128 * hz as u128).div_ceil(1_000_000)) as u64
}

/// `ticks` of a `hz` counter in microseconds (rounded down).
pub const fn ticks_to_us_at(ticks: u64, hz: u64) -> u64 {
    (ticks as u128 * 1_000_000 / hz as u128) as u64
}

pub fn us_to_ticks(us: u64) -> u64 {
    us_to_ticks_at(us, hz())
}

pub fn ticks_to_us(ticks: u64) -> u64 {
    ticks_to_us_at(ticks, hz())
}

/// The deadline `us` microseconds from now.
pub fn deadline_in_us(us: u64) -> u64 {
    now() + us_to_ticks(us)
}

/// Sleeps until the counter reaches `deadline`: arms the one-shot timer and blocks, taking the
/// timer's upcall between blocks. Returns Ferrite's error if it refuses the timer or the
/// block. Leaves IRQs masked or not as it found them; the timer is spent on return.
pub fn sleep_until(deadline: u64) -> Result<(), Errno> {
    let v = cpu::index();
    let was_masked = cpu::irqs_masked();
    cpu::irq_mask();
    let r = (|| {
        events::take(v, virq::TIMER);
        hypercall::set_timer(deadline)?;
        while now() < deadline {
            hypercall::sched_block()?;
            // The upcall (if any) is taken here and acknowledged by the handler.
            cpu::irq_unmask();
            cpu::irq_mask();
        }
        Ok(())
    })();
    if !was_masked {
        cpu::irq_unmask();
    }
    r
}

/// Sleeps for `us` microseconds.
pub fn sleep_us(us: u64) -> Result<(), Errno> {
    sleep_until(deadline_in_us(us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        // QEMU's virt counter: 62.5 MHz.
        assert_eq!(us_to_ticks_at(2000, 62_500_000), 125_000);
        assert_eq!(ticks_to_us_at(125_000, 62_500_000), 2000);
        // Rounded up: one tick of a 1 MHz counter, never zero for a non-zero wait.
        assert_eq!(us_to_ticks_at(1, 3), 1);
        assert_eq!(ticks_to_us_at(u64::MAX, 1_000_000_000), u64::MAX / 1000);
    }
}
