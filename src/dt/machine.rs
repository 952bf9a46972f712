//! Extraction of each part of [`MachineInfo`] from an indexed tree, following the standard
//! bindings (memory, reserved-memory, cpus, arm,pl011, arm,gic*, arm,armv8-timer, arm,psci,
//! chosen and the multiboot module binding Xen uses).
//!
//! Anything malformed is skipped with a line in `warnings`: a machine with an odd timer node
//! should still boot far enough to say so.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::DtError;
use super::info::*;
use super::ranges::read_cells;
use super::tree::Tree;
use crate::mm::region::{self, Region};

const GIC_V3: &[&str] = &["arm,gic-v3"];
const GIC_V2: &[&str] = &[
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,gic-v2",
];
const TIMER: &[&str] = &["arm,armv8-timer", "arm,armv7-timer"];
const PL011: &[&str] = &["arm,pl011"];

pub(super) struct Extractor<'t, 'b, 'a> {
    pub tree: &'t Tree<'b, 'a>,
    pub warnings: Vec<String>,
}

impl Extractor<'_, '_, '_> {
    fn warn(&mut self, node: usize, what: impl core::fmt::Display) {
        let path = self.tree.path(node);
        self.warnings.push(format!("{path}: {what}"));
    }

    /// Translated `reg` of a node, or a warning and `None`.
    fn reg(&mut self, node: usize) -> Option<Vec<Region>> {
        match self.tree.reg(node) {
            Ok(regs) => Some(regs),
            Err(e) => {
                self.warn(node, format_args!("skipped: {e}"));
                None
            }
        }
    }

    pub fn model(&self) -> String {
        let t = self.tree;
        t.prop_str(0, "model")
            .or_else(|| t.prop_strings(0, "compatible").next())
            .unwrap_or_default()
            .to_string()
    }

    pub fn memory(&mut self) -> Result<Vec<Region>, DtError> {
        let t = self.tree;
        let nodes: Vec<usize> = (0..t.nodes.len())
            .filter(|&i| t.prop_str(i, "device_type") == Some("memory") && t.is_enabled(i))
            .collect();
        if nodes.is_empty() {
            return Err(DtError::NoMemory);
        }
        let mut memory = Vec::new();
        for node in nodes {
            memory.extend(self.reg(node).unwrap_or_default());
        }
        region::merge(&mut memory);
        if memory.is_empty() {
            return Err(DtError::EmptyMemory);
        }
        Ok(memory)
    }

    /// Static reservations from `/reserved-memory`, plus the names of dynamic ones.
    pub fn reserved_memory(&mut self) -> (Vec<Region>, Vec<String>) {
        let t = self.tree;
        let (mut reserved, mut ignored) = (Vec::new(), Vec::new());
        let Some(parent) = t.find_path("/reserved-memory") else {
            return (reserved, ignored);
        };
        for child in t.children(parent).filter(|&c| t.is_enabled(c)) {
            if t.prop(child, "reg").is_some() {
                reserved.extend(self.reg(child).unwrap_or_default());
            } else {
                ignored.push(t.nodes[child].name.to_string());
            }
        }
        (reserved, ignored)
    }

    pub fn cpus(&mut self) -> Vec<CpuInfo> {
        let t = self.tree;
        let Some(cpus) = t.find_path("/cpus") else {
            self.warnings.push("/cpus: missing".into());
            return Vec::new();
        };
        let (address_cells, _) = t.child_cells(cpus);
        let mut out = Vec::new();
        for node in t.children(cpus).filter(|&c| t.base_name(c) == "cpu") {
            if matches!(t.prop_str(node, "status"), Some(s) if s == "disabled" || s.starts_with("fail"))
            {
                continue;
            }
            let mpidr = match (address_cells, t.prop(node, "reg")) {
                (1 | 2, Some(reg)) => read_cells(reg, address_cells),
                _ => None,
            };
            let Some(mpidr) = mpidr else {
                self.warn(
                    node,
                    format_args!("skipped: no usable reg (#address-cells {address_cells})"),
                );
                continue;
            };
            let method = t
                .prop_strings(node, "enable-method")
                .next()
                .unwrap_or_default();
            let enable = match method {
                "psci" => EnableMethod::Psci,
                "spin-table" => match t.prop_u64(node, "cpu-release-addr") {
                    Some(release_addr) => EnableMethod::SpinTable { release_addr },
                    None => {
                        self.warn(node, "skipped: spin-table without a cpu-release-addr");
                        continue;
                    }
                },
                other => EnableMethod::Other(other.to_string()),
            };
            out.push(CpuInfo { mpidr, enable });
        }
        out
    }

    /// The stdout-path UART if it is a PL011, else the first enabled PL011 whose registers
    /// can be located.
    pub fn uart(&mut self) -> Option<UartInfo> {
        let t = self.tree;
        let chosen = t.find_path("/chosen");
        let stdout = chosen
            .and_then(|c| {
                t.prop_str(c, "stdout-path")
                    .or_else(|| t.prop_str(c, "linux,stdout-path"))
            })
            .and_then(|p| t.resolve_path_or_alias(p))
            .filter(|&n| t.is_compatible(n, PL011) && t.is_enabled(n));
        let others = (0..t.nodes.len()).filter(|&n| t.is_compatible(n, PL011) && t.is_enabled(n));
        for node in stdout.into_iter().chain(others) {
            match self.reg(node).and_then(|r| r.first().copied()) {
                Some(r) => {
                    let irq = self.interrupts(node).and_then(|i| i.first().copied());
                    return Some(UartInfo {
                        base: r.start,
                        size: r.size,
                        kind: UartKind::Pl011,
                        path: t.path(node),
                        irq,
                    });
                }
                None => self.warn(node, "UART without registers"),
            }
        }
        None
    }

    /// GIC INTIDs from a node's `interrupts` (GIC binding: type, number, flags[, ...]).
    fn interrupts(&mut self, node: usize) -> Option<Vec<u32>> {
        let t = self.tree;
        let value = t.prop(node, "interrupts")?;
        let cells = t.interrupt_cells(node).unwrap_or(3) as usize;
        if cells < 2 || !value.len().is_multiple_of(cells * 4) {
            self.warn(
                node,
                format_args!(
                    "interrupts: {} bytes for {cells}-cell specifiers",
                    value.len()
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        for spec in value.chunks_exact(cells * 4) {
            let kind = read_cells(spec, 1)?;
            let number = read_cells(&spec[4..], 1)? as u32;
            // SPI, PPI, extended SPI, extended PPI.
            let (base, limit) = match kind {
                0 => (32, 988),
                1 => (16, 16),
                2 => (4096, 1024),
                3 => (1056, 64),
                _ => (0, 0),
            };
            if number >= limit {
                self.warn(
                    node,
                    format_args!("interrupt type {kind} number {number} is not a GIC interrupt"),
                );
                return None;
            }
            out.push(base + number);
        }
        Some(out)
    }

    pub fn gic(&mut self) -> Option<GicInfo> {
        let t = self.tree;
        let is_gic = |n: usize| {
            t.is_enabled(n) && (t.is_compatible(n, GIC_V3) || t.is_compatible(n, GIC_V2))
        };
        let node = (0..t.nodes.len()).find(|&n| is_gic(n))?;
        let regs = self.reg(node)?;
        let maintenance_irq = self.interrupts(node).and_then(|i| i.first().copied());
        if t.is_compatible(node, GIC_V3) {
            let count = t.prop_u32(node, "#redistributor-regions").unwrap_or(1) as usize;
            if count == 0 || regs.len() < 1 + count {
                self.warn(
                    node,
                    format_args!(
                        "skipped: {} reg entries for {count} redistributor regions",
                        regs.len()
                    ),
                );
                return None;
            }
            let redist = regs[1..1 + count].to_vec();
            return Some(GicInfo::V3 {
                dist: regs[0],
                redist,
                maintenance_irq,
            });
        }
        if regs.len() < 2 {
            self.warn(
                node,
                "skipped: GICv2 needs distributor and CPU interface registers",
            );
            return None;
        }
        Some(GicInfo::V2 {
            dist: regs[0],
            cpu: regs[1],
            hyp: regs.get(2).copied(),
            vcpu: regs.get(3).copied(),
            maintenance_irq,
        })
    }

    pub fn timer(&mut self) -> Option<TimerInfo> {
        let t = self.tree;
        let node = (0..t.nodes.len()).find(|&n| t.is_enabled(n) && t.is_compatible(n, TIMER))?;
        let irqs = self.interrupts(node).unwrap_or_default();
        if irqs.len() < 4 {
            self.warn(
                node,
                format_args!("skipped: {} usable interrupts, need 4", irqs.len()),
            );
            return None;
        }
        Some(TimerInfo {
            sec_phys: irqs[0],
            phys: irqs[1],
            virt: irqs[2],
            hyp_phys: irqs[3],
            hyp_virt: irqs.get(4).copied(),
            clock_frequency: t.prop_u32(node, "clock-frequency"),
        })
    }

    pub fn psci(&mut self) -> Option<PsciInfo> {
        let t = self.tree;
        let node = t
            .children(0)
            .find(|&n| t.base_name(n) == "psci")
            .or_else(|| {
                (0..t.nodes.len()).find(|&n| {
                    t.prop_strings(n, "compatible")
                        .any(|c| c.starts_with("arm,psci"))
                })
            })
            .filter(|&n| t.is_enabled(n))?;
        let conduit = match t.prop_str(node, "method") {
            Some("smc") => Conduit::Smc,
            Some("hvc") => Conduit::Hvc,
            other => {
                self.warn(
                    node,
                    format_args!("skipped: method {other:?} is neither smc nor hvc"),
                );
                return None;
            }
        };
        let compatible = t
            .prop_strings(node, "compatible")
            .next()
            .unwrap_or_default()
            .to_string();
        Some(PsciInfo {
            conduit,
            compatible,
        })
    }

    pub fn bootargs(&self) -> String {
        let t = self.tree;
        t.find_path("/chosen")
            .and_then(|c| t.prop_str(c, "bootargs"))
            .unwrap_or_default()
            .to_string()
    }

    pub fn initrd(&mut self) -> Option<Region> {
        let t = self.tree;
        let chosen = t.find_path("/chosen")?;
        let start = t.prop_u64(chosen, "linux,initrd-start");
        let end = t.prop_u64(chosen, "linux,initrd-end");
        match (start, end) {
            (Some(start), Some(end)) if end >= start => Some(Region::from_range(start..end)),
            (None, None) => None,
            _ => {
                self.warn(
                    chosen,
                    format_args!("ignored bad initrd {start:x?}..{end:x?}"),
                );
                None
            }
        }
    }

    pub fn modules(&mut self) -> Vec<BootModule> {
        let t = self.tree;
        let Some(chosen) = t.find_path("/chosen") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let modules = t.children(chosen).filter(|&c| {
            t.prop_strings(c, "compatible")
                .any(|s| s.starts_with("multiboot,"))
        });
        for node in modules {
            // By the binding a module's reg is a physical address: /chosen is no bus, so
            // only its cell sizes apply. Loaders (QEMU's guest-loader, U-Boot) write them with
            // the root's sizes when /chosen has none, as Xen and Linux read them.
            let root = t.find_path("/").unwrap_or(0);
            let address_cells = t
                .prop_u32(chosen, "#address-cells")
                .or_else(|| t.prop_u32(root, "#address-cells"))
                .unwrap_or(2);
            let size_cells = t
                .prop_u32(chosen, "#size-cells")
                .or_else(|| t.prop_u32(root, "#size-cells"))
                .unwrap_or(1);
            let reg = t.prop(node, "reg").unwrap_or_default();
            let region = super::ranges::parse_reg(reg, address_cells, size_cells)
                .ok()
                .and_then(|r| r.first().map(|&(start, size)| Region::new(start, size)))
                .filter(|r| !r.is_empty());
            let Some(region) = region else {
                self.warn(node, "skipped: module without a usable reg");
                continue;
            };
            let kind = if t.is_compatible(node, &["multiboot,kernel"]) {
                ModuleKind::Kernel
            } else if t.is_compatible(node, &["multiboot,ramdisk"]) {
                ModuleKind::Ramdisk
            } else {
                ModuleKind::Other
            };
            let bootargs = t.prop_str(node, "bootargs").map(ToString::to_string);
            out.push(BootModule {
                region,
                kind,
                bootargs,
            });
        }
        out
    }
}
