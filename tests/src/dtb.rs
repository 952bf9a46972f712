//! What a DTB tells the guest, to derive expectations from the DTB QEMU actually passes
//! ([`crate::Qemu::dump_dtb`]).
//!
//! A small flattened-device-tree reader of its own: the `fdt` crate (0.1.5) panics on DTBs that
//! contain `FDT_NOP` tokens, and QEMU's raspi4b DTB has hundreds (from disabling the nodes it
//! does not model).

use crate::console::Range;
use crate::error::{Error, ErrorKind, Result};

/// The facts of a DTB the system tests check Ferrite's console against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DtbFacts {
    /// Every `reg` range of every `device_type = "memory"` node, sorted.
    pub memory: Vec<Range>,
    /// The `/memreserve/` entries.
    pub memreserve: Vec<Range>,
    /// `/chosen/bootargs`.
    pub bootargs: Option<String>,
    /// The number of `/cpus/cpu@N` nodes.
    pub cpus: usize,
    /// The number of `FDT_NOP` tokens.
    pub nops: usize,
}

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

struct Node {
    name: String,
    /// `#address-cells` / `#size-cells` this node declares for its children.
    address_cells: u32,
    size_cells: u32,
    device_type: Option<String>,
    reg: Option<Vec<u8>>,
}

fn bad(why: &str) -> Error {
    Error::new(ErrorKind::Check, format!("bad DTB: {why}"))
}

fn be32(b: &[u8], at: usize) -> Result<u32> {
    let bytes = b.get(at..at + 4).ok_or_else(|| bad("truncated"))?;
    Ok(u32::from_be_bytes(bytes.try_into().unwrap()))
}

fn cells(b: &[u8], n: u32) -> Option<u64> {
    (b.len() == 4 * n as usize && n <= 2).then(|| {
        b.chunks(4).fold(0u64, |acc, c| {
            (acc << 32) | u64::from(u32::from_be_bytes(c.try_into().unwrap()))
        })
    })
}

