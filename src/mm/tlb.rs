//! Which vCPU of a domain last ran on each pCPU: the TLB maintenance a world switch needs.
//!
//! A guest's TLB entries are tagged with its domain's VMID (and the guest's ASID), not with
//! the vCPU, so on one pCPU the vCPUs of a domain share them, while the guest expects a TLB
//! per vCPU. When a pCPU loads vCPU `v` of a domain and another vCPU of that domain was the
//! last of it to run there, that VMID's stage-1 entries on this pCPU are invalidated, locally
//! (the `last_vcpu_ran` of Xen's and KVM's arm64 ports). Otherwise a switch invalidates
//! nothing: the entries of other domains are tagged with their own VMIDs.
//!
//! What keeps the rest correct, without an invalidation per switch:
//! - a guest's own TLB instructions are broadcast to every pCPU (HCR_EL2.FB), so they reach
//!   pCPUs where its vCPUs ran before;
//! - stage-2 entries belong to the domain, not to a vCPU: Ferrite invalidates them on every
//!   pCPU when it changes a stage-2 table, and every VMID's entries before a VMID is reused;
//! - Ferrite's own invalidations on a PV domain's behalf are broadcast, except the local ones
//!   its vCPU asks for (`MMUEXT_OP` `TLB_FLUSH_LOCAL`, `INVLPG_LOCAL`): Ferrite runs those at
//!   EL2, where FB does not apply, so they leave that vCPU's older entries on the pCPUs it ran
//!   on before. [`LastRan::flushed_here`] then makes those pCPUs forget it ran there, and the
//!   next load there invalidates.
//!
//! Before this, every world switch broadcast an invalidation of the incoming VMID
//! (`TLBI VMALLS12E1IS`): correct, but it waited for every CPU, emptied the TLBs of that
//! domain's vCPUs running on other CPUs, and under QEMU stopped every vCPU thread (a world
//! switch took 70-105 µs of real time instead of about 30).

use core::sync::atomic::{AtomicU16, Ordering};

/// No vCPU of the domain has run on the pCPU (or its entries there may be stale).
const NONE: u16 = u16::MAX;

/// Per pCPU, the domain's vCPU that last ran there (for `N` pCPUs).
pub struct LastRan<const N: usize> {
    cpus: [AtomicU16; N],
}

impl<const N: usize> Default for LastRan<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LastRan<N> {
    pub const fn new() -> Self {
        Self {
            cpus: [const { AtomicU16::new(NONE) }; N],
        }
    }

    /// pCPU `cpu` loads vCPU `vcpu`: whether it must first invalidate the domain's stage-1
    /// entries there (another vCPU of the domain, or none known, ran there last). Only `cpu`
    /// itself calls this for `cpu`.
    pub fn load(&self, cpu: usize, vcpu: u16) -> bool {
        match self.cpus.get(cpu) {
            Some(c) => c.swap(vcpu, Ordering::AcqRel) != vcpu,
            None => true,
        }
    }

    /// vCPU `vcpu`, running on pCPU `cpu`, invalidated TLB entries on `cpu` alone: on every
    /// other pCPU where it was the last of the domain to run, its older entries may be stale,
    /// so its next load there invalidates.
    pub fn flushed_here(&self, cpu: usize, vcpu: u16) {
        for (i, c) in self.cpus.iter().enumerate() {
            if i != cpu {
                // Only if it is still `vcpu`: another vCPU loaded there since invalidates anyway.
                let _ = c.compare_exchange(vcpu, NONE, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_load_on_a_cpu_invalidates() {
        let l = LastRan::<4>::new();
        assert!(l.load(0, 0));
        assert!(!l.load(0, 0), "the same vCPU again: its own entries");
        assert!(l.load(1, 0), "another pCPU it never ran on");
    }

    #[test]
    fn another_vcpu_of_the_domain_invalidates() {
        let l = LastRan::<2>::new();
        assert!(l.load(0, 0));
        assert!(l.load(0, 1), "vCPU 1 must not see vCPU 0's entries");
        assert!(l.load(0, 0));
        assert!(!l.load(0, 0));
    }

    #[test]
    fn a_local_flush_elsewhere_makes_old_entries_stale() {
        let l = LastRan::<3>::new();
        assert!(l.load(0, 5));
        // vCPU 5 moves to pCPU 1 and invalidates there alone.
        assert!(l.load(1, 5));
        l.flushed_here(1, 5);
        assert!(!l.load(1, 5), "pCPU 1 did the invalidation itself");
        assert!(l.load(0, 5), "pCPU 0 still holds its entries from before");
    }

    #[test]
    fn a_local_flush_leaves_other_vcpus_records_alone() {
        let l = LastRan::<2>::new();
        assert!(l.load(0, 1));
        l.flushed_here(1, 2);
        assert!(
            !l.load(0, 1),
            "vCPU 2's flush says nothing about vCPU 1's entries"
        );
    }

    #[test]
    fn a_cpu_beyond_the_table_always_invalidates() {
        let l = LastRan::<2>::new();
        assert!(l.load(7, 0));
        assert!(l.load(7, 0));
    }
}
