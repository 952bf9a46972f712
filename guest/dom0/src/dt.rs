//! What dom0 learns from its device tree (through `fdt`): memory, vCPUs, the GIC, the timer's
//! interrupts, the PSCI conduit, the virtio-mmio slots, the console, `/chosen/bootargs` and
//! Ferrite's `/hypervisor` node.
//!
//! The same code reads QEMU's tree on bare metal and the one Ferrite generates, so it trusts
//! nothing board-specific: every address comes from a `reg`, every interrupt from an
//! `interrupts` property in the GIC binding's three cells.
//!
//! Two kinds of query: [`Dt`]'s methods allocate nothing and run before the heap (they find the
//! console and the heap's place); [`Dt::machine`] collects everything else once the heap exists.
//!
//! Devices may sit below buses whose `ranges` map bus addresses to physical ones (the Raspberry
//! Pi 4 puts its UARTs and its GIC under `/soc`, at bus address 0x7e201000 for physical
//! 0xfe201000). So a device's `reg` is read with its parent's `#address-cells`/`#size-cells` and
//! translated through every bus's `ranges` on the way up ([`Buses`]), without allocating: the
//! console is found this way before there is a heap.

use alloc::string::String;
use alloc::vec::Vec;
use core::convert::Infallible;
use core::fmt;
use core::ops::ControlFlow;
use fdt::Fdt;
use fdt::node::FdtNode;

/// A physical address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub size: u64,
}

impl Region {
    pub const fn new(start: u64, size: u64) -> Self {
        Self { start, size }
    }
    pub const fn end(&self) -> u64 {
        self.start + self.size
    }
    pub fn overlaps(&self, o: &Region) -> bool {
        self.start < o.end() && o.start < self.end()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end().saturating_sub(1))
    }
}

/// How PSCI is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

impl Conduit {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "hvc" => Some(Self::Hvc),
            "smc" => Some(Self::Smc),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Hvc => "hvc",
            Self::Smc => "smc",
        }
    }
}

/// The interrupt controller.
#[derive(Clone, Debug)]
pub enum Gic {
    V2 { dist: Region, cpu: Region },
    V3 { dist: Region, redist: Vec<Region> },
}

/// One interrupt in the GIC binding: its INTID and whether it is level-triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq {
    pub intid: u32,
    pub level: bool,
}

impl Irq {
    /// Decodes the three cells `<type number flags>`: type 0 = SPI (INTID 32 + n), 1 = PPI
    /// (16 + n); flags 1/2 = edge, 4/8 = level.
    fn from_cells(c: &[u32]) -> Option<Self> {
        let base = match c[0] {
            0 => 32,
            1 => 16,
            _ => return None,
        };
        Some(Self {
            intid: base + c[1],
            level: c[2] & 0xc != 0,
        })
    }
}

/// A `virtio,mmio` slot.
#[derive(Clone, Debug)]
pub struct VirtioSlot {
    pub reg: Region,
    pub irq: Option<Irq>,
}

/// Ferrite's `/hypervisor` node (absent on bare metal).
#[derive(Clone, Debug)]
pub struct Hypervisor {
    pub compatible: String,
    pub abi: Option<(u32, u32)>,
    pub conduit: Option<String>,
    pub irqs: Vec<Irq>,
    /// `ferrite,grant-window`: where dom0 maps granted frames.
    pub grant_window: Option<Region>,
}

/// Everything dom0 uses from the device tree.
#[derive(Clone, Debug)]
pub struct Machine {
    pub model: String,
    pub memory: Vec<Region>,
    /// MPIDR affinity of each vCPU, in device-tree order.
    pub cpus: Vec<u64>,
    pub gic: Option<Gic>,
    /// The timer node's interrupts: secure phys, non-secure phys, virtual, hypervisor.
    pub timer: Vec<Irq>,
    pub timer_frequency: Option<u32>,
    pub psci: Option<Conduit>,
    pub virtio: Vec<VirtioSlot>,
    pub hypervisor: Option<Hypervisor>,
}

