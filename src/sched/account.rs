//! Accounting: once per period (one time slice), hand out the machine's pCPU time as credit to
//! the active domains in proportion to their weights, then recompute priorities and refill cap
//! budgets.
//!
//! As in Xen, only vCPUs that consumed CPU recently are active and share the credit, a domain
//! never receives more than its active vCPUs could use (or its cap allows) and what it cannot
//! use goes to the others, credit is bounded below (one slice of debt) and a vCPU that piles up
//! more than a slice of credit stops being active and keeps half of it. Xen redistributes the
//! surplus lazily over several periods; here it is exact within the period (water-filling).
//!
//! Unlike Xen's single pool, domains compete for credit only where they can run: active
//! domains whose vCPUs' affinities overlap (directly or through others) form a group, and each
//! group shares the credit of the pCPUs it can reach. Domains pinned to one pCPU therefore
//! share it by weight even while other pCPUs idle or run other domains (Xen needs a cpupool for
//! that). With the default affinity (every pCPU) there is one group: Xen's behaviour.
//!
//! Cost per period: O(D log D + D² + V) for D active domains and V vCPUs; never on a decision.

use super::credit::Credit;
use super::{CpuMask, DomId, Priority, Time};
use alloc::vec::Vec;

/// One active domain's claim on the period's credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Claim {
    pub dom: DomId,
    /// Weight × active vCPUs (Xen's weight is per vCPU).
    pub weight: u64,
    /// The most it can use: active vCPUs × slice, or less under a cap.
    pub peak: u64,
    /// Filled in by [`distribute`].
    pub grant: u64,
}

/// Shares `total` among `claims` in proportion to weight, none above its peak; what a claim
/// cannot use is shared among the rest the same way. Sorting by peak per unit of weight means
/// every claim that saturates comes before every claim that does not. O(n log n).
pub(super) fn distribute(total: u64, claims: &mut [Claim]) {
    claims.sort_by(|a, b| {
        let l = a.peak as u128 * b.weight as u128;
        let r = b.peak as u128 * a.weight as u128;
        l.cmp(&r).then(a.dom.cmp(&b.dom))
    });
    let mut left = total as u128;
    let mut weight: u128 = claims.iter().map(|c| c.weight as u128).sum();
    let mut saturating = true;
    for c in claims.iter_mut() {
        let w = c.weight as u128;
        // Rounded up like Xen: a domain never gets less than its share for rounding.
        let fair = (left * w).div_ceil(weight.max(1));
        if saturating && fair >= c.peak as u128 {
            c.grant = c.peak;
            left = left.saturating_sub(c.peak as u128);
            weight -= w;
        } else {
            // From here on no claim saturates: all share what is left in proportion.
            saturating = false;
            c.grant = fair.min(c.peak as u128) as u64;
        }
    }
}

impl Credit {
    /// A capped domain's budget per period, in nanoseconds of pCPU time.
    pub(super) fn cap_budget(&self, cap: u32) -> i64 {
        (cap as u64 * self.cfg.tslice_ns / 100) as i64
    }

    /// The accounting period is over: see the module documentation.
    pub(super) fn account(&mut self, now: Time, kick: &mut CpuMask) {
        // Charge the running vCPUs first, so credits and budgets are exact at this instant.
        for p in 0..self.cfg.pcpus {
            if let Some(s) = self.current[p] {
                self.charge(s, now);
            }
        }
        let slice = self.cfg.tslice_ns;
        // A domain can use at most the pCPUs its active vCPUs may run on (its reach), and
        // shares credit only with the domains its reach overlaps (see the module docs).
        let reach = |d: &super::credit::Domain| -> CpuMask {
            d.vcpus
                .iter()
                .filter_map(|&s| self.vcpus[s].as_ref())
                .filter(|v| v.active)
                .fold(0, |m, v| m | v.affinity)
                & self.cfg.all_pcpus()
        };
        let mut reaches: Vec<CpuMask> = Vec::new();
        let claims: Vec<Claim> = self
            .doms
            .iter()
            .filter(|(_, d)| d.active > 0)
            .map(|(&dom, d)| {
                let r = reach(d);
                reaches.push(r);
                let mut peak = d.active.min(r.count_ones()) as u64 * slice;
                if d.cap != 0 {
                    peak = peak.min(self.cap_budget(d.cap) as u64);
                }
                Claim {
                    dom,
                    weight: d.weight as u64 * d.active as u64,
                    peak,
                    grant: 0,
                }
            })
            .collect();
        // Groups of claims whose reaches overlap, merged until stable (D is small).
        let mut group: Vec<usize> = (0..claims.len()).collect();
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..claims.len() {
                for j in i + 1..claims.len() {
                    if reaches[i] & reaches[j] != 0 && group[i] != group[j] {
                        let (a, b) = (group[i].min(group[j]), group[i].max(group[j]));
                        for g in group.iter_mut() {
                            if *g == b {
                                *g = a;
                            }
                        }
                        changed = true;
                    }
                }
            }
        }
        let mut granted: Vec<Claim> = Vec::with_capacity(claims.len());
        for g in 0..claims.len() {
            let members: Vec<usize> = (0..claims.len()).filter(|&i| group[i] == g).collect();
            if members.is_empty() {
                continue;
            }
            let mask = members.iter().fold(0, |m, &i| m | reaches[i]);
            let mut part: Vec<Claim> = members.iter().map(|&i| claims[i]).collect();
            distribute(mask.count_ones() as u64 * slice, &mut part);
            granted.extend(part);
        }
        let claims = granted;

