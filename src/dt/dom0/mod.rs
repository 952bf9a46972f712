//! dom0's device tree, generated from the host's.
//!
//! dom0 is the privileged guest that owns the real devices: Ferrite's own small dom0 or an
//! unmodified Linux kernel. It boots at EL1 with a device tree that is the host's, edited: its
//! RAM is mapped 1:1 (guest-physical == physical, as Xen does for dom0 on Arm, so that
//! passed-through devices can DMA without an IOMMU), so every device keeps its address and
//! almost every node, phandle and reference is copied verbatim. What changes is what Ferrite
//! owns or emulates: memory, CPUs, PSCI, the GIC, the boot modules, plus a `/hypervisor` node.
//!
//! # API
//!
//! ```ignore
//! pub fn generate(host_dtb: &[u8], cfg: &Dom0Config) -> Result<Dom0Dt, DtError>;
//! ```
//!
//! [`generate`] takes the host blob (validated exactly as [`parse`](super::parse) does; a blob
//! that is unusable as a whole is a [`DtError`]) and a [`Dom0Config`] saying what Ferrite gives
//! dom0, and returns a [`Dom0Dt`]: the new v17 blob, the devices to pass through (translated
//! MMIO ranges and SPIs, for the stage-2 map and the vGIC), and one note per thing dropped or
//! changed, for the boot log. An empty `cfg.memory` is [`DtError::EmptyMemory`].
//!
//! # The generated tree
//!
//! - Root properties are kept. Every `device_type = "memory"` node is replaced by one
//!   `memory@<first bank>` with one `reg` entry per dom0 bank, in the root's cell sizes.
//! - `/reserved-memory` is dropped (Ferrite keeps those regions); `/memreserve/` entries are
//!   kept only if they lie wholly inside dom0's RAM.
//! - `/chosen`: `bootargs` and `linux,initrd-start`/`-end` (64-bit) come from the config;
//!   `stdout-path`, `kaslr-seed`, `rng-seed` and other properties are kept; every child (boot
//!   modules) is dropped.
//! - `/cpus`: the first `vcpus` usable `cpu` nodes become `cpu@<i>` with `reg = <i>` (dom0's
//!   MPIDRs are 0..n-1) and `enable-method = "psci"`; `cpu-release-addr`, the other CPUs,
//!   `cpu-map` and any other `/cpus` child referring to a removed CPU are dropped. References
//!   to removed CPUs elsewhere (a PMU's `interrupt-affinity`) are noted.
//! - `/psci` is replaced (or created) with PSCI 1.0 over `hvc`, Ferrite's emulation; the
//!   original binding's function IDs are the standard PSCI 0.2 ones.
//! - The GIC keeps its phandle, `#interrupt-cells` and `interrupt-controller`; its `reg` is
//!   dom0's [`GicView`], written back into the GIC's parent bus addresses; the maintenance
//!   interrupt and MSI controllers (ITS, GICv2m frames) go; references to those go too.
//! - `/hypervisor` is added; docs/hypervisor-node.md is its contract with guests.
//! - With a control page, `/ferrite-ctrl@<address>` is added (`compatible = "ferrite,ctrl",
//!   "generic-uio"`, `reg` = the frame in the root's cells, no interrupt); docs/linux-dom0.md.
//! - `/aliases` and `/__symbols__` entries naming a dropped node are dropped, and those naming a
//!   renamed one (a CPU) follow it.
//! - Everything else, disabled nodes included, is copied as it is.
//!
//! # Passthrough
//!
//! Every enabled node (with every ancestor enabled) that has a `reg` or GIC SPIs is listed,
//! except memory, the GIC and its children, the console (whose registers Ferrite emulates at
//! the same address), `/cpus`, `/chosen` and `/reserved-memory`. Its regions are its `reg`
//! translated to CPU physical addresses (plus, for `device_type = "pci"`, the `ranges` windows);
//! its SPIs come from `interrupts`, `interrupts-extended` and `interrupt-map` entries whose
//! controller is the GIC. Nodes below a PCI bus are covered by the bus's windows and not listed
//! themselves. A node whose `reg` cannot be translated (it sits on a bus that is not
//! memory-mapped, such as I2C) is skipped with a note. Nodes with SPIs but no `reg` (a PMU
//! wired to SPIs) are listed too, as Xen does, or their interrupts would never reach dom0.
//! Parts of a `reg` inside dom0's RAM are left out; overlaps with other host RAM are noted.

