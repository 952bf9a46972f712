//! The Credit policy's hot path: waking and blocking vCPUs, the tick, and the per-pCPU decision
//! with its load balancing. Accounting is in `account.rs`, run-time control in `control.rs`.

use super::idmap::{DomMap, VcpuMap};
use super::runq::{QUEUED, RunQueues};
use super::stats::{Clock, State};
use super::{Config, CpuMask, Decision, DomId, Priority, SchedError, Tick, Time, VcpuId};
use alloc::vec::Vec;

/// How deep into each of a peer's queues a stealing pCPU looks for a vCPU allowed to run on
/// it. Bounding the scan keeps a decision O(pCPUs), whatever the number of vCPUs; a movable
/// vCPU queued behind this many pinned ones is found by a later decision, or by its own pCPU.
pub(super) const STEAL_SCAN: usize = 8;

/// The shortest `run_for` handed out, so that a nearly spent cap budget or rate limit does not
/// ask for a timer too short to be useful (Xen's CSCHED_MIN_TIMER plays this part).
pub(super) const MIN_RUN_NS: Time = 50 * super::US;

pub(super) struct Vcpu {
    pub id: VcpuId,
    pub affinity: CpuMask,
    pub pri: Priority,
    /// Nanoseconds of pCPU time this vCPU may still use at its priority; negative when OVER.
    pub credit: i64,
    /// Takes part in accounting (Xen's active list): it has used a tick's worth of CPU since
    /// it last stopped earning. Xen samples this (a tick that finds the vCPU running makes it
    /// active); counting the CPU used gives the same expectation, deterministically, and cannot
    /// be dodged by running between ticks. A vCPU that runs in short bursts is rarely active,
    /// so it does not claim a share of credit it would leave unused, which would push every
    /// CPU-bound vCPU OVER and blur their weights.
    pub active: bool,
    /// CPU used since it last became active or stopped earning.
    pub usage: Time,
    /// Wants to run: not blocked. A runnable vCPU is running, queued, or parked by its cap.
    pub runnable: bool,
    pub yielding: bool,
    /// The pCPU it is current on (from the decision that picked it until the next one).
    pub on: Option<usize>,
    pub last_pcpu: usize,
    pub ran_before: bool,
    /// When it was last dispatched: the rate limit counts from here.
    pub started: Time,
    /// Credit has been charged up to this time (meaningful while current).
    pub charged_to: Time,
    pub clock: Clock,
}

pub(super) struct Domain {
    pub weight: u32,
    /// Percent of one pCPU; 0 = none.
    pub cap: u32,
    pub vcpus: Vec<usize>,
    /// Its vCPUs taking part in accounting.
    pub active: u32,
    /// Capped domains: nanoseconds left this period (carries overshoot into the next one).
    pub budget: i64,
    /// Capped and out of budget: its vCPUs wait for the next accounting period.
    pub parked: bool,
}

/// The scheduler: all domains, vCPUs and pCPUs. See the module documentation for the calls.
pub struct Credit {
    pub(super) cfg: Config,
    pub(super) vcpus: Vec<Option<Vcpu>>,
    pub(super) free: Vec<usize>,
    pub(super) index: VcpuMap,
    pub(super) doms: DomMap<Domain>,
    /// The vCPU each pCPU runs (`None`: its idle vCPU).
    pub(super) current: Vec<Option<usize>>,
    pub(super) runq: RunQueues,
    /// Idle pCPUs not yet tickled: a wake may place work on them.
    pub(super) idlers: CpuMask,
    pub(super) next_acct: Time,
}

pub(super) fn bit(pcpu: usize) -> CpuMask {
    1 << pcpu
}

/// The first pCPU of `mask` after `from`, cyclically, so that choices spread instead of
/// piling onto pCPU 0.
pub(super) fn next_in(mask: CpuMask, from: usize) -> usize {
    debug_assert!(mask != 0);
    let s = ((from + 1) % 64) as u32;
    (mask.rotate_right(s).trailing_zeros() + s) as usize % 64
}

