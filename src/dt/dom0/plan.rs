//! The first pass over the host tree: what becomes of each node (copied, dropped, rewritten,
//! renamed). It is decided before anything is written because a node's fate can depend on
//! others: a `/cpus` child goes if it refers to a CPU that went, an `msi-map` goes if its
//! controller did, an alias follows a renamed CPU.

use alloc::borrow::Cow;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::super::tree::Tree;
use super::Dom0Config;

pub(super) const GIC_V3: &[&str] = &["arm,gic-v3"];
pub(super) const GIC_V2: &[&str] = &[
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,gic-v2",
];
const MSI_FRAMES: &[&str] = &["arm,gic-v3-its", "arm,gic-v2m-frame"];

/// Properties whose value is a plain list of phandles (no arguments), so that a reference to a
/// dropped node can be found without knowing the binding.
const PHANDLE_LISTS: &[&str] = &[
    "cpu",
    "cpus",
    "interrupt-affinity",
    "affinity",
    "memory-region",
    "next-level-cache",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Written as it is (but references to dropped MSI controllers are removed).
    Copy,
    /// Left out with its whole subtree.
    Drop,
    /// The first memory node: dom0's memory node is written in its place.
    Memory,
    Chosen,
    Cpus,
    /// A CPU dom0 keeps, as its vCPU with this index.
    Cpu(usize),
    /// The root's PSCI node: replaced by Ferrite's.
    Psci,
    Gic,
    /// `/aliases` or `/__symbols__`: every property is a path.
    Paths,
}

pub(super) struct Plan {
    pub role: Vec<Role>,
    /// Whether the node is written: neither it nor an ancestor is dropped.
    pub live: Vec<bool>,
    pub children: Vec<Vec<usize>>,
    pub phandles: BTreeMap<u32, usize>,
    pub gic: Option<usize>,
    /// The GIC's phandle, which it may only get in dom0's tree.
    pub gic_phandle: Option<u32>,
    pub gic_phandle_is_new: bool,
    /// Phandles of MSI controllers dom0 does not get.
    pub removed_msi: BTreeSet<u32>,
    /// Host CPU nodes kept (the first vCPUs); the rest of the vCPUs are made up.
    pub kept_cpus: usize,
    /// The first kept CPU, whose `compatible` made-up CPUs borrow.
    pub cpu_template: Option<usize>,
    /// Which of these the root has (otherwise they are added at its end).
    pub root_memory: bool,
    pub root_chosen: bool,
    pub root_cpus: bool,
    pub root_psci: bool,
    /// `memory@<first bank>`: the name of dom0's one memory node.
    pub memory_name: String,
    pub notes: Vec<String>,
}

pub(super) fn phandle_of(tree: &Tree<'_, '_>, node: usize) -> Option<u32> {
    tree.prop_u32(node, "phandle")
        .or_else(|| tree.prop_u32(node, "linux,phandle"))
}