mod emit;
mod passthrough;
mod plan;

#[cfg(test)]
mod tests;

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use super::{DtError, tree::Tree, validate};
use crate::mm::region::Region;

/// What Ferrite gives dom0, and so what its device tree must say.
#[derive(Clone, Debug)]
pub struct Dom0Config<'a> {
    /// dom0's RAM banks (IPA == PA), sorted.
    pub memory: &'a [Region],
    /// dom0's kernel command line (`/chosen/bootargs`).
    pub bootargs: &'a str,
    /// Where Ferrite placed dom0's initrd, if any.
    pub initrd: Option<Region>,
    /// dom0's vCPU count (at most the host's CPUs).
    pub vcpus: usize,
    /// The host UART Ferrite keeps for itself. Ferrite emulates a PL011 at the same address for
    /// dom0, so the node stays (and `stdout-path` keeps pointing at it), but it is not passed
    /// through.
    pub console: Option<Region>,
    /// What dom0 sees of the GIC.
    pub gic: GicView,
    /// The contents of the `/hypervisor` node.
    pub hypervisor: HypervisorNode,
}

/// The GIC as dom0 sees it: CPU physical addresses of the frames its GIC node describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicView {
    /// The node gets exactly these two `reg` entries: the distributor (emulated by Ferrite)
    /// and the CPU interface (the host GICC address, backed by the GICV frame).
    V2 { dist: Region, cpu: Region },
    /// The distributor and one redistributor region (`vcpus` * 0x20000 at the host GICR base);
    /// `#redistributor-regions` = 1.
    V3 { dist: Region, redist: Region },
}

/// The `/hypervisor` node's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypervisorNode {
    pub abi_major: u32,
    pub abi_minor: u32,
    /// The PPI (as a GIC INTID, 16..=31; e.g. 31) on which Ferrite signals events to dom0.
    pub event_ppi: u32,
    /// Guest-physical space where dom0 maps granted frames (`ferrite,grant-window`).
    pub grant_window: Option<Region>,
    /// dom0's control page (`vdev::ctrl`), described as `/ferrite-ctrl@<address>`.
    pub ctrl_page: Option<Region>,
}

/// dom0's device tree and what Ferrite must do to make it true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0Dt {
    /// The flattened device tree (v17).
    pub blob: Vec<u8>,
    /// Devices dom0 drives directly, in tree order.
    pub passthrough: Vec<Passthrough>,
    /// What was dropped or changed and why, one line each, for the boot log.
    pub notes: Vec<String>,
}

/// A device handed to dom0: map its registers 1:1 and route its SPIs to dom0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passthrough {
    /// The node's path in the host tree (the same in dom0's, which renames only CPUs).
    pub path: String,
    /// CPU physical MMIO ranges: sorted, overlaps and neighbours merged, dom0 RAM removed. Not
    /// page-aligned: the stage-2 mapper rounds them.
    pub regions: Vec<Region>,
    /// GIC INTIDs (32 and up) of its SPIs, sorted, without duplicates.
    pub spis: Vec<u32>,
}

/// Builds dom0's device tree from the host's; see the module documentation for the rules.
pub fn generate(host_dtb: &[u8], cfg: &Dom0Config) -> Result<Dom0Dt, DtError> {
    if cfg.memory.is_empty() {
        return Err(DtError::EmptyMemory);
    }
    let size = validate::total_size(host_dtb)?;
    let blob = host_dtb.get(..size).ok_or(DtError::Truncated {
        total_size: size,
        available: host_dtb.len(),
    })?;
    let checked = validate::check(blob)?;
    let blob = if checked.has_nops {
        Cow::Owned(validate::strip_nops(blob, &checked.header))
    } else {
        Cow::Borrowed(blob)
    };
    let malformed = DtError::Malformed {
        offset: checked.header.off_struct,
        what: "unreadable root node",
    };
    let fdt = fdt::Fdt::new(&blob).map_err(|_| malformed.clone())?;
    let tree = Tree::new(&fdt).ok_or(malformed)?;

    let mut plan = plan::Plan::new(&tree, cfg);
    let blob = emit::emit(&tree, &mut plan, cfg, &checked.reservations);
    let passthrough = passthrough::collect(&tree, &mut plan, cfg);
    Ok(Dom0Dt {
        blob,
        passthrough,
        notes: plan.notes,
    })
}