impl Vcpu {
    /// The priority its credit gives it. An inactive vCPU is UNDER whatever its credit: it uses
    /// less than a share (that is why it is inactive), as in Xen, where only active vCPUs have
    /// their priority recomputed.
    pub fn settled_pri(&self) -> Priority {
        if self.active {
            pri_of(self.credit)
        } else {
            Priority::Under
        }
    }
}

pub(super) fn pri_of(credit: i64) -> Priority {
    if credit < 0 {
        Priority::Over
    } else {
        Priority::Under
    }
}

impl Credit {
    pub fn new(cfg: Config) -> Result<Self, SchedError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            vcpus: Vec::new(),
            free: Vec::new(),
            index: VcpuMap::new(),
            doms: DomMap::new(),
            current: alloc::vec![None; cfg.pcpus],
            runq: RunQueues::new(cfg.pcpus),
            idlers: cfg.all_pcpus(),
            next_acct: cfg.tslice_ns,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    #[inline]
    pub(super) fn v(&self, slot: usize) -> &Vcpu {
        self.vcpus[slot].as_ref().expect("live vCPU slot")
    }

    #[inline]
    pub(super) fn vm(&mut self, slot: usize) -> &mut Vcpu {
        self.vcpus[slot].as_mut().expect("live vCPU slot")
    }

    #[inline]
    pub(super) fn dom_of(&self, slot: usize) -> &Domain {
        &self.doms[&self.v(slot).id.dom]
    }

    pub(super) fn slot(&self, id: VcpuId) -> Option<usize> {
        self.index.get(&id).copied()
    }

    /// The vCPU `pcpu` runs, if any.
    pub fn current(&self, pcpu: usize) -> Option<VcpuId> {
        self.current.get(pcpu)?.map(|s| self.v(s).id)
    }

    /// vCPUs that are runnable but wait in a run queue for a pCPU, on every pCPU: O(1).
    pub fn waiting(&self) -> usize {
        self.runq.queued()
    }

    /// Whether a runnable vCPU waits behind a running one: queued on a pCPU that runs
    /// another. (One queued on an idle pCPU was just woken there and runs at that pCPU's next
    /// decision.) `vwfi=native` lets a vCPU wait in WFI without trapping only while this is
    /// false. O(1) when nothing waits, else O(pCPUs).
    pub fn contended(&self) -> bool {
        self.waiting() > 0
            && (0..self.cfg.pcpus).any(|p| self.current[p].is_some() && self.runq.total(p) > 0)
    }

    /// [`Credit::waiting`] counted the slow way, queue by queue (tests check the two agree).
    #[cfg(test)]
    pub(super) fn waiting_counted(&self) -> usize {
        (0..self.cfg.pcpus).map(|p| self.runq.total(p)).sum()
    }

    fn current_pri(&self, pcpu: usize) -> Priority {
        self.current[pcpu].map_or(Priority::Idle, |s| self.v(s).pri)
    }

    /// Charges a current vCPU for the time since it was last charged: credit, cap budget.
    pub(super) fn charge(&mut self, slot: usize, now: Time) {
        let tick = self.cfg.tick_ns;
        let v = self.vm(slot);
        let used = now.saturating_sub(v.charged_to);
        v.charged_to = v.charged_to.max(now);
        if used == 0 {
            return;
        }
        v.credit -= used as i64;
        v.usage += used;
        let newly_active = !v.active && v.usage >= tick;
        if newly_active {
            v.active = true;
            v.usage = 0;
            // It earned nothing while inactive, so it owes nothing for that time either: it
            // starts earning UNDER, not OVER on a debt run up in short bursts.
            v.credit = v.credit.max(0);
        }
        // Xen recomputes priorities only at accounting; doing it as credit is burned lets a
        // vCPU that runs out mid-period give way at the next tick instead of up to 30 ms later.
        if v.pri != Priority::Boost {
            v.pri = v.settled_pri();
        }
        let dom = v.id.dom;
        let dom = self.doms.get_mut(&dom).expect("vCPU's domain");
        if newly_active {
            dom.active += 1;
        }
        if dom.cap != 0 {
            dom.budget -= used as i64;
        }
    }

