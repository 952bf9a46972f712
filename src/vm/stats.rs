//! Exit statistics: how often each kind of exit happens and how many instructions Ferrite
//! spends at EL2 on it (the PMU's EL2-filtered retired-instruction counter, started at boot).
//! Under QEMU with `-icount` the counts are exact; `make bench` reads them from the power-off
//! report. The cost is two counter reads per exit.

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
static COUNT: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
static TOTAL: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
static MIN: [AtomicU64; KINDS] = [const { AtomicU64::new(u64::MAX) }; KINDS];

/// At the exception vector's Rust entry for a guest exit.
pub fn begin(kind: Exit) {
    let c = &CURRENT[cpu::index()];
    c.start.store(pmu::instructions(), Ordering::Relaxed);
    c.kind.store(kind as u64, Ordering::Relaxed);
}

/// Just before the return to the guest. (A WFI exit includes its time asleep only in
/// instructions Ferrite ran meanwhile, e.g. interrupt handlers.)
pub fn end() {
    let c = &CURRENT[cpu::index()];
    let spent = pmu::instructions().wrapping_sub(c.start.load(Ordering::Relaxed));
    let k = c.kind.load(Ordering::Relaxed) as usize % KINDS;
    COUNT[k].fetch_add(1, Ordering::Relaxed);
    TOTAL[k].fetch_add(spent, Ordering::Relaxed);
    MIN[k].fetch_min(spent, Ordering::Relaxed);
    let batch = c.batch.swap(0, Ordering::Relaxed);
    if batch > 0 {
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
        let n = COUNT[k].load(Ordering::Relaxed);
        if n == 0 {
            continue;
        }
        let total = TOTAL[k].load(Ordering::Relaxed);
        if total == 0 {
            // No instruction counts (QEMU counts them only with -icount): just how many.
            log::info!("exits: {:<6} {n:>8} taken", NAMES[k]);
            continue;
        }
        log::info!(
            "exits: {:<6} {n:>8} taken, EL2 instructions min {} avg {}",
            NAMES[k],
            MIN[k].load(Ordering::Relaxed),
            total / n
        );
    }
}