        let slice = slice as i64;
        for c in &claims {
            let d = self.doms.get_mut(&c.dom).expect("claimed domain");
            let each = c.grant.div_ceil(d.active as u64) as i64;
            for &s in &d.vcpus {
                let v = self.vcpus[s].as_mut().expect("domain's vCPU");
                if !v.active {
                    continue;
                }
                v.credit = (v.credit + each).max(-slice);
                if v.credit > slice {
                    // Not using its share: stop earning until it runs again.
                    v.active = false;
                    v.usage = 0;
                    d.active -= 1;
                    v.credit /= 2;
                }
                // A BOOST survives while the vCPU waits with credit in hand (Xen would end it
                // here; keeping it bounds the wake-up latency of a vCPU woken just before).
                let pri = v.settled_pri();
                if !(v.pri == Priority::Boost && pri == Priority::Under) {
                    v.pri = pri;
                }
                self.runq.reclass(s, v.pri);
            }
        }

        // Cap budgets: a new period's worth, less any overshoot of the last one.
        let capped: Vec<(DomId, i64)> = self
            .doms
            .iter()
            .filter(|(_, d)| d.cap != 0)
            .map(|(&dom, d)| (dom, self.cap_budget(d.cap)))
            .collect();
        for (dom, budget) in capped {
            let d = self.doms.get_mut(&dom).expect("capped domain");
            d.budget = d.budget.min(0) + budget;
            if d.parked && d.budget > 0 {
                self.unpark(dom, kick);
            } else if !d.parked && d.budget <= 0 {
                self.park(dom, kick);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn claim(dom: DomId, weight: u64, peak: u64) -> Claim {
        Claim {
            dom,
            weight,
            peak,
            grant: 0,
        }
    }

    fn grants(total: u64, mut claims: Vec<Claim>) -> Vec<(DomId, u64)> {
        distribute(total, &mut claims);
        claims.sort_by_key(|c| c.dom);
        claims.iter().map(|c| (c.dom, c.grant)).collect()
    }

    #[test]
    fn proportional_to_weight() {
        let g = grants(
            700,
            vec![claim(1, 1, 1000), claim(2, 2, 1000), claim(3, 4, 1000)],
        );
        assert_eq!(g, vec![(1, 100), (2, 200), (3, 400)]);
    }

    #[test]
    fn surplus_of_a_saturated_claim_goes_to_the_others() {
        // Domain 3 could take 400 but can use only 100: 1 and 2 share the other 600 as 1:2.
        let g = grants(
            700,
            vec![claim(1, 1, 1000), claim(2, 2, 1000), claim(3, 4, 100)],
        );
        assert_eq!(g, vec![(1, 200), (2, 400), (3, 100)]);
        // Everyone saturates: each gets its peak, the rest is left over.
        let g = grants(700, vec![claim(1, 1, 10), claim(2, 1, 20)]);
        assert_eq!(g, vec![(1, 10), (2, 20)]);
    }

    #[test]
    fn rounding_never_shortchanges() {
        let g = grants(
            100,
            vec![claim(1, 1, 100), claim(2, 1, 100), claim(3, 1, 100)],
        );
        assert!(g.iter().all(|&(_, x)| x == 34), "{g:?}");
        assert_eq!(grants(100, vec![]), vec![]);
    }
}