    /// Charges a current vCPU, then parks its domain if that spent the cap budget. Every vCPU of
    /// the domain running elsewhere is charged first, so the budget is exact at this instant.
    pub(super) fn burn(&mut self, slot: usize, now: Time, kick: &mut CpuMask) {
        self.charge(slot, now);
        let dom = self.v(slot).id.dom;
        let d = &self.doms[&dom];
        if d.cap == 0 || d.parked {
            return;
        }
        for p in 0..self.cfg.pcpus {
            if let Some(s) = self.current[p]
                && s != slot
                && self.v(s).id.dom == dom
            {
                self.charge(s, now);
            }
        }
        if self.doms[&dom].budget <= 0 {
            self.park(dom, kick);
        }
    }

    /// Out of cap budget: the domain's vCPUs leave the run queues until accounting refills it;
    /// the pCPUs running them are kicked so that they decide again.
    pub(super) fn park(&mut self, dom: DomId, kick: &mut CpuMask) {
        let d = self.doms.get_mut(&dom).expect("domain");
        d.parked = true;
        for &s in &d.vcpus {
            self.runq.remove(s);
            if let Some(p) = self.vcpus[s].as_ref().and_then(|v| v.on) {
                *kick |= bit(p);
            }
        }
    }

    /// Budget again: the domain's runnable vCPUs are queued again, unboosted (they did not wake
    /// from an event, they were only held back).
    pub(super) fn unpark(&mut self, dom: DomId, kick: &mut CpuMask) {
        let d = self.doms.get_mut(&dom).expect("domain");
        d.parked = false;
        let slots = d.vcpus.clone();
        for s in slots {
            let v = self.v(s);
            if v.runnable
                && v.on.is_none()
                && !self.runq.is_queued(s)
                && let Some(p) = self.place(s)
            {
                *kick |= bit(p);
            }
        }
    }

    /// Queues a runnable vCPU and says which pCPU to tickle: its last pCPU if idle, else another
    /// idle pCPU it may use (it migrates there at once rather than waiting to be stolen), else
    /// its last pCPU (or the next allowed one), tickled only if it should preempt.
    /// O(1): bit operations on the idle mask and one queue insertion.
    pub(super) fn place(&mut self, slot: usize) -> Option<usize> {
        let v = self.v(slot);
        let (aff, last, pri) = (v.affinity, v.last_pcpu, v.pri);
        let idle = self.idlers & aff;
        let (target, tickle) = if idle & bit(last) != 0 {
            (last, true)
        } else if idle != 0 {
            let t = next_in(idle, last);
            (t, true)
        } else {
            let t = if aff & bit(last) != 0 {
                last
            } else {
                next_in(aff, last)
            };
            (t, pri > self.current_pri(t))
        };
        self.runq.push_back(slot, target, pri);
        if tickle {
            self.idlers &= !bit(target);
            Some(target)
        } else {
            None
        }
    }

    /// An interrupt or event arrived for `id`. Returns the pCPU to send a scheduling IPI to,
    /// if any. A vCPU woken while UNDER is BOOSTed so it preempts CPU-bound work. O(log V).
    pub fn wake(&mut self, id: VcpuId, now: Time) -> Option<usize> {
        let slot = self.slot(id)?;
        let boost = self.cfg.boost;
        let parked = self.dom_of(slot).parked;
        let v = self.vm(slot);
        if v.runnable {
            return None;
        }
        v.runnable = true;
        if v.on.is_some() {
            // It blocked but its pCPU has not switched away yet: the pending decision keeps it.
            v.clock.enter(State::Running, now);
            return None;
        }
        v.clock.enter(State::Runnable, now);
        if parked {
            return None;
        }
        if boost && v.pri == Priority::Under {
            v.pri = Priority::Boost;
        }
        self.place(slot)
    }

    /// `id` blocks (WFI, `sched_op(block)`) until [`Credit::wake`]. If it is running, the arch
    /// code calls [`Credit::schedule`] on its pCPU next. O(log V).
    pub fn block(&mut self, id: VcpuId, now: Time) {
        let Some(slot) = self.slot(id) else { return };
        let v = self.vm(slot);
        if !v.runnable {
            return;
        }
        v.runnable = false;
        v.yielding = false;
        v.clock.enter(State::Blocked, now);
        self.runq.remove(slot);
    }

