//! A deterministic simulation of pCPUs running synthetic vCPUs under [`Credit`], in virtual time,
//! for the tests.
//!
//! The harness drives the policy exactly as the arch code will: a tick every `tick_ns` on every
//! pCPU (`tick`, then `schedule` if it asks), `schedule` when a decision's `run_for` expires and
//! when a vCPU blocks, `wake` at event times, and every IPI the policy asks for (tickles, kicks)
//! delivered `ipi_delay` later as a call to `schedule` on its pCPU. Events at the same instant
//! run in the order they were queued, so every run is reproducible.
//!
//! It also checks, at every decision, what must always hold: a vCPU runs on one pCPU at a time,
//! only where its affinity allows, and only when it is runnable.

mod measure;

use super::{Config, CpuMask, Credit, DomId, Time, US, VcpuId};
use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::vec::Vec;
use core::cmp::Reverse;

/// What a synthetic vCPU does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Always runnable.
    CpuBound,
    /// Runs for `run_ns` of CPU time, then blocks until an event `sleep_ns` later: I/O-bound
    /// with a short run, bursty with a long one.
    Cycle { run_ns: Time, sleep_ns: Time },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Tick(usize),
    /// The decision's `run_for` expired (stale unless the generation matches).
    Timer(usize, u64),
    /// The running vCPU finished its work and blocks (same generation rule).
    Done(usize, u64),
    Ipi(usize),
    Wake(VcpuId),
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    running: Option<VcpuId>,
    since: Time,
    generation: u64,
}

/// One synthetic vCPU as the harness sees it.
#[derive(Clone, Debug)]
pub struct SimVcpu {
    pub behaviour: Behaviour,
    pub runnable: bool,
    /// CPU time left before it blocks (cycle behaviours).
    work_left: Time,
    woke_at: Option<Time>,
    dispatched_at: Time,
    last_pcpu: Option<usize>,
    /// (wake time, wake-to-running latency) of every wake.
    pub latencies: Vec<(Time, Time)>,
    /// (from, to, pCPU) of every interval it ran.
    pub segments: Vec<(Time, Time, usize)>,
    pub dispatches: u64,
    pub migrations: u64,
    /// How long it had run when a decision switched it out while still runnable.
    pub preempted_after: Vec<Time>,
}

pub struct Sim {
    pub sched: Credit,
    pub now: Time,
    pub ipi_delay: Time,
    events: BinaryHeap<Reverse<(Time, u64, Ev)>>,
    seq: u64,
    cpus: Vec<Cpu>,
    pub vcpus: BTreeMap<VcpuId, SimVcpu>,
    pub decisions: u64,
}

