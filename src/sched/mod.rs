//! The Credit scheduler: which vCPU each pCPU runs, and for how long, as portable policy.
//!
//! This is Xen's Credit scheduler (credit1) re-derived for Ferrite: domains have a weight and a
//! cap; every accounting period (one time slice, 30 ms) credit is handed out in proportion to
//! weight and burned by running; a vCPU with credit left is UNDER, one without is OVER, a vCPU
//! woken by an event while UNDER is BOOSTed. Each pCPU has its own run queues; a pCPU that runs
//! out of UNDER work steals from the others. docs/scheduler.md describes the algorithm, its
//! parameters and its cost.
//!
//! The module touches no hardware and keeps no clock: every call is given the time (`now`, in
//! nanoseconds). The arch code holds the one [`Credit`] behind a lock and:
//! - calls [`Credit::tick`] on every pCPU every [`Config::tick_ns`], and [`Credit::schedule`] when
//!   it says so;
//! - calls [`Credit::schedule`] when the running vCPU blocks ([`Credit::block`], on WFI or
//!   `sched_op(block)`) or yields ([`Credit::yield_`]), when the decision's `run_for` expires, and
//!   when an IPI from another pCPU arrives; switches to the vCPU the [`Decision`] names (moving its
//!   state if `migrated`) or to the pCPU's idle loop;
//! - calls [`Credit::wake`] when an interrupt or event arrives for a blocked vCPU, and sends an IPI
//!   to the pCPU it returns;
//! - sends an IPI to every pCPU in a returned [`CpuMask`].
//!
//! ```text
//! pub type Time = u64;  pub type CpuMask = u64;
//! impl Credit {
//!     pub fn new(cfg: Config) -> Result<Credit, SchedError>;
//!     pub fn add_domain(&mut self, dom: DomId, weight: u32, cap: u32) -> Result<(), SchedError>;
//!     pub fn remove_domain(&mut self, dom: DomId) -> Result<(), SchedError>;
//!     pub fn add_vcpu(&mut self, id: VcpuId, affinity: CpuMask, now: Time) -> Result<(), SchedError>;
//!     pub fn remove_vcpu(&mut self, id: VcpuId, now: Time) -> Result<CpuMask, SchedError>;
//!     pub fn set_weight(&mut self, dom: DomId, weight: u32) -> Result<(), SchedError>;
//!     pub fn set_cap(&mut self, dom: DomId, cap: u32, now: Time) -> Result<CpuMask, SchedError>;
//!     pub fn set_affinity(&mut self, id: VcpuId, affinity: CpuMask, now: Time) -> Result<CpuMask, SchedError>;
//!     pub fn wake(&mut self, id: VcpuId, now: Time) -> Option<usize>;
//!     pub fn block(&mut self, id: VcpuId, now: Time);
//!     pub fn yield_(&mut self, id: VcpuId, now: Time);
//!     pub fn tick(&mut self, pcpu: usize, now: Time) -> Tick;
//!     pub fn schedule(&mut self, pcpu: usize, now: Time) -> Decision;
//!     pub fn stats(&self, id: VcpuId, now: Time) -> Option<Stats>;
//!     pub fn waiting(&self) -> usize;
//! }
//! ```

// No caller in the image until the arch code's scheduling loop lands.
#![cfg_attr(not(test), allow(dead_code))]

mod account;
pub mod bench;
mod control;
mod credit;
mod idmap;
mod runq;
mod stats;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use crate::domain::DomId;
pub use credit::Credit;
pub use stats::Stats;

/// Nanoseconds, supplied by the caller (the generic timer on hardware, virtual time in tests).
pub type Time = u64;

/// A set of pCPUs, bit `n` for pCPU `n`.
pub type CpuMask = u64;

/// The most pCPUs one scheduler serves: a [`CpuMask`] has 64 bits.
pub const MAX_PCPUS: usize = 64;

pub const MS: Time = 1_000_000;
pub const US: Time = 1_000;