const GIC_V3: [&str; 1] = ["arm,gic-v3"];
const GIC_V2: [&str; 4] = [
    "arm,cortex-a15-gic",
    "arm,gic-400",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
];

/// The device tree, parsed lazily.
pub struct Dt {
    pub fdt: Fdt<'static>,
}

fn be32s(v: &[u8]) -> impl Iterator<Item = u32> + '_ {
    v.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

fn cstr(v: &[u8]) -> &str {
    let v = v.split(|&b| b == 0).next().unwrap_or(&[]);
    core::str::from_utf8(v).unwrap_or("")
}

/// The deepest bus nesting [`Buses`] follows (the root counts as one).
const MAX_DEPTH: usize = 8;

/// One node seen as a bus: the cell sizes of its children's `reg`, its own parent's address
/// cells (the parent side of its `ranges`) and its `ranges`.
#[derive(Clone, Copy)]
struct Bus {
    address_cells: usize,
    size_cells: usize,
    parent_address_cells: usize,
    /// `None`: no `ranges`, so its children are not memory-mapped. Empty: identity.
    ranges: Option<&'static [u8]>,
}

/// The buses from the root down to a node's parent, for reading and translating the node's
/// `reg`. A fixed array: it is used before the heap exists.
#[derive(Clone, Copy)]
struct Buses {
    bus: [Bus; MAX_DEPTH],
    len: usize,
}

/// A number of up to four cells (more do not fit in a u128).
fn read_cells(v: &[u8], cells: usize) -> Option<u128> {
    if cells > 4 || v.len() < cells * 4 {
        return None;
    }
    Some(be32s(&v[..cells * 4]).fold(0u128, |acc, w| (acc << 32) | w as u128))
}

impl Buses {
    /// Just the root, whose `#address-cells`/`#size-cells` read its children's `reg`.
    fn root(root: FdtNode<'_, 'static>) -> Self {
        let mut b = Self {
            bus: [Bus {
                address_cells: 2,
                size_cells: 1,
                parent_address_cells: 2,
                ranges: Some(&[]),
            }; MAX_DEPTH],
            len: 0,
        };
        b.push(root);
        b
    }

    /// Adds `n` as the innermost bus; false if the tree is nested too deeply.
    fn push(&mut self, n: FdtNode<'_, 'static>) -> bool {
        if self.len == MAX_DEPTH {
            return false;
        }
        let cells = |name| {
            n.property(name)
                .and_then(|p| be32s(p.value).next())
                .map(|c| c as usize)
        };
        let parent_address_cells = match self.len {
            0 => 2,
            l => self.bus[l - 1].address_cells,
        };
        self.bus[self.len] = Bus {
            // The devicetree specification's defaults.
            address_cells: cells("#address-cells").unwrap_or(2),
            size_cells: cells("#size-cells").unwrap_or(1),
            parent_address_cells,
            // The root's address space is the CPU's, whatever it says.
            ranges: if self.len == 0 {
                Some(&[])
            } else {
                n.property("ranges").map(|p| p.value)
            },
        };
        self.len += 1;
        true
    }

    /// Translates `addr` from the innermost bus's address space to a physical address:
    /// innermost bus first, each through its `ranges`. `None` if a bus is not memory-mapped or
    /// no range of it holds the address.
    fn translate(&self, mut addr: u128) -> Option<u64> {
        for b in self.bus[1..self.len].iter().rev() {
            let ranges = b.ranges?;
            if ranges.is_empty() {
                continue;
            }
            let (ca, pa, sc) = (b.address_cells, b.parent_address_cells, b.size_cells);
            let entry = (ca + pa + sc) * 4;
            if entry == 0 {
                return None;
            }
            addr = ranges.chunks_exact(entry).find_map(|e| {
                let child = read_cells(e, ca)?;
                let parent = read_cells(&e[ca * 4..], pa)?;
                let len = read_cells(&e[(ca + pa) * 4..], sc)?;
                let off = addr.checked_sub(child)?;
                // Like Linux, only the start has to lie in the range.
                (off < len).then(|| parent.checked_add(off))?
            })?;
        }
        u64::try_from(addr).ok()
    }

