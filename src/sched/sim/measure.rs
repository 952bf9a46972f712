//! What the tests measure in a simulation: CPU time per vCPU over a window, where it ran, how
//! long it waited after waking.

use super::Sim;
use crate::sched::{CpuMask, Time, VcpuId};
use alloc::vec::Vec;

impl Sim {
    /// The intervals `id` ran, the one in progress included (up to now).
    fn intervals(&self, id: VcpuId) -> impl Iterator<Item = (Time, Time, usize)> + '_ {
        let open = self
            .cpus
            .iter()
            .enumerate()
            .find(|(_, c)| c.running == Some(id))
            .map(|(p, c)| (c.since, self.now, p));
        self.vcpus[&id].segments.iter().copied().chain(open)
    }

    /// CPU time `id` got in `[from, to)`.
    pub fn ran(&self, id: VcpuId, from: Time, to: Time) -> Time {
        self.intervals(id)
            .map(|(a, b, _)| b.min(to).saturating_sub(a.max(from)))
            .sum()
    }

    /// `id`'s CPU time in `[from, to)` as a fraction of one pCPU.
    pub fn share(&self, id: VcpuId, from: Time, to: Time) -> f64 {
        self.ran(id, from, to) as f64 / (to - from) as f64
    }

    /// Every pCPU `id` has run on.
    pub fn pcpus_used(&self, id: VcpuId) -> CpuMask {
        self.intervals(id).fold(0, |m, (_, _, p)| m | 1 << p)
    }

    /// Time every pCPU spent running vCPUs in `[from, to)`, per pCPU.
    pub fn busy(&self, from: Time, to: Time) -> Vec<Time> {
        let mut busy = alloc::vec![0; self.cpus.len()];
        for &id in self.vcpus.keys() {
            for (a, b, p) in self.intervals(id) {
                busy[p] += b.min(to).saturating_sub(a.max(from));
            }
        }
        busy
    }

    /// The largest wake-to-running latency `id` saw for wakes at or after `from`.
    pub fn max_latency(&self, id: VcpuId, from: Time) -> Time {
        self.vcpus[&id]
            .latencies
            .iter()
            .filter(|&&(w, _)| w >= from)
            .map(|&(_, l)| l)
            .max()
            .unwrap_or(0)
    }
}
