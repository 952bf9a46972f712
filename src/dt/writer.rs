//! A minimal flattened-device-tree (v17) writer, for building the trees Ferrite hands to its
//! domains (and the fixtures its tests parse).
//!
//! Nodes and properties are emitted in call order; the caller is responsible for the tree's
//! meaning (cell sizes, phandles). Property names are stored once in the strings block however
//! often they are used.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::validate::{FDT_MAGIC, HEADER_SIZE};

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;

/// Builds a device-tree blob node by node.
///
/// ```ignore
/// let mut w = FdtWriter::new();
/// w.begin_node("");
/// w.property_u32("#address-cells", 2);
/// w.begin_node("memory@40000000");
/// w.property_string("device_type", "memory");
/// w.property_cells("reg", &[0, 0x4000_0000, 0, 0x4000_0000]);
/// w.end_node();
/// w.end_node();
/// let blob = w.finish();
/// ```
#[derive(Debug, Default)]
pub struct FdtWriter {
    structure: Vec<u8>,
    strings: Vec<u8>,
    string_offsets: BTreeMap<String, u32>,
    reservations: Vec<(u64, u64)>,
    depth: usize,
    boot_cpuid: u32,
}

impl FdtWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the header's `boot_cpuid_phys` (0 by default).
    pub fn set_boot_cpuid(&mut self, cpuid: u32) {
        self.boot_cpuid = cpuid;
    }

    /// Adds a `/memreserve/` entry.
    pub fn add_reservation(&mut self, addr: u64, size: u64) {
        self.reservations.push((addr, size));
    }

    /// Opens a node; the first one is the root and must be named "".
    pub fn begin_node(&mut self, name: &str) {
        debug_assert!(!name.contains('\0'), "node name {name:?} contains NUL");
        self.token(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self.depth += 1;
    }

    pub fn end_node(&mut self) {
        debug_assert!(self.depth > 0, "end_node without an open node");
        if self.depth > 0 {
            self.token(FDT_END_NODE);
            self.depth -= 1;
        }
    }

    /// Adds a property to the open node; properties must come before the node's children.
    pub fn property(&mut self, name: &str, value: &[u8]) {
        debug_assert!(self.depth > 0, "property {name:?} outside a node");
        let name_offset = self.string_offset(name);
        self.token(FDT_PROP);
        self.token(value.len() as u32);
        self.token(name_offset);
        self.structure.extend_from_slice(value);
        self.pad();
    }

    /// An empty (boolean) property.
    pub fn property_empty(&mut self, name: &str) {
        self.property(name, &[]);
    }

    pub fn property_u32(&mut self, name: &str, value: u32) {
        self.property(name, &value.to_be_bytes());
    }

    /// A 64-bit value as two cells.
    pub fn property_u64(&mut self, name: &str, value: u64) {
        self.property(name, &value.to_be_bytes());
    }

    /// A NUL-terminated string.
    pub fn property_string(&mut self, name: &str, value: &str) {
        self.property_strings(name, &[value]);
    }

    /// A string list (such as `compatible`): each string NUL-terminated.
    pub fn property_strings(&mut self, name: &str, values: &[&str]) {
        let mut bytes = Vec::new();
        for v in values {
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0);
        }
        self.property(name, &bytes);
    }

    pub fn property_cells(&mut self, name: &str, cells: &[u32]) {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.property(name, &bytes);
    }

    /// The blob. Nodes still open are closed (a debug build asserts there are none).
    pub fn finish(mut self) -> Vec<u8> {
        debug_assert_eq!(self.depth, 0, "finish with {} node(s) open", self.depth);
        while self.depth > 0 {
            self.end_node();
        }
        self.token(FDT_END);

        let off_rsvmap = HEADER_SIZE.next_multiple_of(8);
        let off_struct = off_rsvmap + (self.reservations.len() + 1) * 16;
        let off_strings = off_struct + self.structure.len();
        let total = off_strings + self.strings.len();

        let mut blob = Vec::with_capacity(total);
        for word in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsvmap as u32,
            17, // version
            16, // last compatible version
            self.boot_cpuid,
            self.strings.len() as u32,
            self.structure.len() as u32,
        ] {
            blob.extend_from_slice(&word.to_be_bytes());
        }
        blob.resize(off_rsvmap, 0);
        for (addr, size) in self.reservations.iter().chain(&[(0, 0)]) {
            blob.extend_from_slice(&addr.to_be_bytes());
            blob.extend_from_slice(&size.to_be_bytes());
        }
        blob.extend_from_slice(&self.structure);
        blob.extend_from_slice(&self.strings);
        blob
    }

    fn token(&mut self, word: u32) {
        self.structure.extend_from_slice(&word.to_be_bytes());
    }

    fn pad(&mut self) {
        let len = self.structure.len().next_multiple_of(4);
        self.structure.resize(len, 0);
    }

    fn string_offset(&mut self, name: &str) -> u32 {
        if let Some(&offset) = self.string_offsets.get(name) {
            return offset;
        }
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.string_offsets.insert(name.into(), offset);
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.add_reservation(0x1000, 0x2000);
        w.add_reservation(0x8_0000_0000, 0x10_0000);
        w.set_boot_cpuid(3);
        w.begin_node("");
        w.property_u32("#address-cells", 2);
        w.property_u32("#size-cells", 1);
        w.property_string("model", "writer test");
        w.property_strings("compatible", &["acme,board", "acme,soc"]);
        w.begin_node("chosen");
        w.property_string("bootargs", "console=ttyAMA0");
        w.property_u64("linux,initrd-start", 0x4800_0000);
        w.end_node();
        w.begin_node("memory@40000000");
        w.property_string("device_type", "memory");
        w.property_cells("reg", &[0x0, 0x4000_0000, 0x1000_0000]);
        w.end_node();
        w.begin_node("empty");
        w.property_empty("ranges");
        w.property("odd", &[1, 2, 3]);
        w.begin_node("child@5");
        w.property_u32("reg", 5);
        w.end_node();
        w.end_node();
        w.end_node();
        w.finish()
    }

    #[test]
    fn round_trips_through_the_fdt_crate() {
        let blob = sample();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(fdt.total_size(), blob.len());
        assert_eq!(fdt.root().model(), "writer test");
        let compatible: Vec<&str> = fdt.root().compatible().all().collect();
        assert_eq!(compatible, ["acme,board", "acme,soc"]);
        assert_eq!(fdt.chosen().bootargs(), Some("console=ttyAMA0"));
        let initrd = fdt
            .find_node("/chosen")
            .unwrap()
            .property("linux,initrd-start")
            .unwrap();
        assert_eq!(initrd.as_usize(), Some(0x4800_0000));
        let mem = fdt.memory().regions().next().unwrap();
        assert_eq!(mem.starting_address as usize, 0x4000_0000);
        assert_eq!(mem.size, Some(0x1000_0000));
        let res: Vec<(usize, usize)> = fdt
            .memory_reservations()
            .map(|r| (r.address() as usize, r.size()))
            .collect();
        assert_eq!(res, [(0x1000, 0x2000), (0x8_0000_0000, 0x10_0000)]);
        let empty = fdt.find_node("/empty").unwrap();
        assert_eq!(empty.property("ranges").unwrap().value, &[] as &[u8]);
        assert_eq!(empty.property("odd").unwrap().value, &[1, 2, 3]);
        let child = fdt.find_node("/empty/child@5").unwrap();
        assert_eq!(child.property("reg").unwrap().as_usize(), Some(5));
        let names: Vec<&str> = fdt.all_nodes().map(|n| n.name).collect();
        assert_eq!(
            names,
            ["/", "chosen", "memory@40000000", "empty", "child@5"]
        );
    }

    #[test]
    fn header_is_v17_and_consistent() {
        let blob = sample();
        let word = |i: usize| u32::from_be_bytes(blob[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(word(0), 0xd00d_feed);
        assert_eq!(word(1) as usize, blob.len());
        assert_eq!((word(5), word(6)), (17, 16));
        assert_eq!(word(7), 3, "boot cpuid");
        assert_eq!(word(4) % 8, 0, "reservation map aligned");
        assert_eq!(word(2) % 4, 0, "structure block aligned");
        assert_eq!(word(2) as usize + word(9) as usize, word(3) as usize);
        assert_eq!(word(3) as usize + word(8) as usize, blob.len());
        assert!(crate::dt::validate::check(&blob).is_ok());
    }

    #[test]
    fn strings_are_deduplicated() {
        let mut w = FdtWriter::new();
        w.begin_node("");
        for i in 0..10 {
            w.begin_node(&alloc::format!("n{i}"));
            w.property_u32("reg", i);
            w.property_string("compatible", "x");
            w.end_node();
        }
        w.end_node();
        let blob = w.finish();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let strings: Vec<&str> = fdt.strings().collect();
        assert_eq!(strings, ["reg", "compatible"]);
        assert_eq!(fdt.all_nodes().count(), 11);
    }
}
