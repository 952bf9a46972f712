//! What Ferrite needs to know about the machine, extracted from the host device tree: the
//! description every later boot stage works from instead of the blob.

use alloc::string::String;
use alloc::vec::Vec;

use crate::mm::region::Region;

/// The host machine as described by its device tree. Addresses are CPU physical addresses
/// (bus addresses already translated) and interrupts are GIC INTIDs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// The root `model` (or first root `compatible` if there is no model).
    pub model: String,
    /// RAM from every `device_type = "memory"` node: sorted, merged, non-empty.
    pub memory: Vec<Region>,
    /// `/memreserve/` entries and `/reserved-memory` children with a static `reg`: sorted,
    /// merged. Memory Ferrite must neither use nor give away as ordinary RAM.
    pub reserved: Vec<Region>,
    /// `/reserved-memory` children that only ask for an allocation (`size`/`alloc-ranges`),
    /// by name; nothing is reserved for them.
    pub ignored_reserved: Vec<String>,
    /// Usable CPUs, in device-tree order (the boot CPU is not necessarily first).
    pub cpus: Vec<CpuInfo>,
    pub uart: Option<UartInfo>,
    pub gic: Option<GicInfo>,
    pub timer: Option<TimerInfo>,
    pub psci: Option<PsciInfo>,
    /// `/chosen/bootargs`, or empty.
    pub bootargs: String,
    /// The initrd from `/chosen` `linux,initrd-start`/`linux,initrd-end`.
    pub initrd: Option<Region>,
    /// Boot modules under `/chosen` (the Xen/multiboot binding).
    pub modules: Vec<BootModule>,
    /// Nodes and properties that were skipped, and why: one log line each.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// The affinity fields of the CPU's MPIDR_EL1, from its `reg`.
    pub mpidr: u64,
    pub enable: EnableMethod,
}

/// How a secondary CPU is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnableMethod {
    Psci,
    /// Spin table: write the entry point to `release_addr`, then `sev`.
    SpinTable {
        release_addr: u64,
    },
    /// Any other `enable-method`, verbatim; empty when the node has none (often the case for
    /// the boot CPU, which needs no enabling).
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UartInfo {
    pub base: u64,
    pub size: u64,
    pub kind: UartKind,
    /// Device-tree path of the UART node, so the dom0 tree can hide or keep it.
    pub path: String,
    /// Its interrupt (a GIC INTID), for receive.
    pub irq: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    Pl011,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GicInfo {
    V2 {
        dist: Region,
        cpu: Region,
        /// GICH: the virtual interface control registers (needed to run guests).
        hyp: Option<Region>,
        /// GICV: the virtual CPU interface that guests see as their GICC.
        vcpu: Option<Region>,
        maintenance_irq: Option<u32>,
    },
    V3 {
        dist: Region,
        redist: Vec<Region>,
        maintenance_irq: Option<u32>,
    },
}

/// Generic timer interrupts as GIC INTIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerInfo {
    pub sec_phys: u32,
    pub phys: u32,
    pub virt: u32,
    pub hyp_phys: u32,
    pub hyp_virt: Option<u32>,
    /// `clock-frequency`, only for firmware that does not program CNTFRQ_EL0.
    pub clock_frequency: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsciInfo {
    pub conduit: Conduit,
    /// The most specific `compatible` (e.g. "arm,psci-1.0").
    pub compatible: String,
}

/// The instruction that calls PSCI firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootModule {
    pub region: Region,
    pub kind: ModuleKind,
    /// The module's own `bootargs` (a kernel's command line).
    pub bootargs: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    Kernel,
    Ramdisk,
    Other,
}
