//! An indexed view of a validated device tree: every node with its parent, so that paths,
//! ancestors (for `ranges`), phandles and inherited properties can be looked up.
//!
//! The `fdt` crate only lets a node see its parent's properties, and its own path lookup
//! follows aliases recursively without a bound, so Ferrite walks the tree once itself and does
//! every lookup here.

use alloc::string::String;
use alloc::vec::Vec;

use fdt::Fdt;
use fdt::node::FdtNode;

use super::ranges::{self, Bus, TranslateError};
use crate::mm::region::Region;

pub(super) struct Node<'b, 'a> {
    pub name: &'a str,
    pub parent: Option<usize>,
    fdt: FdtNode<'b, 'a>,
}

/// All nodes in depth-first order; index 0 is the root.
pub(super) struct Tree<'b, 'a> {
    pub nodes: Vec<Node<'b, 'a>>,
}

impl<'b, 'a> Tree<'b, 'a> {
    /// Indexes `fdt`, which must have passed validation (the `fdt` crate panics otherwise).
    pub fn new(fdt: &'b Fdt<'a>) -> Option<Self> {
        let root = fdt.find_node("/")?;
        let mut tree = Tree { nodes: Vec::new() };
        // Explicit stack: the validator bounds the depth, but recursion would still put the
        // tree's shape on Ferrite's small boot stack.
        let mut stack = alloc::vec![(root, None::<usize>)];
        while let Some((node, parent)) = stack.pop() {
            let index = tree.nodes.len();
            tree.nodes.push(Node {
                name: node.name,
                parent,
                fdt: node,
            });
            let first_child = stack.len();
            stack.extend(node.children().map(|c| (c, Some(index))));
            stack[first_child..].reverse(); // keep document order when popping
        }
        Some(tree)
    }