fn string(value: &[u8]) -> String {
    let end = value.iter().position(|&c| c == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

pub fn parse(dtb: &[u8]) -> Result<DtbFacts> {
    if be32(dtb, 0)? != MAGIC {
        return Err(bad("no FDT magic"));
    }
    let off_struct = be32(dtb, 8)? as usize;
    let off_strings = be32(dtb, 12)? as usize;
    let off_rsvmap = be32(dtb, 16)? as usize;

    let mut facts = DtbFacts::default();
    let mut at = off_rsvmap;
    loop {
        let base = (u64::from(be32(dtb, at)?) << 32) | u64::from(be32(dtb, at + 4)?);
        let size = (u64::from(be32(dtb, at + 8)?) << 32) | u64::from(be32(dtb, at + 12)?);
        at += 16;
        if base == 0 && size == 0 {
            break;
        }
        facts.memreserve.push(Range::from_base_size(base, size));
    }

    let mut stack: Vec<Node> = Vec::new();
    let mut at = off_struct;
    loop {
        let token = be32(dtb, at)?;
        at += 4;
        match token {
            BEGIN_NODE => {
                let rest = dtb.get(at..).ok_or_else(|| bad("truncated"))?;
                let len = rest
                    .iter()
                    .position(|&c| c == 0)
                    .ok_or_else(|| bad("node name"))?;
                let name = String::from_utf8_lossy(&rest[..len]).into_owned();
                at = (at + len + 1 + 3) & !3;
                stack.push(Node {
                    name,
                    address_cells: 2,
                    size_cells: 1,
                    device_type: None,
                    reg: None,
                });
            }
            END_NODE => {
                let node = stack.pop().ok_or_else(|| bad("unbalanced END_NODE"))?;
                let path: Vec<&str> = stack.iter().skip(1).map(|n| n.name.as_str()).collect();
                if path == ["cpus"] && node.name.starts_with("cpu@") {
                    facts.cpus += 1;
                }
                if node.device_type.as_deref() == Some("memory")
                    && let (Some(reg), Some(parent)) = (&node.reg, stack.last())
                {
                    let (ac, sc) = (parent.address_cells, parent.size_cells);
                    let entry = 4 * (ac + sc) as usize;
                    for e in reg.chunks(entry.max(4)).filter(|e| e.len() == entry) {
                        let base = cells(&e[..4 * ac as usize], ac).ok_or_else(|| bad("reg"))?;
                        let size = cells(&e[4 * ac as usize..], sc).ok_or_else(|| bad("reg"))?;
                        if size > 0 {
                            facts.memory.push(Range::from_base_size(base, size));
                        }
                    }
                }
            }
            PROP => {
                let len = be32(dtb, at)? as usize;
                let name_off = be32(dtb, at + 4)? as usize;
                let value = dtb
                    .get(at + 8..at + 8 + len)
                    .ok_or_else(|| bad("truncated"))?;
                at = (at + 8 + len + 3) & !3;
                let name = string(
                    dtb.get(off_strings + name_off..)
                        .ok_or_else(|| bad("name"))?,
                );
                let in_chosen = stack.len() == 2 && stack[1].name == "chosen";
                let node = stack
                    .last_mut()
                    .ok_or_else(|| bad("property outside a node"))?;
                match name.as_str() {
                    "#address-cells" => node.address_cells = be32(value, 0)?,
                    "#size-cells" => node.size_cells = be32(value, 0)?,
                    "device_type" => node.device_type = Some(string(value)),
                    "reg" => node.reg = Some(value.to_vec()),
                    "bootargs" if in_chosen => facts.bootargs = Some(string(value)),
                    _ => {}
                }
            }
            NOP => facts.nops += 1,
            END => break,
            other => return Err(bad(&format!("unknown token {other:#x}"))),
        }
    }
    facts.memory.sort();
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made DTB: /memory@40000000 (2 address cells, 2 size cells), /chosen with bootargs,
    /// /cpus with two cpu@ nodes, a NOP, and one /memreserve/ entry.
    fn blob() -> Vec<u8> {
        let strings = b"#address-cells\0#size-cells\0device_type\0reg\0bootargs\0";
        let (ac, sc, dt, reg, ba) = (0u32, 15u32, 27u32, 39u32, 43u32);
        let mut s: Vec<u8> = Vec::new();
        let w = |s: &mut Vec<u8>, v: u32| s.extend(v.to_be_bytes());
        let node = |s: &mut Vec<u8>, name: &str| {
            s.extend(BEGIN_NODE.to_be_bytes());
            s.extend(name.as_bytes());
            s.push(0);
            while !s.len().is_multiple_of(4) {
                s.push(0);
            }
        };
        let prop = |s: &mut Vec<u8>, name: u32, value: &[u8]| {
            s.extend(PROP.to_be_bytes());
            s.extend((value.len() as u32).to_be_bytes());
            s.extend(name.to_be_bytes());
            s.extend(value);
            while !s.len().is_multiple_of(4) {
                s.push(0);
            }
        };
        node(&mut s, "");
        prop(&mut s, ac, &2u32.to_be_bytes());
        prop(&mut s, sc, &2u32.to_be_bytes());
        w(&mut s, NOP);
        node(&mut s, "memory@40000000");
        prop(&mut s, dt, b"memory\0");
        prop(
            &mut s,
            reg,
            &[0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0],
        );
        w(&mut s, END_NODE);
        node(&mut s, "chosen");
        prop(&mut s, ba, b"poweroff\0");
        w(&mut s, END_NODE);
        node(&mut s, "cpus");
        for cpu in ["cpu@0", "cpu@1"] {
            node(&mut s, cpu);
            w(&mut s, END_NODE);
        }
        w(&mut s, END_NODE);
        w(&mut s, END_NODE);
        w(&mut s, END);

        let rsv: Vec<u8> = [0u64, 0x1000, 0, 0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let off_rsv = 40;
        let off_struct = off_rsv + rsv.len();
        let off_strings = off_struct + s.len();
        let total = off_strings + strings.len();
        let mut b = Vec::new();
        for v in [
            MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsv as u32,
        ] {
            b.extend(v.to_be_bytes());
        }
        for v in [17u32, 16, 0, strings.len() as u32, s.len() as u32] {
            b.extend(v.to_be_bytes());
        }
        b.extend(rsv);
        b.extend(s);
        b.extend(strings);
        b
    }

    #[test]
    fn hand_made() {
        let facts = parse(&blob()).unwrap();
        assert_eq!(facts.memory, [Range::new(0x4000_0000, 0x7fff_ffff)]);
        assert_eq!(facts.memreserve, [Range::new(0, 0xfff)]);
        assert_eq!(facts.bootargs.as_deref(), Some("poweroff"));
        assert_eq!(facts.cpus, 2);
        assert_eq!(facts.nops, 1);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"not a dtb at all").is_err());
        assert!(parse(&blob()[..60]).is_err());
    }
}
