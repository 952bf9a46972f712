//! What distributor and redistributor registers have in common: access checking ([`Bad`]),
//! access widths, and the per-interrupt register banks (one bit, one byte or two bits per
//! interrupt) that both frames carry.

use core::fmt;

use super::{Kick, Version, Vgic};

/// A guest access the vGIC refuses; the arch code turns it into a fault for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bad {
    pub offset: u64,
    pub size: u8,
    pub why: Why,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Not a 1, 2, 4 or 8-byte access, or not a size the register allows.
    Size,
    /// Not naturally aligned.
    Unaligned,
    /// Beyond the frame (or the redistributor region).
    OutsideFrame,
    /// The accessing vCPU does not exist.
    NoSuchVcpu,
    /// A redistributor access on a GICv2 vGIC.
    NotV3,
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.why {
            Why::Size => "access size not supported",
            Why::Unaligned => "unaligned access",
            Why::OutsideFrame => "offset outside the frame",
            Why::NoSuchVcpu => "no such vCPU",
            Why::NotV3 => "no redistributors on a GICv2",
        };
        write!(
            f,
            "vGIC: {}-byte access at {:#x}: {why}",
            self.size, self.offset
        )
    }
}

/// The access sizes a register accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// 32-bit only.
    Word,
    /// Byte or 32-bit.
    Byte,
    /// 64-bit, or 32-bit to either half.
    Quad,
    /// Reserved space: any aligned access, read as zero, writes ignored.
    Reserved,
}

/// Checks the size, alignment and range of an access to a frame of `frame` bytes.
pub(super) fn check(offset: u64, size: u8, frame: u64) -> Result<(), Bad> {
    let bad = |why| Err(Bad { offset, size, why });
    if !matches!(size, 1 | 2 | 4 | 8) {
        return bad(Why::Size);
    }
    if offset >= frame || frame - offset < u64::from(size) {
        return bad(Why::OutsideFrame);
    }
    if !offset.is_multiple_of(u64::from(size)) {
        return bad(Why::Unaligned);
    }
    Ok(())
}

/// Checks `size` against a register's width, given the width of the register the second half of
/// an 8-byte access lands in.
pub(super) fn check_width(
    offset: u64,
    size: u8,
    width: Width,
    next: impl FnOnce() -> Width,
) -> Result<(), Bad> {
    let ok = match (width, size) {
        (Width::Word, 4) | (Width::Byte, 1 | 4) | (Width::Quad, 4 | 8) => true,
        (Width::Reserved, 8) => next() == Width::Reserved,
        (Width::Reserved, _) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Bad {
            offset,
            size,
            why: Why::Size,
        })
    }
}

/// Reads one half of a 64-bit register for a 32-bit access at `offset`.
pub(super) fn quad_read(value: u64, offset: u64, size: u8) -> u64 {
    match size {
        8 => value,
        _ if offset & 4 != 0 => value >> 32,
        _ => value & 0xffff_ffff,
    }
}

/// Merges a write of `size` bytes at `offset` into a 64-bit register.
pub(super) fn quad_write(old: u64, offset: u64, size: u8, value: u64) -> u64 {
    match size {
        8 => value,
        _ if offset & 4 != 0 => old & 0xffff_ffff | value << 32,
        _ => old & !0xffff_ffff | value & 0xffff_ffff,
    }
}

/// The one-bit-per-interrupt registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bit {
    Group,
    Enable,
    Pending,
    Active,
}

/// The one-byte-per-interrupt registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Priority,
    Targets,
}

impl Vgic {
    /// A 32-bit read of a bit bank covering `first..first + 32`, SGIs and PPIs from `bank`.
    pub(super) fn read_bits(&self, bank: usize, first: u32, bit: Bit) -> u32 {
        (0..32).fold(0, |acc, i| {
            let set = self.irq(bank, first + i).is_some_and(|q| match bit {
                Bit::Group => q.group1,
                Bit::Enable => q.enabled,
                Bit::Pending => q.pending(),
                Bit::Active => q.is_active(),
            });
            acc | u32::from(set) << i
        })
    }

