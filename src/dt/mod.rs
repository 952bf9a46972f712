//! Device-tree handling: parsing the host's flattened device tree into a [`MachineInfo`] (what
//! machine Ferrite runs on: RAM, reservations, CPUs, console UART, GIC, timer, PSCI, boot
//! modules) and writing new blobs ([`FdtWriter`]) such as the tree dom0 will boot with.
//!
//! The blob comes from firmware and is not trusted: [`parse`] validates it completely before
//! reading it and never panics, whatever the bytes. Problems that make the whole blob unusable
//! are a [`DtError`]; a node that cannot be understood is skipped with a line in
//! [`MachineInfo::warnings`].

pub mod dom0;
mod error;
mod info;
mod machine;
pub mod ranges;
mod tree;
mod validate;
pub mod writer;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

pub use error::DtError;
pub use info::*;
pub use validate::total_size;
pub use writer::FdtWriter;

use alloc::borrow::Cow;

use crate::mm::region;
use validate::{FDT_MAGIC, HEADER_SIZE, MAX_TOTAL_SIZE};

/// Parses the flattened device tree at the start of `dtb` (which may be longer than the blob).
pub fn parse(dtb: &[u8]) -> Result<MachineInfo, DtError> {
    let size = total_size(dtb)?;
    let blob = dtb.get(..size).ok_or(DtError::Truncated {
        total_size: size,
        available: dtb.len(),
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
    let tree = tree::Tree::new(&fdt).ok_or(malformed)?;

    let mut x = machine::Extractor {
        tree: &tree,
        warnings: alloc::vec::Vec::new(),
    };
    let memory = x.memory()?;
    let (mut reserved, ignored_reserved) = x.reserved_memory();
    reserved.extend(checked.reservations);
    region::merge(&mut reserved);
    Ok(MachineInfo {
        model: x.model(),
        memory,
        reserved,
        ignored_reserved,
        cpus: x.cpus(),
        uart: x.uart(),
        gic: x.gic(),
        timer: x.timer(),
        psci: x.psci(),
        bootargs: x.bootargs(),
        initrd: x.initrd(),
        modules: x.modules(),
        warnings: x.warnings,
    })
}
