//! Exit statistics: how often each kind of exit happens and how many instructions Ferrite
//! spends at EL2 on it (the PMU's EL2-filtered retired-instruction counter, started at boot).
//! Under QEMU with `-icount` the counts are exact; `make bench` reads them from the power-off
//! report. The cost is two counter reads per exit, and the counts are per CPU (each CPU's are
//! written only by that CPU, with plain loads and stores) and summed for the report.

use crate::arch::boot::MAX_CPUS;
use crate::arch::{cpu, pmu};
use core::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Hvc = 0,
    Smc,
    Mmio,
    SysReg,
    Wfi,
    Irq,
    Other,
}

const KINDS: usize = 7;
const NAMES: [&str; KINDS] = ["hvc", "smc", "mmio", "sysreg", "wfi", "irq", "other"];

struct PerCpu {
    start: AtomicU64,
    kind: AtomicU64,
    /// `MMU_UPDATE` entries this exit applied (0: not an `MMU_UPDATE`).
    batch: AtomicU64,
}

static CURRENT: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        start: AtomicU64::new(0),
        kind: AtomicU64::new(0),
        batch: AtomicU64::new(0),
    }
}; MAX_CPUS];
/// Per CPU and kind of exit: how many, their EL2 instructions in all, the fewest.
struct Tally {
    count: AtomicU64,
    total: AtomicU64,
    min: AtomicU64,
}

static TALLY: [[Tally; KINDS]; MAX_CPUS] = [const {
    [const {
        Tally {
            count: AtomicU64::new(0),
            total: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
        }
    }; KINDS]
}; MAX_CPUS];

/// Adds `n` to a counter only this CPU writes.
fn add(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// At the exception vector's Rust entry for a guest exit.
pub fn begin(kind: Exit) {
    let c = &CURRENT[cpu::index()];
    c.start.store(pmu::instructions(), Ordering::Relaxed);
    c.kind.store(kind as u64, Ordering::Relaxed);
}

/// Just before the return to the guest, or when the exit leaves its vCPU for the idle loop. (A WFI exit includes its time asleep only in
/// instructions Ferrite ran meanwhile, e.g. interrupt handlers.)
pub fn end() {
    let me = cpu::index();
    let c = &CURRENT[me];
    let spent = pmu::instructions().wrapping_sub(c.start.load(Ordering::Relaxed));
    let k = c.kind.load(Ordering::Relaxed) as usize % KINDS;
    let t = &TALLY[me][k];
    add(&t.count, 1);
    add(&t.total, spent);
    if spent < t.min.load(Ordering::Relaxed) {
        t.min.store(spent, Ordering::Relaxed);
    }
    let batch = c.batch.load(Ordering::Relaxed);
    if batch > 0 {
        c.batch.store(0, Ordering::Relaxed);
        MMU_CALLS.fetch_add(1, Ordering::Relaxed);
        MMU_ENTRIES.fetch_add(batch, Ordering::Relaxed);
        MMU_INSTR.fetch_add(spent, Ordering::Relaxed);
    }
}

static MMU_CALLS: AtomicU64 = AtomicU64::new(0);
static MMU_ENTRIES: AtomicU64 = AtomicU64::new(0);
static MMU_INSTR: AtomicU64 = AtomicU64::new(0);

/// This exit is an `MMU_UPDATE` that applied `entries`: its cost is reported per entry.
pub fn note_mmu_update(entries: u64) {
    CURRENT[cpu::index()]
        .batch
        .store(entries, Ordering::Relaxed);
}

/// Times each pCPU's idle loop came out of WFI. An idle pCPU wakes for its timer and for
/// interrupts, a few hundred times a second at most; millions mean WFI returned at once (a
/// virtual IRQ line left raised: `context::lower_virtual_irq`) and the pCPU spun.
static IDLE_WAKES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// This pCPU's idle loop came out of WFI.
#[inline]
pub fn idle_woke() {
    let c = &IDLE_WAKES[cpu::index()];
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

static SWITCHES: AtomicU64 = AtomicU64::new(0);
static SWITCH_TOTAL: AtomicU64 = AtomicU64::new(0);
static SWITCH_MIN: AtomicU64 = AtomicU64::new(u64::MAX);

/// A world switch between two vCPUs took `instructions` at EL2 (saving one, loading the other).
pub fn switched(instructions: u64) {
    SWITCHES.fetch_add(1, Ordering::Relaxed);
    SWITCH_TOTAL.fetch_add(instructions, Ordering::Relaxed);
    SWITCH_MIN.fetch_min(instructions, Ordering::Relaxed);
}

/// One line per kind of exit seen, for the power-off report.
pub fn report() {
    for (c, w) in IDLE_WAKES.iter().enumerate() {
        let n = w.load(Ordering::Relaxed);
        if n != 0 {
            log::info!("idle: cpu{c}: {n} wake-ups from WFI");
        }
    }
    let n = SWITCHES.load(Ordering::Relaxed);
    let total = SWITCH_TOTAL.load(Ordering::Relaxed);
    if let Some(avg) = total.checked_div(n) {
        let min = if total == 0 {
            0
        } else {
            SWITCH_MIN.load(Ordering::Relaxed)
        };
        log::info!("switches: {n:>8} between vcpus, EL2 instructions min {min} avg {avg}");
    }
    let (calls, entries) = (
        MMU_CALLS.load(Ordering::Relaxed),
        MMU_ENTRIES.load(Ordering::Relaxed),
    );
    let instr = MMU_INSTR.load(Ordering::Relaxed);
    if let (Some(per_entry), Some(per_call)) =
        (instr.checked_div(entries), instr.checked_div(calls))
    {
        log::info!(
            "hcall: mmu_update {calls} calls, {entries} entries, EL2 instructions per entry \
             {per_entry}, per call {per_call}"
        );
    }
    for k in 0..KINDS {
        let sum = |f: fn(&Tally) -> &AtomicU64| -> u64 {
            TALLY.iter().map(|c| f(&c[k]).load(Ordering::Relaxed)).sum()
        };
        let n = sum(|t| &t.count);
        if n == 0 {
            continue;
        }
        let total = sum(|t| &t.total);
        let min = TALLY
            .iter()
            .map(|c| c[k].min.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if total == 0 {
            // No instruction counts (QEMU counts them only with -icount): just how many.
            log::info!("exits: {:<6} {n:>8} taken", NAMES[k]);
            continue;
        }
        log::info!(
            "exits: {:<6} {n:>8} taken, EL2 instructions min {min} avg {}",
            NAMES[k],
            total / n
        );
    }
}