    /// `n`'s `reg`, read with its parent's cell sizes and translated to physical addresses.
    /// Entries of size 0 or that do not translate are skipped.
    fn regs(self, n: FdtNode<'_, 'static>) -> impl Iterator<Item = Region> + 'static {
        let parent = self.bus[self.len - 1];
        let (ac, sc) = (parent.address_cells, parent.size_cells);
        let value = n.property("reg").map(|p| p.value).unwrap_or(&[]);
        let entry = (ac + sc) * 4;
        value
            .chunks_exact(entry.max(4))
            .filter(move |_| entry != 0)
            .filter_map(move |e| {
                let addr = read_cells(e, ac)?;
                let size = read_cells(&e[ac * 4..], sc)?;
                let size = u64::try_from(size).ok().filter(|&s| s != 0)?;
                Some(Region::new(self.translate(addr)?, size))
            })
    }
}

/// Visits `n`'s descendants depth first, each with the buses down to its parent (`buses` ends
/// with `n`), until `f` breaks. Allocation-free: the recursion is as deep as the tree, and
/// subtrees deeper than [`MAX_DEPTH`] are not visited.
fn walk<'b, T>(
    n: FdtNode<'b, 'static>,
    buses: &Buses,
    f: &mut impl FnMut(FdtNode<'b, 'static>, &Buses) -> ControlFlow<T>,
) -> ControlFlow<T> {
    for c in n.children() {
        f(c, buses)?;
        let mut inner = *buses;
        if inner.push(c) {
            walk(c, &inner, f)?;
        }
    }
    ControlFlow::Continue(())
}

fn regs<'a>(n: FdtNode<'_, 'a>) -> impl Iterator<Item = Region> + 'a {
    n.reg().into_iter().flatten().filter_map(|r| {
        let size = r.size? as u64;
        (size != 0).then(|| Region::new(r.starting_address as u64, size))
    })
}

/// A node's `interrupts` in the GIC binding. `cells` is the GIC's `#interrupt-cells`: 3, or 4
/// for a GICv3 with PPI partitions (the fourth cell, the partition, is ignored).
fn irqs(n: FdtNode, cells: usize) -> Vec<Irq> {
    let Some(p) = n.property("interrupts") else {
        return Vec::new();
    };
    let words: Vec<u32> = be32s(p.value).collect();
    words
        .chunks_exact(cells.max(3))
        .filter_map(Irq::from_cells)
        .collect()
}

fn has_compatible(n: &FdtNode, names: &[&str]) -> bool {
    n.compatible()
        .map(|c| c.all().any(|s| names.contains(&s)))
        .unwrap_or(false)
}

fn is_memory(n: &FdtNode) -> bool {
    n.property("device_type")
        .map(|p| cstr(p.value) == "memory")
        .unwrap_or(false)
        || n.name.split('@').next() == Some("memory")
}

fn is_disabled(n: &FdtNode) -> bool {
    n.property("status")
        .map(|p| !matches!(cstr(p.value), "okay" | "ok"))
        .unwrap_or(false)
}

impl Dt {
    /// # Safety
    /// `dtb` must point at a device tree that stays mapped and untouched for dom0's life.
    pub unsafe fn new(dtb: usize) -> Result<Self, fdt::FdtError> {
        // SAFETY: forwarded from the caller.
        let fdt = unsafe { Fdt::from_ptr(dtb as *const u8)? };
        Ok(Self { fdt })
    }

    /// Looks a node up by its path (`/cpus`, `/chosen`), walking down from the root; a path
    /// component matches a node's full name or its name without the unit address.
    ///
    /// Not `Fdt::find_node`: fdt 0.1.5's misses nodes in trees that were edited in place (seen
    /// with the tree QEMU builds from a `-dtb` file, where it missed `/chosen` and `/cpus`),
    /// while walking `children()` finds them.
    pub fn node(&self, path: &str) -> Option<FdtNode<'_, 'static>> {
        self.node_and_buses(path).map(|(n, _)| n)
    }