/// Xen's defaults: a 30 ms slice, 3 ticks per slice, a 1 ms rate limit, weight 256.
pub const DEFAULT_TSLICE_NS: Time = 30 * MS;
pub const DEFAULT_TICK_NS: Time = 10 * MS;
pub const DEFAULT_RATELIMIT_NS: Time = MS;
pub const DEFAULT_WEIGHT: u32 = 256;
pub const MAX_WEIGHT: u32 = 65535;
/// Slices accepted from the command line: Xen's bounds (1 ms to 1 s).
pub const MIN_TSLICE_NS: Time = MS;
pub const MAX_TSLICE_NS: Time = 1000 * MS;

/// The scheduler's parameters, fixed at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Longest a vCPU runs before the next decision, and the accounting period.
    pub tslice_ns: Time,
    /// How often the arch code calls [`Credit::tick`] on each pCPU.
    pub tick_ns: Time,
    /// A vCPU that started less than this ago is not preempted (0: no rate limit).
    pub ratelimit_ns: Time,
    /// pCPUs 0..pcpus take part (1..=64).
    pub pcpus: usize,
    /// Boost UNDER vCPUs when they wake. Always on in Xen; a switch here so that tests (and
    /// experiments on a board) can show what it buys.
    pub boost: bool,
}

impl Config {
    /// Xen's defaults for `pcpus` pCPUs.
    pub fn new(pcpus: usize) -> Self {
        Self {
            tslice_ns: DEFAULT_TSLICE_NS,
            tick_ns: DEFAULT_TICK_NS,
            ratelimit_ns: DEFAULT_RATELIMIT_NS,
            pcpus,
            boost: true,
        }
    }

    pub fn validate(&self) -> Result<(), SchedError> {
        let bad = |why| Err(SchedError::BadConfig(why));
        if self.pcpus == 0 || self.pcpus > MAX_PCPUS {
            return bad("pcpus must be 1..=64");
        }
        if !(MIN_TSLICE_NS..=MAX_TSLICE_NS).contains(&self.tslice_ns) {
            return bad("the time slice must be 1 ms ..= 1 s");
        }
        if self.tick_ns == 0 || self.tick_ns > self.tslice_ns {
            return bad("the tick must be non-zero and no longer than the time slice");
        }
        if self.ratelimit_ns > self.tslice_ns {
            return bad("the rate limit must not exceed the time slice");
        }
        Ok(())
    }

    /// The pCPUs that exist.
    pub fn all_pcpus(&self) -> CpuMask {
        if self.pcpus >= MAX_PCPUS {
            CpuMask::MAX
        } else {
            (1 << self.pcpus) - 1
        }
    }
}

/// A vCPU: its domain and its index in the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId {
    pub dom: DomId,
    pub vcpu: u16,
}

impl VcpuId {
    pub const fn new(dom: DomId, vcpu: u16) -> Self {
        Self { dom, vcpu }
    }
}

/// Scheduling priority, lowest first. Only the idle vCPU is IDLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Idle,
    /// Out of credit this period.
    Over,
    /// Has credit left.
    Under,
    /// Woke while UNDER; runs ahead of everything until it is ticked or descheduled.
    Boost,
}

/// What the pCPU runs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The vCPU, or `None` for the pCPU's idle loop (wait for an interrupt).
    pub next: Option<VcpuId>,
    /// Call [`Credit::schedule`] again after this long at the latest (`Time::MAX` when idle: an
    /// IPI or the tick will say when).
    pub run_for: Time,
    /// `next` last ran on another pCPU: the arch code moves its state here.
    pub migrated: bool,
    /// Other pCPUs to interrupt so that they decide again.
    pub kick: CpuMask,
}

/// What a tick asks of the arch code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Call [`Credit::schedule`] on this pCPU now.
    pub resched: bool,
    /// Other pCPUs to interrupt (accounting made work runnable for them, or parked their vCPU).
    pub kick: CpuMask,
}

/// Why a request was refused. Control requests come from dom0 and are checked, never trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    BadConfig(&'static str),
    /// Weights are 1..=65535.
    BadWeight(u32),
    /// Caps are 0 (none) or 1..=100 × pCPUs (percent of one pCPU).
    BadCap(u32),
    /// The mask names no existing pCPU, or a pCPU that does not exist.
    BadAffinity(CpuMask),
    NoSuchDomain(DomId),
    DomainExists(DomId),
    /// A domain is removed only once its vCPUs are.
    DomainHasVcpus(DomId),
    NoSuchVcpu(VcpuId),
    VcpuExists(VcpuId),
}