    /// The running `id` gives way: the next decision on its pCPU runs any other runnable vCPU
    /// there (of any priority) first, once. The arch code calls [`Credit::schedule`] next.
    pub fn yield_(&mut self, id: VcpuId, _now: Time) {
        if let Some(slot) = self.slot(id) {
            let v = self.vm(slot);
            if v.on.is_some() {
                v.yielding = true;
            }
        }
    }

    /// The periodic tick on `pcpu`: charges the running vCPU, ends its BOOST (it has used a
    /// noticeable amount of CPU), runs accounting when a period is over, and says whether the
    /// pCPU should decide again. O(1), plus O(pCPUs) on an idle pCPU looking for work to steal,
    /// plus accounting once per period (see `account.rs`).
    pub fn tick(&mut self, pcpu: usize, now: Time) -> Tick {
        let mut kick = 0;
        if now >= self.next_acct {
            // Whichever pCPU ticks first past the deadline accounts, so an idle or offline
            // pCPU 0 cannot stop accounting.
            self.account(now, &mut kick);
            self.next_acct += self.cfg.tslice_ns;
            if self.next_acct <= now {
                self.next_acct = now + self.cfg.tslice_ns;
            }
        }
        let resched = match self.current[pcpu] {
            Some(c) => {
                let v = self.vm(c);
                if v.pri == Priority::Boost {
                    v.pri = v.settled_pri();
                }
                self.burn(c, now, &mut kick);
                let v = self.v(c);
                let best = self.runq.best(pcpu).map_or(Priority::Idle, |(p, _)| p);
                !v.runnable || self.dom_of(c).parked || v.affinity & bit(pcpu) == 0 || best > v.pri
            }
            None => self.runq.total(pcpu) > 0 || self.find_steal(pcpu, Priority::Idle).is_some(),
        };
        Tick {
            resched,
            kick: kick & !bit(pcpu),
        }
    }

    /// How long a vCPU just picked may run: a slice, or less if its domain's cap budget would
    /// run out first (shared by the domain's running vCPUs).
    fn run_for(&self, slot: usize, now: Time) -> Time {
        let dom = self.v(slot).id.dom;
        let d = &self.doms[&dom];
        if d.cap == 0 {
            return self.cfg.tslice_ns;
        }
        let (mut left, mut running) = (d.budget, 0i64);
        for s in self.current.iter().flatten() {
            let v = self.v(*s);
            if v.id.dom == dom {
                left -= now.saturating_sub(v.charged_to) as i64;
                running += 1;
            }
        }
        let share = left / running.max(1);
        (share.max(MIN_RUN_NS as i64) as Time).min(self.cfg.tslice_ns)
    }

