//! The third pass: which devices dom0 drives directly, with their MMIO ranges (translated to
//! CPU physical addresses) and SPIs, so that Ferrite can map the one and route the other.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::super::ranges::read_cells;
use super::super::tree::Tree;
use super::plan::{Plan, Role, cells};
use super::{Dom0Config, Passthrough};
use crate::mm::region::{self, Region};

pub(super) fn collect(tree: &Tree<'_, '_>, plan: &mut Plan, cfg: &Dom0Config) -> Vec<Passthrough> {
    let n = tree.nodes.len();
    // Per node: enabled with every ancestor; inside a subtree that is never passed through.
    let mut enabled = vec![true; n];
    let mut excluded = vec![false; n];
    let mut host_ram: Vec<Region> = (1..n)
        .filter(|&i| tree.prop_str(i, "device_type") == Some("memory"))
        .filter_map(|i| tree.reg(i).ok())
        .flatten()
        .collect();
    region::merge(&mut host_ram);
    let mut out = Vec::new();
    for i in 1..n {
        let parent = tree.nodes[i].parent.unwrap_or(0);
        enabled[i] = enabled[parent] && tree.is_enabled(i);
        excluded[i] = excluded[parent]
            || matches!(plan.role[i], Role::Cpus | Role::Chosen | Role::Gic)
            // A PCI bus's windows cover its children, whose `reg` is in PCI config space.
            || (parent != 0 && tree.prop_str(parent, "device_type") == Some("pci"));
        let memory =
            plan.role[i] == Role::Memory || tree.prop_str(i, "device_type") == Some("memory");
        if !plan.live[i] || !enabled[i] || excluded[i] || memory {
            continue;
        }
        if let Some(p) = device(tree, plan, cfg, &host_ram, i) {
            out.push(p);
        }
    }
    out
}

fn device(
    tree: &Tree<'_, '_>,
    plan: &mut Plan,
    cfg: &Dom0Config,
    host_ram: &[Region],
    node: usize,
) -> Option<Passthrough> {
    let path = tree.path(node);
    let mut regions = Vec::new();
    if tree.prop(node, "reg").is_some() {
        match tree.reg(node) {
            Ok(r) => regions = r,
            Err(e) => {
                plan.note(format!("{path}: not passed through: {e}"));
                return None;
            }
        }
    }
    if tree.prop_str(node, "device_type") == Some("pci") {
        match pci_windows(tree, node) {
            Ok(w) => regions.extend(w),
            Err(e) => plan.note(format!("{path}: PCI windows not passed through: {e}")),
        }
    }
    if let Some(console) = cfg.console
        && regions.iter().any(|r| r.overlaps(&console))
    {
        plan.note(format!(
            "{path}: Ferrite's console, emulated for dom0 at the same address: not passed through"
        ));
        return None;
    }
    region::merge(&mut regions);
    if regions
        .iter()
        .any(|r| cfg.memory.iter().any(|m| m.overlaps(r)))
    {
        plan.note(format!(
            "{path}: the part of its reg inside dom0's RAM is not mapped as MMIO"
        ));
        regions = region::subtract(&regions, cfg.memory);
    }
    // Listed all the same (a framebuffer in firmware-reserved RAM is meant for dom0), but
    // whoever maps it should know it is RAM.
    for r in &regions {
        if let Some(ram) = host_ram.iter().find(|m| m.overlaps(r)) {
            plan.note(format!(
                "{path}: {r} overlaps host RAM {ram}, which is not dom0's"
            ));
        }
    }
    let mut spis = spis(tree, plan, node);
    spis.sort_unstable();
    spis.dedup();
    if regions.is_empty() && spis.is_empty() {
        return None;
    }
    Some(Passthrough {
        path,
        regions,
        spis,
    })
}

