//! The second pass: writing dom0's blob, node by node in the host's order, following the
//! [`Plan`]. Kept properties are copied byte for byte; rewritten ones take the place of the
//! host's, so that a `dtc` dump of dom0's tree reads like the host's.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::super::FdtWriter;
use super::super::tree::Tree;
use super::plan::{GIC_V2, GIC_V3, Plan, Role, cells};
use super::{Dom0Config, GicView};
use crate::mm::region::Region;

/// PSCI 0.2 function IDs, for a kernel that only knows the original `arm,psci` binding (which
/// names its functions in the node); Ferrite's emulation answers to the standard IDs.
const PSCI_CPU_SUSPEND: u32 = 0xc400_0001;
const PSCI_CPU_OFF: u32 = 0x8400_0002;
const PSCI_CPU_ON: u32 = 0xc400_0003;
const PSCI_MIGRATE: u32 = 0xc400_0005;

/// GIC interrupt specifier flags: level-sensitive, active high.
const IRQ_LEVEL_HIGH: u32 = 4;

/// What becomes of one host property (matched by name); properties without an edit are copied.
enum Edit {
    Drop,
    /// Replaces the host's value, or is added at the end if the host has none.
    Set(Vec<u8>),
}

type Edits<'a> = Vec<(&'a str, Edit)>;

fn set_cells(cells: &[u32]) -> Edit {
    Edit::Set(cells.iter().flat_map(|c| c.to_be_bytes()).collect())
}

fn set_string(s: &str) -> Edit {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    Edit::Set(v)
}

/// Appends `value` as `cells` big-endian cells; false if it does not fit.
fn push_cells(out: &mut Vec<u32>, value: u64, cells: u32) -> bool {
    match cells {
        0 => value == 0,
        1 => match u32::try_from(value) {
            Ok(v) => {
                out.push(v);
                true
            }
            Err(_) => false,
        },
        2..=4 => {
            out.extend(core::iter::repeat_n(0, cells as usize - 2));
            out.extend([(value >> 32) as u32, value as u32]);
            true
        }
        _ => false,
    }
}

pub(super) fn emit(
    tree: &Tree<'_, '_>,
    plan: &mut Plan,
    cfg: &Dom0Config,
    reservations: &[Region],
) -> Vec<u8> {
    let mut e = Emitter {
        tree,
        plan,
        cfg,
        w: FdtWriter::new(),
    };
    e.reservations(reservations);
    e.walk();
    e.w.finish()
}

struct Emitter<'p, 't, 'b, 'a, 'c> {
    tree: &'t Tree<'b, 'a>,
    plan: &'p mut Plan,
    cfg: &'p Dom0Config<'c>,
    w: FdtWriter,
}

enum Step {
    Enter(usize),
    Exit(usize),
}

impl<'a> Emitter<'_, '_, '_, 'a, '_> {
    fn note(&mut self, line: String) {
        self.plan.note(line);
    }

    fn reservations(&mut self, reservations: &[Region]) {
        for r in reservations {
            if self.cfg.memory.iter().any(|m| m.contains_region(r)) {
                self.w.add_reservation(r.start, r.size);
            } else {
                self.note(format!("/memreserve/ {r}: dropped: not inside dom0's RAM"));
            }
        }
    }