impl Sim {
    /// pCPUs idle, ticks aligned on multiples of the tick period, IPIs delivered in 20 µs.
    pub fn new(cfg: Config) -> Self {
        let mut s = Self {
            sched: Credit::new(cfg).expect("valid config"),
            now: 0,
            ipi_delay: 20 * US,
            events: BinaryHeap::new(),
            seq: 0,
            cpus: alloc::vec![Cpu::default(); cfg.pcpus],
            vcpus: BTreeMap::new(),
            decisions: 0,
        };
        for p in 0..cfg.pcpus {
            s.push(cfg.tick_ns, Ev::Tick(p));
        }
        s
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    /// Sends the IPIs of a mask.
    pub fn kick(&mut self, mask: CpuMask) {
        for p in 0..self.cpus.len() {
            if mask & (1 << p) != 0 {
                self.push(self.now + self.ipi_delay, Ev::Ipi(p));
            }
        }
    }

    pub fn domain(&mut self, dom: DomId, weight: u32, cap: u32) {
        self.sched.add_domain(dom, weight, cap).expect("add_domain");
    }

    /// Adds a vCPU and starts it (its first wake) now.
    pub fn vcpu(&mut self, id: VcpuId, affinity: CpuMask, behaviour: Behaviour) {
        self.sched
            .add_vcpu(id, affinity, self.now)
            .expect("add_vcpu");
        self.vcpus.insert(
            id,
            SimVcpu {
                behaviour,
                runnable: false,
                work_left: 0,
                woke_at: None,
                dispatched_at: 0,
                last_pcpu: None,
                latencies: Vec::new(),
                segments: Vec::new(),
                dispatches: 0,
                migrations: 0,
                preempted_after: Vec::new(),
            },
        );
        self.wake(id);
    }

    /// One domain with one vCPU.
    pub fn guest(&mut self, dom: DomId, weight: u32, cap: u32, affinity: CpuMask, b: Behaviour) {
        self.domain(dom, weight, cap);
        self.vcpu(VcpuId::new(dom, 0), affinity, b);
    }

    fn wake(&mut self, id: VcpuId) {
        let v = self.vcpus.get_mut(&id).expect("sim vCPU");
        if v.runnable {
            return;
        }
        v.runnable = true;
        v.woke_at = Some(self.now);
        v.work_left = match v.behaviour {
            Behaviour::CpuBound => Time::MAX,
            Behaviour::Cycle { run_ns, .. } => run_ns,
        };
        if let Some(p) = self.sched.wake(id, self.now) {
            self.kick(1 << p);
        }
    }

    /// Runs every event up to and including `until`, then leaves the clock there.
    pub fn run_until(&mut self, until: Time) {
        while let Some(&Reverse((at, _, ev))) = self.events.peek() {
            if at > until {
                break;
            }
            self.events.pop();
            self.now = at;
            match ev {
                Ev::Tick(p) => {
                    let t = self.sched.tick(p, self.now);
                    self.kick(t.kick);
                    if t.resched {
                        self.decide(p);
                    }
                    self.push(self.now + self.sched.config().tick_ns, Ev::Tick(p));
                }
                Ev::Timer(p, g) if g == self.cpus[p].generation => self.decide(p),
                Ev::Done(p, g) if g == self.cpus[p].generation => {
                    let id = self.cpus[p].running.expect("a vCPU finished work");
                    let v = self.vcpus.get_mut(&id).expect("sim vCPU");
                    v.runnable = false;
                    let Behaviour::Cycle { sleep_ns, .. } = v.behaviour else {
                        unreachable!("CPU-bound vCPUs never finish")
                    };
                    self.sched.block(id, self.now);
                    self.push(self.now + sleep_ns, Ev::Wake(id));
                    self.decide(p);
                }
                Ev::Timer(..) | Ev::Done(..) => {}
                Ev::Ipi(p) => self.decide(p),
                Ev::Wake(id) => self.wake(id),
            }
        }
        self.now = until;
    }

    /// A scheduling decision on `p`, as the arch code makes it: account what ran, ask the
    /// policy, check the answer, switch.
    fn decide(&mut self, p: usize) {
        let now = self.now;
        let prev = self.cpus[p].running.take();
        if let Some(id) = prev {
            let v = self.vcpus.get_mut(&id).expect("sim vCPU");
            let since = self.cpus[p].since;
            v.segments.push((since, now, p));
            if v.work_left != Time::MAX {
                v.work_left = v.work_left.saturating_sub(now - since);
            }
        }
        let d = self.sched.schedule(p, now);
        assert_eq!(
            self.sched.waiting(),
            self.sched.waiting_counted(),
            "the run queues' count drifted"
        );
        self.decisions += 1;
        self.kick(d.kick);
        self.cpus[p].generation += 1;
        let generation = self.cpus[p].generation;
        let Some(n) = d.next else {
            if let Some(id) = prev
                && self.vcpus[&id].runnable
            {
                let v = self.vcpus.get_mut(&id).expect("sim vCPU");
                v.preempted_after.push(now - v.dispatched_at);
            }
            assert_eq!(d.run_for, Time::MAX, "an idle pCPU has no deadline");
            return;
        };

        let aff = self.sched.affinity(n).expect("decided vCPU exists");
        assert!(
            aff & (1 << p) != 0,
            "{n:?} on pCPU {p} outside affinity {aff:#x}"
        );
        for (q, c) in self.cpus.iter().enumerate() {
            assert!(c.running != Some(n), "{n:?} on pCPUs {p} and {q} at once");
        }
        assert!(d.run_for > 0, "a zero-length decision");
        if let Some(id) = prev
            && id != n
            && self.vcpus[&id].runnable
        {
            let v = self.vcpus.get_mut(&id).expect("sim vCPU");
            v.preempted_after.push(now - v.dispatched_at);
        }
        let v = self.vcpus.get_mut(&n).expect("sim vCPU");
        assert!(v.runnable, "{n:?} dispatched while blocked");
        if prev != Some(n) {
            v.dispatches += 1;
            if v.last_pcpu.is_some_and(|q| q != p) {
                v.migrations += 1;
            }
            assert_eq!(d.migrated, v.last_pcpu.is_some_and(|q| q != p));
            v.last_pcpu = Some(p);
            v.dispatched_at = now;
        }
        if let Some(w) = v.woke_at.take() {
            v.latencies.push((w, now - w));
        }
        let work_left = v.work_left;
        self.cpus[p].running = Some(n);
        self.cpus[p].since = now;
        self.push(now.saturating_add(d.run_for), Ev::Timer(p, generation));
        if work_left != Time::MAX {
            self.push(now + work_left, Ev::Done(p, generation));
        }
    }
}
