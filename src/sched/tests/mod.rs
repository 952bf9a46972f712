//! Host tests of the Credit scheduler: direct calls for the exact rules, the simulation
//! harness (`super::sim`) for shares, caps, latencies and multi-pCPU behaviour.

mod boost;
mod control;
mod shares;
mod smp;
mod stats;

use super::sim::{Behaviour, Sim};
use super::*;

pub(super) const HOG: Behaviour = Behaviour::CpuBound;

pub(super) fn id(dom: DomId) -> VcpuId {
    VcpuId::new(dom, 0)
}

pub(super) fn pct(x: f64) -> f64 {
    (x * 1000.0).round() / 10.0
}

/// A scheduler on `pcpus` pCPUs with Xen's defaults.
pub(super) fn credit(pcpus: usize) -> Credit {
    Credit::new(Config::new(pcpus)).unwrap()
}

pub(super) fn sim(pcpus: usize) -> Sim {
    Sim::new(Config::new(pcpus))
}
