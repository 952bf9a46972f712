//! vCPU power states under PSCI: which vCPUs are on, and what CPU_ON, CPU_OFF and
//! AFFINITY_INFO may do. A vCPU is named by its MPIDR affinity; a domain's vCPU `i` has
//! affinity `i` (Aff0 = i, higher levels zero), which the device tree Ferrite generates says.

use crate::vdev::psci;
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Off,
    /// CPU_ON accepted; the vCPU starts at `entry` with x0 = `context`.
    OnPending {
        entry: u64,
        context: u64,
    },
    On,
}

#[derive(Debug)]
pub struct PowerTable {
    vcpus: Vec<Power>,
}

impl PowerTable {
    /// vCPU 0 starts on; the rest wait for CPU_ON.
    pub fn new(vcpus: usize) -> Self {
        let mut v = alloc::vec![Power::Off; vcpus];
        if let Some(first) = v.first_mut() {
            *first = Power::On;
        }
        Self { vcpus: v }
    }

    /// A restored vCPU that was running when its domain was saved.
    pub fn set_on(&mut self, i: usize) {
        if let Some(p) = self.vcpus.get_mut(i) {
            *p = Power::On;
        }
    }

    fn index(&self, mpidr: u64) -> Option<usize> {
        // Only Aff0 may be set; MPIDR bits outside the affinity fields are ignored.
        let aff = mpidr & 0xff_00ff_ffff;
        (aff < self.vcpus.len() as u64).then_some(aff as usize)
    }

    /// CPU_ON: Ok(vCPU index) to start, or the PSCI error for the caller.
    pub fn cpu_on(&mut self, target: u64, entry: u64, context: u64) -> Result<usize, i64> {
        let i = self.index(target).ok_or(psci::INVALID_PARAMETERS)?;
        if !entry.is_multiple_of(4) {
            return Err(psci::INVALID_ADDRESS);
        }
        match self.vcpus[i] {
            Power::On => Err(psci::ALREADY_ON),
            Power::OnPending { .. } => Err(psci::ON_PENDING),
            Power::Off => {
                self.vcpus[i] = Power::OnPending { entry, context };
                Ok(i)
            }
        }
    }

    /// The vCPU's pCPU picked up the start request.
    pub fn take_start(&mut self, i: usize) -> Option<(u64, u64)> {
        match self.vcpus.get(i) {
            Some(&Power::OnPending { entry, context }) => {
                self.vcpus[i] = Power::On;
                Some((entry, context))
            }
            _ => None,
        }
    }

    pub fn cpu_off(&mut self, i: usize) {
        if let Some(p) = self.vcpus.get_mut(i) {
            *p = Power::Off;
        }
    }

    pub fn affinity_info(&self, target: u64, level: u64) -> i64 {
        if level != 0 {
            return psci::INVALID_PARAMETERS;
        }
        match self.index(target).map(|i| self.vcpus[i]) {
            None => psci::INVALID_PARAMETERS,
            Some(Power::On) => psci::AFF_ON,
            Some(Power::Off) => psci::AFF_OFF,
            Some(Power::OnPending { .. }) => psci::AFF_ON_PENDING,
        }
    }

    pub fn state(&self, i: usize) -> Option<Power> {
        self.vcpus.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_on_lifecycle() {
        let mut t = PowerTable::new(4);
        assert_eq!(t.affinity_info(0, 0), psci::AFF_ON);
        assert_eq!(t.affinity_info(2, 0), psci::AFF_OFF);
        assert_eq!(t.cpu_on(2, 0x4000_0000, 9), Ok(2));
        assert_eq!(t.affinity_info(2, 0), psci::AFF_ON_PENDING);
        assert_eq!(t.cpu_on(2, 0x4000_0000, 9), Err(psci::ON_PENDING));
        assert_eq!(t.take_start(2), Some((0x4000_0000, 9)));
        assert_eq!(t.take_start(2), None);
        assert_eq!(t.cpu_on(2, 0x4000_0000, 9), Err(psci::ALREADY_ON));
        t.cpu_off(2);
        assert_eq!(t.affinity_info(2, 0), psci::AFF_OFF);
        assert_eq!(t.cpu_on(2, 0x4000_0000, 1), Ok(2));
    }

    #[test]
    fn bad_targets_and_addresses() {
        let mut t = PowerTable::new(2);
        assert_eq!(t.cpu_on(0, 0x1000, 0), Err(psci::ALREADY_ON));
        assert_eq!(t.cpu_on(2, 0x1000, 0), Err(psci::INVALID_PARAMETERS));
        assert_eq!(t.cpu_on(0x100, 0x1000, 0), Err(psci::INVALID_PARAMETERS));
        assert_eq!(t.cpu_on(1, 0x1002, 0), Err(psci::INVALID_ADDRESS));
        assert_eq!(t.affinity_info(1, 1), psci::INVALID_PARAMETERS);
        // Bits above the affinity fields (MT, U, RES1) do not change the target.
        assert_eq!(t.cpu_on(0x8000_0001, 0x1000, 0), Ok(1));
    }
}