/// A property as big-endian cells (trailing bytes that make no whole cell are ignored).
pub(super) fn cells(value: &[u8]) -> Vec<u32> {
    value
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Plan {
    pub fn new(tree: &Tree<'_, '_>, cfg: &Dom0Config) -> Self {
        let n = tree.nodes.len();
        let mut children = vec![Vec::new(); n];
        let mut phandles = BTreeMap::new();
        for i in 0..n {
            if let Some(p) = tree.nodes[i].parent {
                children[p].push(i);
            }
            if let Some(ph) = phandle_of(tree, i) {
                phandles.entry(ph).or_insert(i);
            }
        }
        let mut plan = Plan {
            role: vec![Role::Copy; n],
            live: vec![true; n],
            children,
            phandles,
            gic: None,
            gic_phandle: None,
            gic_phandle_is_new: false,
            removed_msi: BTreeSet::new(),
            kept_cpus: 0,
            cpu_template: None,
            root_memory: false,
            root_chosen: false,
            root_cpus: false,
            root_psci: false,
            memory_name: format!("memory@{:x}", cfg.memory.first().map_or(0, |r| r.start)),
            notes: Vec::new(),
        };
        plan.root_nodes(tree);
        plan.memory(tree, cfg);
        plan.cpus(tree, cfg);
        plan.psci(tree);
        plan.gic(tree);
        for i in 1..n {
            let parent = tree.nodes[i].parent.unwrap_or(0);
            plan.live[i] = plan.live[parent] && plan.role[i] != Role::Drop;
        }
        plan.dangling_references(tree);
        plan
    }

    pub fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    /// The node's name in dom0's tree.
    pub fn out_name<'a>(&self, tree: &Tree<'_, 'a>, node: usize) -> Cow<'a, str> {
        match self.role[node] {
            Role::Cpu(i) => Cow::Owned(format!("cpu@{i:x}")),
            Role::Memory => Cow::Owned(self.memory_name.clone()),
            Role::Psci => Cow::Borrowed("psci"),
            _ if node == 0 => Cow::Borrowed(""),
            _ => Cow::Borrowed(tree.nodes[node].name),
        }
    }

    /// The node's path in dom0's tree, if it is there.
    pub fn out_path(&self, tree: &Tree<'_, '_>, node: usize) -> Option<String> {
        if !self.live[node] {
            return None;
        }
        let mut parts = Vec::new();
        let mut at = node;
        while let Some(parent) = tree.nodes[at].parent {
            parts.push(self.out_name(tree, at));
            at = parent;
        }
        if parts.is_empty() {
            return Some("/".into());
        }
        Some(parts.iter().rev().fold(String::new(), |mut path, part| {
            path.push('/');
            path.push_str(part);
            path
        }))
    }

    /// Whether the node or an ancestor has another name in dom0's tree.
    pub fn renamed(&self, tree: &Tree<'_, '_>, node: usize) -> bool {
        core::iter::successors(Some(node), |&i| tree.nodes[i].parent)
            .any(|i| i != 0 && self.out_name(tree, i) != tree.nodes[i].name)
    }

    /// Drops `node` (and so its subtree) with a note saying why.
    fn drop_node(&mut self, tree: &Tree<'_, '_>, node: usize, why: &str) {
        self.role[node] = Role::Drop;
        let path = tree.path(node);
        self.note(format!("{path}: dropped: {why}"));
    }

    fn descendants(&self, node: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = self.children[node].clone();
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend_from_slice(&self.children[i]);
        }
        out
    }

    fn root_nodes(&mut self, tree: &Tree<'_, '_>) {
        for c in self.children[0].clone() {
            match tree.nodes[c].name {
                "reserved-memory" => {
                    self.drop_node(tree, c, "Ferrite keeps the reserved regions");
                }
                "hypervisor" => {
                    self.drop_node(tree, c, "replaced by Ferrite's /hypervisor");
                }
                "chosen" if !self.root_chosen => {
                    self.root_chosen = true;
                    self.role[c] = Role::Chosen;
                    for m in self.children[c].clone() {
                        self.drop_node(tree, m, "boot modules are Ferrite's, not dom0's");
                    }
                }
                "aliases" | "__symbols__" => self.role[c] = Role::Paths,
                _ => {}
            }
        }
    }

    fn memory(&mut self, tree: &Tree<'_, '_>, cfg: &Dom0Config) {
        let nodes: Vec<usize> = (1..tree.nodes.len())
            .filter(|&i| tree.prop_str(i, "device_type") == Some("memory"))
            .filter(|&i| self.role[i] == Role::Copy)
            .collect();
        let mut paths = Vec::new();
        for &i in &nodes {
            paths.push(tree.path(i));
            if !self.root_memory && tree.nodes[i].parent == Some(0) {
                self.root_memory = true;
                self.role[i] = Role::Memory;
                for d in self.descendants(i) {
                    self.role[d] = Role::Drop;
                }
            } else {
                self.role[i] = Role::Drop;
            }
        }
        let banks = cfg.memory.len();
        let was = if paths.is_empty() {
            String::from("no host memory node")
        } else {
            paths.join(", ")
        };
        self.note(format!(
            "{was}: replaced by /{}: dom0's {banks} bank(s), mapped 1:1",
            self.memory_name
        ));
    }

    fn cpus(&mut self, tree: &Tree<'_, '_>, cfg: &Dom0Config) {
        let Some(cpus) = self.children[0]
            .iter()
            .copied()
            .find(|&c| tree.nodes[c].name == "cpus")
        else {
            if cfg.vcpus > 0 {
                self.note(format!(
                    "/cpus: missing on the host: made up for dom0's {} vCPU(s)",
                    cfg.vcpus
                ));
            }
            return;
        };
        self.root_cpus = true;
        self.role[cpus] = Role::Cpus;
        let mut removed_cpus = BTreeSet::new();
        let mut others = Vec::new();
        for c in self.children[cpus].clone() {
            if tree.base_name(c) != "cpu" {
                others.push(c);
                continue;
            }
            let usable = !matches!(
                tree.prop_str(c, "status"),
                Some(s) if s == "disabled" || s.starts_with("fail")
            );
            if usable && self.kept_cpus < cfg.vcpus {
                let index = self.kept_cpus;
                self.kept_cpus += 1;
                self.role[c] = Role::Cpu(index);
                self.cpu_template.get_or_insert(c);
                let path = tree.path(c);
                let name = format!("cpu@{index:x}");
                if tree.nodes[c].name != name {
                    self.note(format!("{path}: renamed {name} (vCPU {index})"));
                }
                match tree.prop_str(c, "enable-method") {
                    Some("psci") => {}
                    Some(method) => {
                        self.note(format!("{path}: enable-method {method} replaced by psci"))
                    }
                    None => self.note(format!("{path}: enable-method psci added")),
                }
            } else {
                let why = if usable {
                    format!("dom0 has {} vCPU(s)", cfg.vcpus)
                } else {
                    String::from("not usable on the host")
                };
                self.drop_node(tree, c, &why);
                removed_cpus.extend(phandle_of(tree, c));
            }
        }
        if self.kept_cpus < cfg.vcpus {
            self.note(format!(
                "/cpus: the host has {} usable CPU(s): vCPU(s) {}..{} made up",
                self.kept_cpus,
                self.kept_cpus,
                cfg.vcpus - 1
            ));
        }
        for c in others {
            if tree.nodes[c].name == "cpu-map" {
                self.drop_node(tree, c, "the host's CPU topology is not dom0's");
                continue;
            }
            let refers = core::iter::once(c)
                .chain(self.descendants(c))
                .any(|d| self.refers_to(tree, d, &removed_cpus).is_some());
            if refers {
                self.drop_node(tree, c, "refers to a CPU dom0 does not have");
            }
        }
    }

    /// The first `PHANDLE_LISTS` property of `node` naming one of `phandles`, with that
    /// phandle.
    fn refers_to(
        &self,
        tree: &Tree<'_, '_>,
        node: usize,
        phandles: &BTreeSet<u32>,
    ) -> Option<(&'static str, u32)> {
        PHANDLE_LISTS.iter().find_map(|&prop| {
            let value = tree.prop(node, prop)?;
            cells(value)
                .into_iter()
                .find(|p| phandles.contains(p))
                .map(|p| (prop, p))
        })
    }

    fn psci(&mut self, tree: &Tree<'_, '_>) {
        if let Some(&p) = self.children[0]
            .iter()
            .find(|&&c| tree.base_name(c) == "psci" && self.role[c] == Role::Copy)
        {
            self.root_psci = true;
            self.role[p] = Role::Psci;
            for c in self.children[p].clone() {
                // Such as OSI-mode power domains, which Ferrite's PSCI does not offer.
                self.drop_node(tree, c, "Ferrite's PSCI node has no children");
            }
            self.note(String::from(
                "/psci: replaced: PSCI 1.0 over hvc, emulated by Ferrite",
            ));
        }
        for i in 1..tree.nodes.len() {
            let is_psci = tree
                .prop_strings(i, "compatible")
                .any(|c| c.starts_with("arm,psci"));
            if is_psci && self.role[i] == Role::Copy {
                self.drop_node(tree, i, "dom0's PSCI is Ferrite's, in /psci");
            }
        }
        if !self.root_psci {
            self.note(String::from(
                "/psci: added: PSCI 1.0 over hvc, emulated by Ferrite",
            ));
        }
    }

    fn gic(&mut self, tree: &Tree<'_, '_>) {
        let Some(gic) = (1..tree.nodes.len()).find(|&i| {
            self.role[i] == Role::Copy
                && tree.is_enabled(i)
                && (tree.is_compatible(i, GIC_V3) || tree.is_compatible(i, GIC_V2))
        }) else {
            self.note(String::from(
                "no GIC node on the host: /hypervisor has no event interrupt",
            ));
            return;
        };
        self.gic = Some(gic);
        self.role[gic] = Role::Gic;
        self.gic_phandle = phandle_of(tree, gic);
        if self.gic_phandle.is_none() {
            // Any unused value will do; above the highest keeps the numbering readable.
            let next = self
                .phandles
                .keys()
                .next_back()
                .map_or(Some(1), |&p| p.checked_add(1))
                .filter(|&p| p != u32::MAX) // reserved by the spec
                .or_else(|| (1..u32::MAX).find(|p| !self.phandles.contains_key(p)))
                .unwrap_or(1);
            self.gic_phandle = Some(next);
            self.gic_phandle_is_new = true;
        }
        if tree.prop(gic, "msi-controller").is_some() {
            self.removed_msi.extend(self.gic_phandle);
        }
        for c in self.children[gic].clone() {
            if tree.prop(c, "msi-controller").is_some() || tree.is_compatible(c, MSI_FRAMES) {
                self.drop_node(tree, c, "dom0 gets no MSI controller (ITS or GICv2m frame)");
                self.removed_msi.extend(phandle_of(tree, c));
            }
        }
    }

    /// Notes references from kept nodes to dropped ones (a PMU's `interrupt-affinity` naming a
    /// CPU dom0 does not have, a `memory-region` in `/reserved-memory`): dom0's kernel may
    /// then do without that device or feature.
    fn dangling_references(&mut self, tree: &Tree<'_, '_>) {
        let removed: BTreeSet<u32> = (0..tree.nodes.len())
            .filter(|&i| !self.live[i])
            .filter_map(|i| phandle_of(tree, i))
            .collect();
        if removed.is_empty() {
            return;
        }
        for i in 1..tree.nodes.len() {
            if !self.live[i] {
                continue;
            }
            for &prop in PHANDLE_LISTS {
                let Some(value) = tree.prop(i, prop) else {
                    continue;
                };
                if let Some(p) = cells(value).into_iter().find(|p| removed.contains(p)) {
                    let target = self.phandles.get(&p).map(|&t| tree.path(t));
                    let path = tree.path(i);
                    self.note(format!(
                        "{path}: {prop} refers to {}, which dom0's tree does not have",
                        target.unwrap_or_default()
                    ));
                }
            }
        }
    }
}