/// The CPU-side windows of a PCI host bridge's `ranges` (I/O, 32- and 64-bit memory). Only the
/// parent side matters here, so the three-cell PCI addresses need not be decoded.
fn pci_windows(
    tree: &Tree<'_, '_>,
    node: usize,
) -> Result<Vec<Region>, super::super::ranges::TranslateError> {
    use super::super::ranges::TranslateError;
    let Some(value) = tree.prop(node, "ranges").filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let parent = tree.nodes[node].parent.unwrap_or(0);
    let (child_cells, size_cells) = tree.child_cells(node);
    let (parent_cells, _) = tree.child_cells(parent);
    let entry = (child_cells + parent_cells + size_cells) as usize * 4;
    if entry == 0 || !value.len().is_multiple_of(entry) {
        return Err(TranslateError::BadLength {
            property: "ranges",
            len: value.len(),
            entry,
        });
    }
    let too_wide = TranslateError::TooWide { property: "ranges" };
    value
        .chunks_exact(entry)
        .map(|e| {
            let e = &e[child_cells as usize * 4..];
            let addr = read_cells(e, parent_cells).ok_or(too_wide.clone())?;
            let size =
                read_cells(&e[parent_cells as usize * 4..], size_cells).ok_or(too_wide.clone())?;
            Ok(Region::new(tree.translate_from(parent, addr)?, size))
        })
        .collect()
}

/// The node's interrupt parent: its (or its nearest ancestor's) `interrupt-parent`, else its
/// tree parent, skipping nodes that are no interrupt controller, as Linux's
/// `of_irq_find_parent` does.
fn interrupt_parent(tree: &Tree<'_, '_>, plan: &Plan, node: usize) -> Option<usize> {
    let step = |at: usize| match tree.prop_u32(at, "interrupt-parent") {
        Some(ph) => plan.phandles.get(&ph).copied(),
        None => tree.nodes[at].parent,
    };
    let mut at = step(node)?;
    // Bounded: a loop of interrupt-parent phandles must not hang the boot.
    for _ in 0..tree.nodes.len() {
        if tree.prop(at, "#interrupt-cells").is_some() {
            return Some(at);
        }
        at = step(at)?;
    }
    None
}

/// The INTID of a GIC interrupt specifier if it is an SPI (or extended SPI).
fn gic_spi(spec: &[u32]) -> Option<u32> {
    match (spec.first()?, spec.get(1)?) {
        (0, &n) if n < 988 => Some(32 + n),
        (2, &n) if n < 1024 => Some(4096 + n),
        _ => None,
    }
}

/// SPIs from `interrupts`, `interrupts-extended` and `interrupt-map` that go to the GIC.
fn spis(tree: &Tree<'_, '_>, plan: &Plan, node: usize) -> Vec<u32> {
    let Some(gic) = plan.gic else {
        return Vec::new();
    };
    let interrupt_cells = |ctrl: usize| tree.prop_u32(ctrl, "#interrupt-cells").map(|c| c as usize);
    let mut out = Vec::new();
    if let Some(v) = tree.prop(node, "interrupts")
        && interrupt_parent(tree, plan, node) == Some(gic)
        && let Some(n) = interrupt_cells(gic).filter(|&n| n > 0)
    {
        out.extend(cells(v).chunks_exact(n).filter_map(gic_spi));
    }
    if let Some(v) = tree.prop(node, "interrupts-extended") {
        let c = cells(v);
        let mut i = 0;
        while let Some(ctrl) = c.get(i).and_then(|ph| plan.phandles.get(ph)).copied() {
            let Some(n) = interrupt_cells(ctrl) else {
                break;
            };
            let Some(spec) = c.get(i + 1..i + 1 + n) else {
                break;
            };
            if ctrl == gic {
                out.extend(gic_spi(spec));
            }
            i += 1 + n;
        }
    }
    if let Some(v) = tree.prop(node, "interrupt-map") {
        // Each entry: child unit address, child specifier, parent phandle, parent unit address,
        // parent specifier; the sizes as Linux's of_irq_parse_raw finds them.
        let child_address = core::iter::successors(Some(node), |&i| tree.nodes[i].parent)
            .find_map(|i| tree.prop_u32(i, "#address-cells"))
            .unwrap_or(2) as usize;
        let child = child_address + interrupt_cells(node).unwrap_or(0);
        let c = cells(v);
        let mut i = 0;
        while let Some(ctrl) = c
            .get(i + child)
            .and_then(|ph| plan.phandles.get(ph))
            .copied()
        {
            let address = tree.prop_u32(ctrl, "#address-cells").unwrap_or(0) as usize;
            let Some(n) = interrupt_cells(ctrl) else {
                break;
            };
            let start = i + child + 1 + address;
            let Some(spec) = c.get(start..start + n) else {
                break;
            };
            if ctrl == gic {
                out.extend(gic_spi(spec));
            }
            i = start + n;
        }
    }
    out
}
