//! A micro-benchmark of the decision path, to be timed by whoever calls it (a host benchmark, or
//! the generic timer on a board): `setup(n)` builds a scheduler with `n` runnable CPU-bound
//! vCPUs over 4 pCPUs, `run` makes decisions round the pCPUs in virtual time, ticking as the
//! arch code would. The cost per decision should not grow with `n` (docs/scheduler.md).

use super::{Config, Credit, MS, Time, VcpuId};

pub const BENCH_PCPUS: usize = 4;

/// `runnable` vCPUs, one per domain with varied weights, all woken.
pub fn setup(runnable: usize) -> Credit {
    let mut c = Credit::new(Config::new(BENCH_PCPUS)).expect("default config");
    for i in 0..runnable {
        let dom = i as u16;
        c.add_domain(dom, 128 + (i as u32 % 8) * 64, 0)
            .expect("fresh domain");
        c.add_vcpu(VcpuId::new(dom, 0), (1 << BENCH_PCPUS) - 1, 0)
            .expect("fresh vCPU");
        c.wake(VcpuId::new(dom, 0), 0);
    }
    c
}

/// `decisions` calls of `schedule`, one pCPU after the other, each pCPU deciding every 1 ms
/// of virtual time from `start`; with `ticks`, a tick every 10 ms per pCPU too (and so the
/// accounting, O(V) once per 30 ms, amortised over the decisions). Returns the time reached
/// and a checksum of the choices (so that an optimiser cannot drop the work).
pub fn run(c: &mut Credit, decisions: u32, start: Time, ticks: bool) -> (Time, u64) {
    let mut now = start;
    let mut sum = 0u64;
    for i in 0..decisions {
        let pcpu = i as usize % BENCH_PCPUS;
        now += MS / BENCH_PCPUS as Time;
        if ticks && i % (10 * BENCH_PCPUS as u32) < BENCH_PCPUS as u32 {
            c.tick(pcpu, now);
        }
        let d = c.schedule(pcpu, now);
        sum = sum
            .wrapping_mul(31)
            .wrapping_add(d.next.map_or(0, |v| v.dom as u64 + 1));
    }
    (now, sum)
}