    /// A 32-bit write of a set (`set`) or clear register of a bit bank; `Group` is a plain
    /// read/write register and ignores `set`.
    pub(super) fn write_bits(
        &mut self,
        bank: usize,
        first: u32,
        bit: Bit,
        set: bool,
        value: u32,
    ) -> Kick {
        let v2 = self.version == Version::V2;
        let mut kick = Kick::NONE;
        for i in 0..32 {
            let intid = first + i;
            let one = value >> i & 1 != 0;
            if bit != Bit::Group && !one {
                continue;
            }
            // Kick the owner before the change too: an interrupt leaving an LR (disabled,
            // cleared, moved) needs that vCPU to rebuild its LRs.
            kick |= self.kick_for(bank, intid);
            let Some(irq) = self.irq_mut(bank, intid) else {
                break;
            };
            match bit {
                Bit::Group => irq.group1 = one,
                Bit::Enable => {
                    let was = irq.enabled;
                    irq.enabled = set;
                    if let Some(p) = irq.hw.filter(|_| intid >= 32) {
                        // A physical interrupt is level in hardware: what was latched while the
                        // guest had it disabled may be stale (the device may have dropped its
                        // line since), so the hardware decides again once it is enabled. The
                        // physical interrupt is still active for that latch: deactivated, it
                        // fires again if the line is still high.
                        if set && !was && irq.in_lr.is_none() && irq.latch {
                            irq.latch = false;
                            if !irq.active {
                                self.hw_deactivations.push(p);
                            }
                        }
                        self.hw_enables.push((p, set));
                    }
                }
                // GICv2 SGIs are made pending per source, through SPENDSGIR/CPENDSGIR only.
                Bit::Pending if v2 && intid < 16 => {}
                Bit::Pending if set => irq.set_pending(None),
                Bit::Pending => {
                    let dropped = irq.latch && irq.in_lr.is_none() && !irq.active;
                    irq.clear_pending();
                    if let Some(p) = irq.hw.filter(|_| dropped && intid >= 32) {
                        self.hw_deactivations.push(p);
                    }
                }
                Bit::Active => {
                    irq.set_active(set);
                    if !irq.active && irq.in_lr.is_none() {
                        irq.holder = None;
                    }
                }
            }
            if bit == Bit::Active && set && intid >= 32 {
                self.hold_active_spi(intid);
            }
            kick |= self.kick_for(bank, intid);
        }
        kick
    }

    /// An SPI made active by a register write stays with the vCPU it is routed to, so that the
    /// guest can deactivate it there.
    fn hold_active_spi(&mut self, intid: u32) {
        let idx = intid as usize - 32;
        if self.spis[idx].holder.is_none() {
            self.spis[idx].holder = self.spi_target(&self.spis[idx]).map(|v| v as u8);
        }
    }

    /// Reads one byte of a byte bank: `intid`'s field, SGIs and PPIs from `bank`.
    pub(super) fn read_byte(&self, bank: usize, intid: u32, what: Field) -> u8 {
        let Some(irq) = self.irq(bank, intid) else {
            return 0;
        };
        match what {
            Field::Priority => irq.priority,
            // SGI and PPI targets read as the accessing CPU itself.
            Field::Targets if intid < 32 => 1 << bank,
            Field::Targets => irq.targets,
        }
    }

    pub(super) fn write_byte(&mut self, bank: usize, intid: u32, what: Field, value: u8) -> Kick {
        let cpu_mask = self.v2_cpu_mask();
        let before = self.kick_for(bank, intid);
        let Some(irq) = self.irq_mut(bank, intid) else {
            return Kick::NONE;
        };
        match what {
            Field::Priority => irq.set_priority(value),
            Field::Targets if intid < 32 => {}
            Field::Targets => irq.targets = value & cpu_mask,
        }
        before | self.kick_for(bank, intid)
    }

    /// Reads an `ICFGR` word covering `first..first + 16`.
    pub(super) fn read_cfg(&self, bank: usize, first: u32) -> u32 {
        (0..16).fold(0, |acc, i| {
            let edge = self.irq(bank, first + i).is_some_and(|q| q.edge);
            acc | u32::from(edge) << (2 * i + 1)
        })
    }

    /// Writes an `ICFGR` word. SGIs are always edge-triggered; PPIs and SPIs take the write.
    pub(super) fn write_cfg(&mut self, bank: usize, first: u32, value: u32) -> Kick {
        let mut kick = Kick::NONE;
        for i in 0..16 {
            let intid = first + i;
            if intid < 16 {
                continue;
            }
            let Some(irq) = self.irq_mut(bank, intid) else {
                break;
            };
            let edge = value >> (2 * i + 1) & 1 != 0;
            if irq.edge != edge {
                irq.edge = edge;
                kick |= self.kick_for(bank, intid);
            }
        }
        kick
    }
}
