//! Run-time control: domains and vCPUs come and go, dom0 changes weights, caps and affinities
//! (through a control hypercall wired elsewhere), and reads statistics. Every value is checked:
//! an out-of-range request is refused with a [`SchedError`] and changes nothing.

use super::credit::{Credit, Domain, Vcpu, bit, pri_of};
use super::stats::{Clock, State, Stats};
use super::{CpuMask, DomId, MAX_WEIGHT, Priority, SchedError, Time, VcpuId};
use alloc::vec::Vec;

impl Credit {
    fn check_weight(weight: u32) -> Result<u32, SchedError> {
        if (1..=MAX_WEIGHT).contains(&weight) {
            Ok(weight)
        } else {
            Err(SchedError::BadWeight(weight))
        }
    }

    /// A cap above every pCPU's worth would never bind: refused as a likely mistake.
    fn check_cap(&self, cap: u32) -> Result<u32, SchedError> {
        if cap as u64 <= 100 * self.cfg.pcpus as u64 {
            Ok(cap)
        } else {
            Err(SchedError::BadCap(cap))
        }
    }

    fn check_affinity(&self, affinity: CpuMask) -> Result<CpuMask, SchedError> {
        if affinity == 0 || affinity & !self.cfg.all_pcpus() != 0 {
            Err(SchedError::BadAffinity(affinity))
        } else {
            Ok(affinity)
        }
    }

    fn domain_mut(&mut self, dom: DomId) -> Result<&mut Domain, SchedError> {
        self.doms.get_mut(&dom).ok_or(SchedError::NoSuchDomain(dom))
    }

    /// A new domain with `weight` (1..=65535; [`super::DEFAULT_WEIGHT`] is Xen's default) and
    /// `cap` (percent of one pCPU, 0 for none).
    pub fn add_domain(&mut self, dom: DomId, weight: u32, cap: u32) -> Result<(), SchedError> {
        let weight = Self::check_weight(weight)?;
        let cap = self.check_cap(cap)?;
        if self.doms.contains_key(&dom) {
            return Err(SchedError::DomainExists(dom));
        }
        let budget = self.cap_budget(cap);
        self.doms.insert(
            dom,
            Domain {
                weight,
                cap,
                vcpus: Vec::new(),
                active: 0,
                budget,
                parked: false,
            },
        );
        Ok(())
    }

    /// Removes a domain whose vCPUs have all been removed.
    pub fn remove_domain(&mut self, dom: DomId) -> Result<(), SchedError> {
        let d = self.doms.get(&dom).ok_or(SchedError::NoSuchDomain(dom))?;
        if !d.vcpus.is_empty() {
            return Err(SchedError::DomainHasVcpus(dom));
        }
        self.doms.remove(&dom);
        Ok(())
    }

    /// A new vCPU, blocked (offline) until its first [`Credit::wake`], allowed on the pCPUs of
    /// `affinity`. O(log V).
    pub fn add_vcpu(&mut self, id: VcpuId, affinity: CpuMask, now: Time) -> Result<(), SchedError> {
        let affinity = self.check_affinity(affinity)?;
        if self.index.contains_key(&id) {
            return Err(SchedError::VcpuExists(id));
        }
        if !self.doms.contains_key(&id.dom) {
            return Err(SchedError::NoSuchDomain(id.dom));
        }
        let slot = self.free.pop().unwrap_or(self.vcpus.len());
        self.domain_mut(id.dom)?.vcpus.push(slot);
        if slot == self.vcpus.len() {
            self.vcpus.push(None);
        }
        self.runq.ensure(slot);
        // Spread new vCPUs: vCPU n of a domain starts on the n-th allowed pCPU.
        let first = (0..64)
            .filter(|&p| affinity & bit(p) != 0)
            .nth(id.vcpu as usize % affinity.count_ones() as usize)
            .unwrap_or(0);
        self.vcpus[slot] = Some(Vcpu {
            id,
            affinity,
            pri: Priority::Under,
            credit: 0,
            active: false,
            usage: 0,
            runnable: false,
            yielding: false,
            on: None,
            last_pcpu: first,
            ran_before: false,
            started: now,
            charged_to: now,
            clock: Clock::new(now),
        });
        self.index.insert(id, slot);
        Ok(())
    }