    /// Decides what `pcpu` runs next. Called when the current vCPU blocks or yields, when the
    /// last decision's `run_for` expires, when a tick asks, and on a scheduling IPI.
    ///
    /// The current vCPU is charged; if it started less than the rate limit ago and may go on,
    /// it does. Otherwise it goes to the tail of its class, and the head of this pCPU's best
    /// class runs; when that is OVER or nothing, a vCPU of a higher class is stolen from
    /// another pCPU. Cost: O(1) locally, O(pCPUs × STEAL_SCAN) when stealing; never
    /// proportional to the number of vCPUs.
    pub fn schedule(&mut self, pcpu: usize, now: Time) -> Decision {
        let mut kick = 0;
        let prev = self.current[pcpu].take();
        let mut held = None;
        if let Some(c) = prev {
            self.burn(c, now, &mut kick);
            let parked = self.dom_of(c).parked;
            let ratelimit = self.cfg.ratelimit_ns;
            let v = self.vm(c);
            v.on = None;
            let can_stay = v.runnable && !parked && v.affinity & bit(pcpu) != 0;
            let ran = now.saturating_sub(v.started);
            if can_stay && !v.yielding && ran < ratelimit {
                v.on = Some(pcpu);
                self.current[pcpu] = Some(c);
                let run_for = (ratelimit - ran).max(MIN_RUN_NS).min(self.run_for(c, now));
                return Decision {
                    next: Some(self.v(c).id),
                    run_for,
                    migrated: false,
                    kick: kick & !bit(pcpu),
                };
            }
            // Descheduled: a BOOST ends here.
            v.pri = v.settled_pri();
            let yielding = core::mem::take(&mut v.yielding);
            if v.runnable {
                v.clock.enter(State::Runnable, now);
                if can_stay {
                    if yielding {
                        held = Some(c);
                    } else {
                        self.runq.push_back(c, pcpu, self.v(c).pri);
                    }
                } else if !parked && let Some(t) = self.place(c) {
                    kick |= bit(t);
                }
            }
        }

        let mut next = self.pick(pcpu);
        if let Some(h) = held {
            if next.is_none() {
                next = Some(h);
            } else {
                self.runq.push_back(h, pcpu, self.v(h).pri);
            }
        }

        // A runnable vCPU preempted here goes to an idle pCPU if it may, rather than wait.
        if let Some(c) = prev
            && next != Some(c)
            && self.runq.position(c).is_some_and(|(p, _)| p == pcpu)
        {
            let idle = self.idlers & self.v(c).affinity & !bit(pcpu);
            if idle != 0 {
                let t = next_in(idle, pcpu);
                let pri = self.v(c).pri;
                self.runq.remove(c);
                self.runq.push_back(c, t, pri);
                self.idlers &= !bit(t);
                kick |= bit(t);
            }
        }

        let kick = kick & !bit(pcpu);
        let Some(n) = next else {
            self.idlers |= bit(pcpu);
            return Decision {
                next: None,
                run_for: Time::MAX,
                migrated: false,
                kick,
            };
        };
        self.idlers &= !bit(pcpu);
        self.current[pcpu] = Some(n);
        let v = self.vm(n);
        let mut migrated = false;
        if prev != Some(n) {
            v.started = now;
            v.clock.runs += 1;
            migrated = v.ran_before && v.last_pcpu != pcpu;
            if migrated {
                v.clock.migrations += 1;
            }
        }
        v.on = Some(pcpu);
        v.charged_to = now;
        v.last_pcpu = pcpu;
        v.ran_before = true;
        v.clock.enter(State::Running, now);
        Decision {
            next: Some(v.id),
            run_for: self.run_for(n, now),
            migrated,
            kick,
        }
    }

    /// Dequeues what `pcpu` runs next: its own BOOST or UNDER head; failing that, stolen work
    /// of a higher class than its own best; failing that, its own OVER head.
    fn pick(&mut self, pcpu: usize) -> Option<usize> {
        let local = self.runq.best(pcpu);
        if let Some((p, s)) = local
            && p >= Priority::Under
        {
            self.runq.remove(s);
            return Some(s);
        }
        let floor = local.map_or(Priority::Idle, |(p, _)| p);
        let chosen = self.find_steal(pcpu, floor).or(local.map(|(_, s)| s));
        if let Some(s) = chosen {
            self.runq.remove(s);
        }
        chosen
    }

    /// A vCPU queued on another pCPU, of a class above `floor`, allowed to run on `pcpu`: the
    /// best class first, peers in turn from the next pCPU up. Idle peers are skipped: they have
    /// been tickled and will run their own queue (as in Xen). O(pCPUs × STEAL_SCAN).
    pub(super) fn find_steal(&self, pcpu: usize, floor: Priority) -> Option<usize> {
        let n = self.cfg.pcpus;
        for class in QUEUED.into_iter().filter(|&c| c > floor) {
            for i in 1..n {
                let peer = (pcpu + i) % n;
                if self.current[peer].is_none() || self.runq.len(peer, class) == 0 {
                    continue;
                }
                let found = self
                    .runq
                    .iter(peer, class)
                    .take(STEAL_SCAN)
                    .find(|&s| self.v(s).affinity & bit(pcpu) != 0);
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }
}