    /// Depth-first over the host tree with an explicit stack, as `Tree::new` does: the tree's
    /// depth must not become Ferrite's stack depth.
    fn walk(&mut self) {
        let mut stack = vec![Step::Enter(0)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter(n) => {
                    if self.plan.role[n] == Role::Drop {
                        continue;
                    }
                    let name = self.plan.out_name(self.tree, n);
                    self.w.begin_node(&name);
                    self.node_props(n);
                    stack.push(Step::Exit(n));
                    stack.extend(self.plan.children[n].iter().rev().map(|&c| Step::Enter(c)));
                }
                Step::Exit(n) => {
                    match self.plan.role[n] {
                        Role::Cpus => self.made_up_cpus(self.plan.kept_cpus),
                        _ if n == 0 => self.root_additions(),
                        _ => {}
                    }
                    self.w.end_node();
                }
            }
        }
    }

    fn node_props(&mut self, n: usize) {
        let edits = match self.plan.role[n] {
            Role::Copy => self.msi_edits(n),
            Role::Drop => return,
            Role::Paths => self.path_edits(n),
            Role::Memory => return self.memory_props(),
            Role::Chosen => self.chosen_edits(),
            Role::Cpus => vec![
                ("#address-cells", set_cells(&[1])),
                ("#size-cells", set_cells(&[0])),
            ],
            Role::Cpu(i) => vec![
                ("reg", set_cells(&[i as u32])),
                ("enable-method", set_string("psci")),
                ("cpu-release-addr", Edit::Drop),
            ],
            Role::Psci => return self.psci_props(),
            Role::Gic => self.gic_edits(n),
        };
        let props: Vec<(&'a str, &'a [u8])> = self.tree.props(n).collect();
        self.apply(&props, &edits);
    }

    /// Writes `props` with `edits` applied, then the edits that set a property the host lacked.
    fn apply(&mut self, props: &[(&str, &[u8])], edits: &Edits<'_>) {
        let mut used = vec![false; edits.len()];
        for &(name, value) in props {
            match edits.iter().position(|(e, _)| *e == name) {
                Some(k) => {
                    used[k] = true;
                    if let Edit::Set(v) = &edits[k].1 {
                        self.w.property(name, v);
                    }
                }
                None => self.w.property(name, value),
            }
        }
        for ((name, edit), used) in edits.iter().zip(used) {
            if let (Edit::Set(v), false) = (edit, used) {
                self.w.property(name, v);
            }
        }
    }

    /// Drops `msi-parent` and `msi-map` when they name an MSI controller dom0 does not get:
    /// a dangling phandle would make the kernel reject the property, and a PCI host without
    /// MSIs still works with INTx.
    fn msi_edits(&mut self, n: usize) -> Edits<'a> {
        let t = self.tree;
        let removed = &self.plan.removed_msi;
        let mut edits = Vec::new();
        if let Some(v) = t.prop(n, "msi-parent") {
            // Each entry: controller phandle, then #msi-cells (default 0) arguments.
            let c = cells(v);
            let mut i = 0;
            let mut gone = false;
            while let Some(&ph) = c.get(i) {
                gone |= removed.contains(&ph);
                let args = self
                    .plan
                    .phandles
                    .get(&ph)
                    .and_then(|&target| t.prop_u32(target, "#msi-cells"))
                    .unwrap_or(0);
                i += 1 + args as usize;
            }
            if gone {
                edits.push(("msi-parent", Edit::Drop));
            }
        }
        if let Some(v) = t.prop(n, "msi-map") {
            // Entries of rid-base, controller phandle, msi-base, length (as Linux reads them).
            if cells(v)
                .chunks(4)
                .any(|e| e.get(1).is_some_and(|p| removed.contains(p)))
            {
                edits.push(("msi-map", Edit::Drop));
                edits.push(("msi-map-mask", Edit::Drop));
            }
        }
        if !edits.is_empty() {
            let path = t.path(n);
            self.note(format!(
                "{path}: msi-parent/msi-map removed: its MSI controller is not dom0's"
            ));
        }
        edits
    }

    /// `/aliases` and `/__symbols__`: entries for dropped nodes go, entries for renamed ones
    /// follow them.
    fn path_edits(&mut self, n: usize) -> Edits<'a> {
        let t = self.tree;
        let mut edits = Vec::new();
        for (name, value) in t.props(n) {
            let value = value.strip_suffix(&[0]).unwrap_or(value);
            let Some(target) = core::str::from_utf8(value)
                .ok()
                .filter(|p| p.starts_with('/'))
                .and_then(|p| t.find_path(p))
            else {
                continue;
            };
            let here = t.path(n);
            match self.plan.out_path(t, target) {
                None => {
                    edits.push((name, Edit::Drop));
                    self.note(format!(
                        "{here}: {name} dropped: {} is not in dom0's tree",
                        t.path(target)
                    ));
                }
                Some(path) if self.plan.renamed(t, target) => {
                    self.note(format!("{here}: {name} now {path}"));
                    edits.push((name, set_string(&path)));
                }
                Some(_) => {}
            }
        }
        edits
    }

    /// `device_type` and one `reg` entry per dom0 bank, in the root's cell sizes. A bank too
    /// large for `#size-cells = 1` is written as several entries.
    fn memory_props(&mut self) {
        let (address_cells, size_cells) = self.tree.child_cells(0);
        let max_chunk = match size_cells {
            0 => 0,
            1 => 1 << 31,
            _ => u64::MAX,
        };
        let mut reg = Vec::new();
        for bank in self.cfg.memory {
            let mut at = *bank;
            while !at.is_empty() {
                let size = at.size.min(max_chunk);
                let mut entry = Vec::new();
                if size == 0
                    || !push_cells(&mut entry, at.start, address_cells)
                    || !push_cells(&mut entry, size, size_cells)
                {
                    self.note(format!(
                        "dom0 RAM {at}: left out: the root's #address-cells {address_cells} / \
                         #size-cells {size_cells} cannot express it"
                    ));
                    break;
                }
                reg.extend(entry);
                let Some(next) = at.start.checked_add(size) else {
                    break; // the bank reached the top of the address space
                };
                at = Region::new(next, at.size - size);
            }
        }
        self.w.property_string("device_type", "memory");
        self.w.property_cells("reg", &reg);
    }

    fn chosen_edits(&self) -> Edits<'a> {
        let mut edits = vec![("bootargs", set_string(self.cfg.bootargs))];
        match self.cfg.initrd {
            Some(r) => {
                edits.push((
                    "linux,initrd-start",
                    Edit::Set(r.start.to_be_bytes().to_vec()),
                ));
                edits.push((
                    "linux,initrd-end",
                    Edit::Set(r.end().to_be_bytes().to_vec()),
                ));
            }
            None => {
                edits.push(("linux,initrd-start", Edit::Drop));
                edits.push(("linux,initrd-end", Edit::Drop));
            }
        }
        edits
    }

    fn psci_props(&mut self) {
        let w = &mut self.w;
        w.property_strings("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
        w.property_string("method", "hvc");
        w.property_u32("cpu_suspend", PSCI_CPU_SUSPEND);
        w.property_u32("cpu_off", PSCI_CPU_OFF);
        w.property_u32("cpu_on", PSCI_CPU_ON);
        w.property_u32("migrate", PSCI_MIGRATE);
    }

    fn gic_edits(&mut self, gic: usize) -> Edits<'a> {
        let t = self.tree;
        let path = t.path(gic);
        let mut edits = vec![("interrupts", Edit::Drop)];
        let (regions, version) = match self.cfg.gic {
            GicView::V2 { dist, cpu } => ([dist, cpu], 2),
            GicView::V3 { dist, redist } => ([dist, redist], 3),
        };
        if version == 3 {
            edits.push(("#redistributor-regions", set_cells(&[1])));
            // The host's stride belongs to its redistributors; dom0's are Ferrite's, packed.
            edits.push(("redistributor-stride", Edit::Drop));
            if !t.is_compatible(gic, GIC_V3) {
                edits.push(("compatible", set_string("arm,gic-v3")));
                self.note(format!(
                    "{path}: compatible now arm,gic-v3: dom0 sees a GICv3"
                ));
            }
        } else {
            edits.push(("#redistributor-regions", Edit::Drop));
            if !t.is_compatible(gic, GIC_V2) {
                edits.push(("compatible", set_string("arm,cortex-a15-gic")));
                self.note(format!(
                    "{path}: compatible now arm,cortex-a15-gic: dom0 sees a GICv2"
                ));
            }
        }
        if t.prop(gic, "msi-controller").is_some() {
            edits.push(("msi-controller", Edit::Drop));
            edits.push(("mbi-ranges", Edit::Drop));
            edits.push(("mbi-alias", Edit::Drop));
            self.note(format!("{path}: MBI support removed: no MSIs for dom0"));
        }
        if self.plan.gic_phandle_is_new
            && let Some(ph) = self.plan.gic_phandle
        {
            edits.push(("phandle", set_cells(&[ph])));
        }
        match self.gic_reg(gic, &regions) {
            Ok(reg) => {
                edits.push(("reg", set_cells(&reg)));
                self.note(format!(
                    "{path}: reg is dom0's GICv{version} view ({}), maintenance interrupt removed",
                    if version == 2 {
                        "distributor, CPU interface"
                    } else {
                        "distributor, one redistributor region"
                    }
                ));
            }
            Err(why) => self.note(format!("{path}: reg kept as on the host: {why}")),
        }
        edits
    }

    /// dom0's GIC frames as `reg` cells in the GIC's parent bus (the Raspberry Pi 4's GIC sits
    /// behind `/soc`'s `ranges`).
    fn gic_reg(&self, gic: usize, regions: &[Region]) -> Result<Vec<u32>, String> {
        let t = self.tree;
        let parent = t.nodes[gic].parent.unwrap_or(0);
        let (address_cells, size_cells) = t.child_cells(parent);
        let mut reg = Vec::new();
        for r in regions {
            let addr = t
                .translate_into(parent, r.start)
                .map_err(|e| format!("{r}: {e}"))?;
            if !push_cells(&mut reg, addr, address_cells)
                || !push_cells(&mut reg, r.size, size_cells)
            {
                return Err(format!("{r} does not fit the bus's cells"));
            }
        }
        Ok(reg)
    }

    /// vCPUs from `from` on, for which the host had no CPU node to keep.
    fn made_up_cpus(&mut self, from: usize) {
        let compatible = self
            .plan
            .cpu_template
            .and_then(|c| self.tree.prop(c, "compatible"))
            .unwrap_or(b"arm,armv8\0");
        for i in from..self.cfg.vcpus {
            self.w.begin_node(&format!("cpu@{i:x}"));
            self.w.property_string("device_type", "cpu");
            self.w.property("compatible", compatible);
            self.w.property_u32("reg", i as u32);
            self.w.property_string("enable-method", "psci");
            self.w.end_node();
        }
    }

    /// Nodes dom0 needs that the host may not have had, at the end of the root.
    fn root_additions(&mut self) {
        if !self.plan.root_memory {
            let name = self.plan.memory_name.clone();
            self.w.begin_node(&name);
            self.memory_props();
            self.w.end_node();
        }
        if !self.plan.root_chosen {
            self.w.begin_node("chosen");
            let edits = self.chosen_edits();
            self.apply(&[], &edits);
            self.w.end_node();
        }
        if !self.plan.root_cpus && self.cfg.vcpus > 0 {
            self.w.begin_node("cpus");
            self.w.property_u32("#address-cells", 1);
            self.w.property_u32("#size-cells", 0);
            self.made_up_cpus(0);
            self.w.end_node();
        }
        if !self.plan.root_psci {
            self.w.begin_node("psci");
            self.psci_props();
            self.w.end_node();
        }
        self.hypervisor();
        self.ctrl_page();
    }

    /// `/ferrite-ctrl@<address>`: dom0's control page, the frame through which its user space
    /// makes hypercalls (docs/linux-dom0.md). `generic-uio` lets a kernel with
    /// `uio_pdrv_genirq` (`uio_pdrv_genirq.of_id=ferrite,ctrl`) offer it as `/dev/uioN`. No
    /// `interrupts`: the event PPI is a per-CPU interrupt, which `uio_pdrv_genirq` cannot
    /// request (its probe would fail); `/hypervisor` names it.
    fn ctrl_page(&mut self) {
        let Some(page) = self.cfg.hypervisor.ctrl_page else {
            return;
        };
        let (address_cells, size_cells) = self.tree.child_cells(0);
        let mut reg = Vec::new();
        if !push_cells(&mut reg, page.start, address_cells)
            || !push_cells(&mut reg, page.size, size_cells)
        {
            self.note(format!(
                "control page {page}: left out: the root's #address-cells {address_cells} / \
                 #size-cells {size_cells} cannot express it"
            ));
            return;
        }
        self.w.begin_node(&format!("ferrite-ctrl@{:x}", page.start));
        self.w
            .property_strings("compatible", &["ferrite,ctrl", "generic-uio"]);
        self.w.property_cells("reg", &reg);
        self.w.end_node();
        self.note(format!(
            "/ferrite-ctrl@{:x}: added: dom0's control page",
            page.start
        ));
    }

    /// The `/hypervisor` node; docs/hypervisor-node.md is its contract.
    fn hypervisor(&mut self) {
        let h = self.cfg.hypervisor;
        self.w.begin_node("hypervisor");
        self.w.property_string("compatible", "ferrite,hypervisor");
        self.w
            .property_cells("ferrite,abi-version", &[h.abi_major, h.abi_minor]);
        self.w.property_string("ferrite,conduit", "hvc");
        if let Some(w) = h.grant_window {
            let cells = [
                (w.start >> 32) as u32,
                w.start as u32,
                (w.size >> 32) as u32,
                w.size as u32,
            ];
            self.w.property_cells("ferrite,grant-window", &cells);
        }
        let interrupt = self.event_interrupt();
        match (interrupt, self.plan.gic_phandle) {
            (Ok(spec), Some(gic)) => {
                self.w.property_u32("interrupt-parent", gic);
                self.w.property_cells("interrupts", &spec);
            }
            (Err(why), Some(_)) => self.note(format!("/hypervisor: no event interrupt: {why}")),
            _ => {}
        }
        self.w.end_node();
        self.note(format!(
            "/hypervisor: added: ferrite,hypervisor ABI {}.{}, events on PPI {}",
            h.abi_major, h.abi_minor, h.event_ppi
        ));
    }

    /// The event PPI in the GIC binding: PPI type, number from 16, flags; GICv2 also wants the
    /// PPI's CPU mask (bits 8..15: every vCPU, up to 8).
    fn event_interrupt(&self) -> Result<Vec<u32>, String> {
        let ppi = self.cfg.hypervisor.event_ppi;
        if !(16..32).contains(&ppi) {
            return Err(format!("INTID {ppi} is not a PPI"));
        }
        let flags = match self.cfg.gic {
            GicView::V2 { .. } => {
                let mask = (1u32 << self.cfg.vcpus.clamp(1, 8)) - 1;
                (mask << 8) | IRQ_LEVEL_HIGH
            }
            GicView::V3 { .. } => IRQ_LEVEL_HIGH,
        };
        let interrupt_cells = self
            .plan
            .gic
            .and_then(|g| self.tree.prop_u32(g, "#interrupt-cells"))
            .unwrap_or(3);
        match interrupt_cells {
            3 => Ok(vec![1, ppi - 16, flags]),
            // With ppi-partitions: the fourth cell is the partition, 0 for "all CPUs".
            4 => Ok(vec![1, ppi - 16, flags, 0]),
            n => Err(format!("the GIC has #interrupt-cells {n}")),
        }
    }
}