    /// Removes a vCPU. Returns the pCPU that was running it (it must decide again), as a mask.
    pub fn remove_vcpu(&mut self, id: VcpuId, now: Time) -> Result<CpuMask, SchedError> {
        let slot = self.slot(id).ok_or(SchedError::NoSuchVcpu(id))?;
        let mut kick = 0;
        if let Some(p) = self.v(slot).on {
            self.charge(slot, now);
            self.current[p] = None;
            kick |= bit(p);
        }
        self.runq.remove(slot);
        let active = self.v(slot).active;
        let d = self.domain_mut(id.dom)?;
        d.vcpus.retain(|&s| s != slot);
        if active {
            d.active -= 1;
        }
        self.vcpus[slot] = None;
        self.free.push(slot);
        self.index.remove(&id);
        Ok(kick)
    }

    /// Takes effect at the next accounting period. O(log D).
    pub fn set_weight(&mut self, dom: DomId, weight: u32) -> Result<(), SchedError> {
        let weight = Self::check_weight(weight)?;
        self.domain_mut(dom)?.weight = weight;
        Ok(())
    }

    /// Changes the cap at once: the rest of this period's budget grows or shrinks by the
    /// difference, so a lowered cap can park the domain now and a removed one unparks it.
    /// Returns the pCPUs to interrupt.
    pub fn set_cap(&mut self, dom: DomId, cap: u32, now: Time) -> Result<CpuMask, SchedError> {
        let cap = self.check_cap(cap)?;
        let old = self.domain_mut(dom)?.cap;
        let mut kick = 0;
        // Bring the budget up to date under the old cap first.
        for p in 0..self.cfg.pcpus {
            if let Some(s) = self.current[p]
                && self.v(s).id.dom == dom
            {
                self.charge(s, now);
            }
        }
        let (new_budget, delta) = (
            self.cap_budget(cap),
            self.cap_budget(cap) - self.cap_budget(old),
        );
        let d = self.domain_mut(dom)?;
        d.cap = cap;
        d.budget = if old == 0 {
            new_budget
        } else {
            d.budget + delta
        };
        let d = &self.doms[&dom];
        if d.parked && (cap == 0 || d.budget > 0) {
            self.unpark(dom, &mut kick);
        } else if !d.parked && cap != 0 && d.budget <= 0 {
            self.park(dom, &mut kick);
        }
        Ok(kick)
    }

    /// Changes where a vCPU may run. A queued vCPU moves at once; a running one is moved by the
    /// next decision on its pCPU, which is returned to be interrupted. O(log V).
    pub fn set_affinity(
        &mut self,
        id: VcpuId,
        affinity: CpuMask,
        _now: Time,
    ) -> Result<CpuMask, SchedError> {
        let affinity = self.check_affinity(affinity)?;
        let slot = self.slot(id).ok_or(SchedError::NoSuchVcpu(id))?;
        self.vm(slot).affinity = affinity;
        let mut kick = 0;
        if let Some(p) = self.v(slot).on
            && affinity & bit(p) == 0
        {
            kick |= bit(p);
        }
        if let Some((p, _)) = self.runq.position(slot)
            && affinity & bit(p) == 0
        {
            self.runq.remove(slot);
            if let Some(t) = self.place(slot) {
                kick |= bit(t);
            }
        }
        Ok(kick)
    }

    pub fn weight(&self, dom: DomId) -> Option<u32> {
        self.doms.get(&dom).map(|d| d.weight)
    }

    pub fn cap(&self, dom: DomId) -> Option<u32> {
        self.doms.get(&dom).map(|d| d.cap)
    }

    pub fn affinity(&self, id: VcpuId) -> Option<CpuMask> {
        Some(self.v(self.slot(id)?).affinity)
    }

    /// A vCPU's statistics up to `now`. O(log V).
    pub fn stats(&self, id: VcpuId, now: Time) -> Option<Stats> {
        let v = self.v(self.slot(id)?);
        let [running_ns, runnable_ns, blocked_ns, lifetime_ns] = v.clock.totals(now);
        // Credit as it would be if charged now.
        let credit_ns = match v.on {
            Some(_) if v.clock.state() == State::Running => {
                v.credit - now.saturating_sub(v.charged_to) as i64
            }
            _ => v.credit,
        };
        Some(Stats {
            running_ns,
            runnable_ns,
            blocked_ns,
            lifetime_ns,
            runs: v.clock.runs,
            migrations: v.clock.migrations,
            credit_ns,
            priority: if v.active && v.pri != Priority::Boost {
                pri_of(credit_ns)
            } else {
                v.pri
            },
            pcpu: v
                .on
                .or(self.runq.position(self.slot(id)?).map(|(p, _)| p))
                .unwrap_or(v.last_pcpu),
        })
    }
}
