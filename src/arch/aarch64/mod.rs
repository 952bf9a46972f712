//! aarch64 at EL2: boot, exceptions, the MMU, the GIC, the generic timer, PSCI and SMP.

pub mod boot;
pub mod context;
pub mod cpu;
pub mod esr;
pub mod exceptions;
pub mod gic;
pub mod guest_mem;
pub mod mmu;
pub mod pmu;
pub mod psci;
pub mod semihosting;
pub mod smp;
pub mod stage2;
pub mod timer;
pub mod trap;
pub mod vcpu;
pub mod vgic_hw;
