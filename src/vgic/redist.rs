//! GICv3 redistributors (`GICR_*`, IHI 0069 §12.10-12.11): per vCPU an RD_base frame (control,
//! identification, power management) followed by an SGI_base frame (the vCPU's SGI and PPI
//! registers), [`Vgic::REDIST_STRIDE`] bytes in all, laid out one after the other in vCPU order.
//!
//! The frame's position selects the vCPU whose state is accessed, not the accessing vCPU: Linux
//! finds its own redistributor by reading each frame's `GICR_TYPER`. No LPIs: `PROPBASER` and
//! `PENDBASER` are RAZ/WI and `GICR_CTLR.EnableLPIs` stays 0.

use super::dist::{IIDR, id_register};
use super::regs::{self, Bad, Bit, Field, Why, Width};
use super::{Kick, Version, Vgic};

const FRAME: u64 = 0x10000;

const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

const TYPER_LAST: u64 = 1 << 4;

#[derive(Clone, Copy, Debug)]
enum Reg {
    Iidr,
    Typer,
    Waker,
    Id(u64),
    Bits(Bit, bool),
    /// `IPRIORITYR<n>`, from this frame offset.
    Priority(u64),
    Cfg(u32),
    RazWi,
}

impl Vgic {
    /// A guest's read of `size` bytes at `offset` in the redistributor region, by vCPU `vcpu`.
    pub fn redist_read(&mut self, vcpu: usize, offset: u64, size: u8) -> Result<u64, Bad> {
        let (owner, off, reg) = self.redist_access(vcpu, offset, size)?;
        Ok(match reg {
            Reg::Iidr => u64::from(IIDR),
            Reg::Typer => regs::quad_read(self.redist_typer(owner), off, size),
            Reg::Waker => {
                let asleep = self.cpus[owner].asleep;
                u64::from(u32::from(asleep) * (WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP))
            }
            Reg::Id(index) => u64::from(id_register(Version::V3, index)),
            Reg::Bits(bit, _) => u64::from(self.read_bits(owner, 0, bit)),
            Reg::Priority(base) => (0..u64::from(size)).fold(0, |acc, i| {
                let intid = (off + i - base) as u32;
                acc | u64::from(self.read_byte(owner, intid, Field::Priority)) << (8 * i)
            }),
            Reg::Cfg(first) => u64::from(self.read_cfg(owner, first)),
            Reg::RazWi => 0,
        })
    }

    /// A guest's write of `size` bytes at `offset` in the redistributor region, by vCPU `vcpu`.
    pub fn redist_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Kick, Bad> {
        let (owner, off, reg) = self.redist_access(vcpu, offset, size)?;
        Ok(match reg {
            Reg::Waker => {
                let asleep = value as u32 & WAKER_PROCESSOR_SLEEP != 0;
                let changed = self.cpus[owner].asleep != asleep;
                self.cpus[owner].asleep = asleep;
                // Waking a redistributor can make it the choice for 1-of-N SPIs.
                if changed {
                    self.all_vcpus()
                } else {
                    Kick::NONE
                }
            }
            Reg::Bits(bit, set) => self.write_bits(owner, 0, bit, set, value as u32),
            Reg::Priority(base) => (0..u64::from(size)).fold(Kick::NONE, |k, i| {
                let intid = (off + i - base) as u32;
                k | self.write_byte(owner, intid, Field::Priority, (value >> (8 * i)) as u8)
            }),
            Reg::Cfg(first) => self.write_cfg(owner, first, value as u32),
            Reg::Iidr | Reg::Typer | Reg::Id(_) | Reg::RazWi => Kick::NONE,
        })
    }

    /// Checks an access; gives the vCPU whose redistributor it is, the offset in its
    /// RD_base + SGI_base pair, and the register.
    fn redist_access(&self, vcpu: usize, offset: u64, size: u8) -> Result<(usize, u64, Reg), Bad> {
        let bad = |why| Err(Bad { offset, size, why });
        if self.version != Version::V3 {
            return bad(Why::NotV3);
        }
        if vcpu >= self.cpus.len() {
            return bad(Why::NoSuchVcpu);
        }
        regs::check(offset, size, self.redist_size())?;
        let owner = (offset / Self::REDIST_STRIDE) as usize;
        let off = offset % Self::REDIST_STRIDE;
        let (reg, width) = redist_decode(off);
        regs::check_width(offset, size, width, || redist_decode(off + 4).1)?;
        Ok((owner, off, reg))
    }

    fn redist_typer(&self, owner: usize) -> u64 {
        let aff = self.cpus[owner].affinity;
        // Affinity_Value is Aff3.Aff2.Aff1.Aff0, packed.
        let packed = (aff >> 8 & 0xff00_0000) | (aff & 0xff_ffff);
        let last = if owner + 1 == self.cpus.len() {
            TYPER_LAST
        } else {
            0
        };
        packed << 32 | (owner as u64) << 8 | last
    }
}

fn redist_decode(off: u64) -> (Reg, Width) {
    use Width::*;
    match off {
        // CTLR: no LPIs to enable, nothing in flight (RWP, UWP 0).
        0x0000..0x0004 => (Reg::RazWi, Word),
        0x0004..0x0008 => (Reg::Iidr, Word),
        0x0008..0x0010 => (Reg::Typer, Quad),
        // STATUSR: no errors recorded.
        0x0010..0x0014 => (Reg::RazWi, Word),
        0x0014..0x0018 => (Reg::Waker, Word),
        // PROPBASER, PENDBASER
        0x0070..0x0080 => (Reg::RazWi, Quad),
        0xffd0..0x10000 => (Reg::Id((off - 0xffd0) / 4), Word),
        _ if off < FRAME => (Reg::RazWi, Reserved),
        _ => sgi_decode(off - FRAME),
    }
}

fn sgi_decode(off: u64) -> (Reg, Width) {
    use Width::*;
    match off {
        0x0080..0x0084 => (Reg::Bits(Bit::Group, true), Word),
        0x0100..0x0104 => (Reg::Bits(Bit::Enable, true), Word),
        0x0180..0x0184 => (Reg::Bits(Bit::Enable, false), Word),
        0x0200..0x0204 => (Reg::Bits(Bit::Pending, true), Word),
        0x0280..0x0284 => (Reg::Bits(Bit::Pending, false), Word),
        0x0300..0x0304 => (Reg::Bits(Bit::Active, true), Word),
        0x0380..0x0384 => (Reg::Bits(Bit::Active, false), Word),
        0x0400..0x0420 => (Reg::Priority(FRAME + 0x400), Byte),
        0x0c00..0x0c04 => (Reg::Cfg(0), Word),
        0x0c04..0x0c08 => (Reg::Cfg(16), Word),
        // IGRPMODR0, NSACR: single security state.
        0x0d00..0x0d04 | 0x0e00..0x0e04 => (Reg::RazWi, Word),
        _ => (Reg::RazWi, Reserved),
    }
}