    /// [`Dt::node`], with the buses down to the node's parent (for [`Buses::regs`]).
    fn node_and_buses(&self, path: &str) -> Option<(FdtNode<'_, 'static>, Buses)> {
        let mut n = self.fdt.all_nodes().next()?;
        let mut buses = Buses::root(n);
        let mut first = true;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !first && !buses.push(n) {
                return None;
            }
            first = false;
            n = n
                .children()
                .find(|c| c.name == part || c.name.split('@').next() == Some(part))?;
        }
        Some((n, buses))
    }

    /// The first node, depth first, that `pred` accepts, with the buses down to its parent.
    fn find(
        &self,
        pred: impl Fn(&FdtNode<'_, 'static>) -> bool,
    ) -> Option<(FdtNode<'_, 'static>, Buses)> {
        let root = self.fdt.all_nodes().next()?;
        walk(root, &Buses::root(root), &mut |n, buses| {
            if pred(&n) {
                ControlFlow::Break((n, *buses))
            } else {
                ControlFlow::Continue(())
            }
        })
        .break_value()
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.fdt.total_size() as u64
    }

    /// The RAM banks.
    pub fn memory(&self) -> impl Iterator<Item = Region> + '_ {
        self.fdt
            .all_nodes()
            .filter(|n| is_memory(n) && !is_disabled(n))
            .flat_map(regs)
    }

    /// Memory that dom0 must not use: `/memreserve/` entries, `/reserved-memory` children and
    /// the initrd.
    pub fn reserved(&self) -> impl Iterator<Item = Region> + '_ {
        let memreserve = self
            .fdt
            .memory_reservations()
            .map(|r| Region::new(r.address() as u64, r.size() as u64));
        let nodes = self
            .node("/reserved-memory")
            .into_iter()
            .flat_map(|n| n.children())
            .flat_map(regs);
        memreserve.chain(nodes).chain(self.initrd())
    }

    fn initrd(&self) -> Option<Region> {
        let chosen = self.node("/chosen")?;
        let cell = |name| {
            let v = chosen.property(name)?.value;
            Some(be32s(v).fold(0u64, |acc, w| (acc << 32) | w as u64))
        };
        let (s, e) = (cell("linux,initrd-start")?, cell("linux,initrd-end")?);
        (e > s).then(|| Region::new(s, e - s))
    }

    /// `/chosen/bootargs`, or "".
    pub fn bootargs(&self) -> &'static str {
        self.node("/chosen")
            .and_then(|c| c.property("bootargs"))
            .map(|p| cstr(p.value))
            .unwrap_or("")
    }

    /// The console: the PL011 `/chosen/stdout-path` names (path or alias, options after ':'),
    /// else the first enabled `arm,pl011`.
    ///
    /// Runs before the heap exists, so allocates nothing: the node is found by walking down its
    /// path (or depth first), and its `reg` is translated through the buses above it.
    pub fn console(&self) -> Option<Region> {
        let by_path = self
            .node("/chosen")
            .and_then(|c| c.property("stdout-path"))
            .map(|p| cstr(p.value).split(':').next().unwrap_or(""))
            .and_then(|path| {
                if path.starts_with('/') {
                    self.node_and_buses(path)
                } else {
                    let full = self.node("/aliases")?.property(path)?.value;
                    self.node_and_buses(cstr(full))
                }
            })
            .filter(|(n, _)| has_compatible(n, &["arm,pl011"]));
        let (node, buses) = by_path
            .or_else(|| self.find(|n| has_compatible(n, &["arm,pl011"]) && !is_disabled(n)))?;
        buses.regs(node).next()
    }

    /// Collects everything else. Needs the heap.
    pub fn machine(&self) -> Machine {
        let root = self.node("/");
        let model = root
            .and_then(|r| r.property("model"))
            .map(|p| cstr(p.value).into())
            .unwrap_or_default();
        let cpus = self
            .node("/cpus")
            .into_iter()
            .flat_map(|c| c.children())
            .filter(|n| {
                n.property("device_type")
                    .map(|p| cstr(p.value) == "cpu")
                    .unwrap_or(false)
                    && !is_disabled(n)
            })
            .filter_map(|n| {
                let v = n.property("reg")?.value;
                Some(be32s(v).fold(0u64, |acc, w| (acc << 32) | w as u64))
            })
            .collect();
        let timer = self
            .fdt
            .all_nodes()
            .find(|n| has_compatible(n, &["arm,armv8-timer", "arm,armv7-timer"]));
        let cells = self
            .gic_node()
            .and_then(|g| g.interrupt_cells())
            .unwrap_or(3);
        Machine {
            model,
            memory: self.memory().collect(),
            cpus,
            gic: self.gic(),
            timer: timer.map(|t| irqs(t, cells)).unwrap_or_default(),
            timer_frequency: timer
                .and_then(|t| t.property("clock-frequency"))
                .and_then(|p| be32s(p.value).next()),
            psci: self
                .fdt
                .all_nodes()
                .find(|n| n.name.split('@').next() == Some("psci"))
                .and_then(|n| n.property("method"))
                .and_then(|p| Conduit::parse(cstr(p.value))),
            virtio: self.virtio(cells),
            hypervisor: self.hypervisor(cells),
        }
    }

    /// The interrupt controller's node: the one every interrupt in dom0's tree goes to.
    fn gic_node(&self) -> Option<FdtNode<'_, 'static>> {
        self.fdt
            .all_nodes()
            .find(|n| has_compatible(n, &GIC_V3) || has_compatible(n, &GIC_V2))
    }

    /// Every enabled `virtio,mmio` slot, in tree order.
    fn virtio(&self, cells: usize) -> Vec<VirtioSlot> {
        let mut slots = Vec::new();
        let Some(root) = self.fdt.all_nodes().next() else {
            return slots;
        };
        let ControlFlow::Continue(()) =
            walk::<Infallible>(root, &Buses::root(root), &mut |n, buses| {
                if has_compatible(&n, &["virtio,mmio"])
                    && !is_disabled(&n)
                    && let Some(reg) = buses.regs(n).next()
                {
                    slots.push(VirtioSlot {
                        reg,
                        irq: irqs(n, cells).first().copied(),
                    });
                }
                ControlFlow::Continue(())
            });
        slots
    }

    /// The GIC's registers, translated like the console's (on the Raspberry Pi 4 it sits under
    /// `/soc`). Allocation-free up to the redistributor list.
    fn gic(&self) -> Option<Gic> {
        let (n, buses) = self.find(|n| has_compatible(n, &GIC_V3) || has_compatible(n, &GIC_V2))?;
        let mut r = buses.regs(n);
        if has_compatible(&n, &GIC_V3) {
            let count = n
                .property("#redistributor-regions")
                .and_then(|p| be32s(p.value).next())
                .unwrap_or(1) as usize;
            let dist = r.next()?;
            let redist = r.take(count).collect();
            return Some(Gic::V3 { dist, redist });
        }
        Some(Gic::V2 {
            dist: r.next()?,
            cpu: r.next()?,
        })
    }

    fn hypervisor(&self, cells: usize) -> Option<Hypervisor> {
        let n = self.node("/hypervisor")?;
        let compatible = n.compatible().map(|c| c.first().into()).unwrap_or_default();
        let abi = n.property("ferrite,abi-version").and_then(|p| {
            let mut w = be32s(p.value);
            Some((w.next()?, w.next()?))
        });
        Some(Hypervisor {
            compatible,
            abi,
            conduit: n.property("ferrite,conduit").map(|p| cstr(p.value).into()),
            irqs: irqs(n, cells),
            grant_window: n.property("ferrite,grant-window").and_then(|p| {
                let mut w = be32s(p.value);
                let (a, b, c, d) = (w.next()?, w.next()?, w.next()?, w.next()?);
                let size = ((c as u64) << 32) | d as u64;
                (size > 0).then(|| Region::new(((a as u64) << 32) | b as u64, size))
            }),
        })
    }
}