    pub fn prop(&self, node: usize, name: &str) -> Option<&'a [u8]> {
        self.nodes[node].fdt.property(name).map(|p| p.value)
    }

    /// A string property, without its terminating NUL; `None` if absent or not UTF-8.
    pub fn prop_str(&self, node: usize, name: &str) -> Option<&'a str> {
        let value = self.prop(node, name)?;
        let value = value.strip_suffix(&[0]).unwrap_or(value);
        core::str::from_utf8(value).ok()
    }

    /// The strings of a string-list property (like `compatible`).
    pub fn prop_strings(
        &self,
        node: usize,
        name: &str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'b> {
        let value = self.prop(node, name).unwrap_or_default();
        let value = value.strip_suffix(&[0]).unwrap_or(value);
        value
            .split(|&b| b == 0)
            .filter_map(|s| core::str::from_utf8(s).ok())
            .filter(|s| !s.is_empty())
    }

    /// A one- or two-cell number property.
    pub fn prop_u64(&self, node: usize, name: &str) -> Option<u64> {
        let value = self.prop(node, name)?;
        match value.len() {
            4 | 8 => ranges::read_cells(value, value.len() as u32 / 4),
            _ => None,
        }
    }

    pub fn prop_u32(&self, node: usize, name: &str) -> Option<u32> {
        let value = self.prop(node, name)?;
        (value.len() == 4).then(|| u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
    }

    pub fn is_compatible(&self, node: usize, with: &[&str]) -> bool {
        self.prop_strings(node, "compatible")
            .any(|c| with.contains(&c))
    }

    /// Whether `status` is absent or "okay" ("ok" is an old spelling still found in blobs).
    pub fn is_enabled(&self, node: usize) -> bool {
        matches!(self.prop_str(node, "status"), None | Some("okay" | "ok"))
    }

    /// `#address-cells` and `#size-cells` a node gives its children; the spec's defaults (2, 1)
    /// when absent or malformed.
    pub fn child_cells(&self, node: usize) -> (u32, u32) {
        (
            self.prop_u32(node, "#address-cells").unwrap_or(2),
            self.prop_u32(node, "#size-cells").unwrap_or(1),
        )
    }

    pub fn children(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        (node + 1..self.nodes.len()).filter(move |&i| self.nodes[i].parent == Some(node))
    }

    /// The part of a node name before the unit address.
    pub fn base_name(&self, node: usize) -> &'a str {
        let name = self.nodes[node].name;
        name.split('@').next().unwrap_or(name)
    }

    pub fn path(&self, node: usize) -> String {
        let mut parts = Vec::new();
        let mut at = Some(node);
        while let Some(i) = at {
            parts.push(self.nodes[i].name);
            at = self.nodes[i].parent;
        }
        parts.pop(); // the root's empty name
        if parts.is_empty() {
            return "/".into();
        }
        let mut path = String::new();
        for part in parts.iter().rev() {
            path.push('/');
            path.push_str(part);
        }
        path
    }

    /// The node at an absolute path; a component without a unit address matches a node
    /// whatever its unit address (the first such, as in the spec).
    pub fn find_path(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix('/')?;
        let mut node = 0;
        for component in rest.split('/').filter(|c| !c.is_empty()) {
            node = self.children(node).find(|&c| {
                self.nodes[c].name == component
                    || (!component.contains('@') && self.base_name(c) == component)
            })?;
        }
        Some(node)
    }

    /// An absolute path or an alias from `/aliases`, optionally followed by `:options`.
    pub fn resolve_path_or_alias(&self, path: &str) -> Option<usize> {
        let path = path.split(':').next().unwrap_or(path);
        if path.starts_with('/') {
            return self.find_path(path);
        }
        let (alias, rest) = path.split_once('/').unwrap_or((path, ""));
        let aliases = self.find_path("/aliases")?;
        let target = self.prop_str(aliases, alias)?;
        if !target.starts_with('/') {
            return None; // an alias must name a path, never another alias
        }
        if rest.is_empty() {
            self.find_path(target)
        } else {
            self.find_path(&alloc::format!("{target}/{rest}"))
        }
    }

    pub fn find_phandle(&self, phandle: u32) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.prop_u32(i, "phandle")
                .or_else(|| self.prop_u32(i, "linux,phandle"))
                == Some(phandle)
        })
    }

    /// `#interrupt-cells` of the controller that `node`'s `interrupts` refer to: the
    /// `interrupt-parent` of the node or its nearest ancestor that has one.
    pub fn interrupt_cells(&self, node: usize) -> Option<u32> {
        let mut at = Some(node);
        while let Some(i) = at {
            if let Some(phandle) = self.prop_u32(i, "interrupt-parent") {
                return self.prop_u32(self.find_phandle(phandle)?, "#interrupt-cells");
            }
            at = self.nodes[i].parent;
        }
        None
    }

    /// Every property of `node` as `(name, value)`, in blob order.
    pub fn props(&self, node: usize) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a, 'b> {
        self.nodes[node].fdt.properties().map(|p| (p.name, p.value))
    }

    /// Calls `f` with the buses from `bus` up to the root, as [`ranges::translate`] wants them.
    fn with_buses<R>(&self, bus: usize, f: impl FnOnce(&[Bus<'_>]) -> R) -> R {
        let chain: Vec<usize> =
            core::iter::successors(Some(bus), |&i| self.nodes[i].parent).collect();
        let paths: Vec<String> = chain.iter().map(|&i| self.path(i)).collect();
        let buses: Vec<Bus<'_>> = chain
            .iter()
            .zip(&paths)
            .map(|(&i, path)| {
                let (address_cells, size_cells) = self.child_cells(i);
                Bus {
                    path,
                    ranges: self.prop(i, "ranges"),
                    address_cells,
                    size_cells,
                }
            })
            .collect();
        f(&buses)
    }

    /// Translates `addr`, an address in the space `bus` gives its children, to a CPU physical
    /// address.
    pub fn translate_from(&self, bus: usize, addr: u64) -> Result<u64, TranslateError> {
        self.with_buses(bus, |buses| ranges::translate(addr, buses))
    }

    /// Translates CPU physical address `addr` into the space `bus` gives its children.
    pub fn translate_into(&self, bus: usize, addr: u64) -> Result<u64, TranslateError> {
        self.with_buses(bus, |buses| ranges::untranslate(addr, buses))
    }

    /// Every `reg` entry of `node` as a CPU physical region, translated through the `ranges`
    /// of each bus above it.
    pub fn reg(&self, node: usize) -> Result<Vec<Region>, TranslateError> {
        let Some(parent) = self.nodes[node].parent else {
            return Ok(Vec::new()); // the root has no address
        };
        let ancestors: Vec<usize> =
            core::iter::successors(Some(parent), |&i| self.nodes[i].parent).collect();
        let paths: Vec<String> = ancestors.iter().map(|&i| self.path(i)).collect();
        let buses: Vec<Bus<'_>> = ancestors
            .iter()
            .zip(&paths)
            .map(|(&i, path)| {
                let (address_cells, size_cells) = self.child_cells(i);
                Bus {
                    path,
                    ranges: self.prop(i, "ranges"),
                    address_cells,
                    size_cells,
                }
            })
            .collect();
        let value = self.prop(node, "reg").unwrap_or_default();
        let (address_cells, size_cells) = self.child_cells(parent);
        ranges::parse_reg(value, address_cells, size_cells)?
            .into_iter()
            .map(|(addr, size)| Ok(Region::new(ranges::translate(addr, &buses)?, size)))
            .collect()
    }
}
