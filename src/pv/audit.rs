//! A from-scratch recount of a frame table against the tables in memory, and the invariants
//! the validator promises: used by the tests after every operation, and available to debug
//! builds of Ferrite.

use super::desc::{self, Desc, ENTRIES, PAGE_SHIFT};
use super::frames::{FrameTable, FrameType};
use super::{Grants, GuestMemory};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

#[derive(Clone, Copy, Default)]
struct Count {
    refs: u32,
    writable: u32,
    table: u32,
    table_level: Option<u8>,
}

impl<G: Grants> FrameTable<G> {
    /// Recounts every reference from the validated tables, pins, bases and holds, and checks
    /// them against the records; also that no page-table page is mapped writable, that every
    /// table entry points at a table of the next level, and that bases are pinned level-0
    /// tables. Returns the first discrepancy.
    pub fn audit(&self, mem: &impl GuestMemory) -> Result<(), String> {
        let mut want: BTreeMap<u64, Count> = BTreeMap::new();
        let mask = self.policy.normal_attr_mask;
        for (&n, &h) in &self.holds {
            if !self.frames.state(n).owned() || h == 0 {
                return Err(format!("{:#x}: {h} holds on it", n << PAGE_SHIFT));
            }
            let c = want.entry(n).or_default();
            c.refs += h;
            c.writable += h;
        }
        for (n, s) in self.frames.iter() {
            let pa = n << PAGE_SHIFT;
            if s.pinned() {
                let c = want.entry(n).or_default();
                c.refs += 1;
                c.table += 1;
            }
            let FrameType::PageTable(level) = s.ty() else {
                continue;
            };
            for i in 0..ENTRIES {
                let raw = mem
                    .read_u64(pa + 8 * i as u64)
                    .ok_or_else(|| format!("table {pa:#x} unreadable"))?;
                match desc::decode(raw, level, i, mask) {
                    Err(e) => return Err(format!("{pa:#x}[{i}] = {raw:#x} in a table: {e}")),
                    Ok(Desc::Invalid) => {}
                    Ok(Desc::Table { next }) => {
                        let c = want.entry(next >> PAGE_SHIFT).or_default();
                        c.refs += 1;
                        c.table += 1;
                        if c.table_level
                            .replace(level + 1)
                            .is_some_and(|l| l != level + 1)
                        {
                            return Err(format!("{next:#x} is linked at two levels"));
                        }
                    }
                    Ok(Desc::Leaf(l)) => {
                        for k in 0..l.frames {
                            let m = (l.base >> PAGE_SHIFT) + k;
                            if !self.frames.state(m).owned() {
                                // A granted frame: the grant layer counts it.
                                continue;
                            }
                            let c = want.entry(m).or_default();
                            c.refs += 1;
                            c.writable += l.writable as u32;
                        }
                    }
                }
            }
        }
        for (v, b) in self.bases.iter().enumerate() {
            for base in b.iter().flatten() {
                let f = self
                    .info(base.table)
                    .ok_or_else(|| format!("vcpu{v} base {:#x} not owned", base.table))?;
                if f.ty != FrameType::PageTable(0) || !f.pinned {
                    return Err(format!("vcpu{v} base {:#x} is {f:?}", base.table));
                }
                let c = want.entry(base.table >> PAGE_SHIFT).or_default();
                c.refs += 1;
                c.table += 1;
            }
        }
        for (n, _) in self.frames.iter() {
            let pa = n << PAGE_SHIFT;
            let c = want.remove(&n).unwrap_or_default();
            let i = self.info(pa).expect("an owned frame");
            let bad = |what: &str| {
                Err(format!(
                    "{pa:#x}: {what}: {i:?}, recount {}/{}w/{}t",
                    c.refs, c.writable, c.table
                ))
            };
            if i.refs != c.refs {
                return bad("reference count");
            }
            match i.ty {
                FrameType::None if i.type_count != 0 || c.writable != 0 || c.table != 0 => {
                    return bad("untyped but used");
                }
                FrameType::Writable if c.table != 0 => return bad("writable and a table"),
                FrameType::Writable if i.type_count != c.writable || i.type_count == 0 => {
                    return bad("writable count");
                }
                FrameType::PageTable(_) if c.writable != 0 => {
                    return bad("page-table page mapped writable");
                }
                FrameType::PageTable(_) if i.type_count != c.table || i.type_count == 0 => {
                    return bad("table count");
                }
                FrameType::PageTable(l) if c.table_level.is_some_and(|w| w != l) => {
                    return bad("linked at the wrong level");
                }
                _ => {}
            }
        }
        if let Some((n, _)) = want.iter().find(|(_, c)| c.table > 0) {
            return Err(format!(
                "a table entry links {:#x}, not the domain's",
                n << PAGE_SHIFT
            ));
        }
        Ok(())
    }
}
