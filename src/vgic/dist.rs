//! The distributor frame (`GICD_*`), for both versions.
//!
//! GICv2 (IHI 0048B §4.3): a 4 KiB frame; SGI and PPI registers are banked per accessing CPU;
//! `ITARGETSR` routes SPIs; `SGIR`, `CPENDSGIR` and `SPENDSGIR` send and manage SGIs; the ID
//! registers sit at 0xFD0-0xFFC. The rest of the trapped 64 KiB reads as zero.
//!
//! GICv3 (IHI 0069 §12.9): affinity routing is always on, so the SGI and PPI parts of the
//! per-interrupt registers are RAZ/WI here (they live in the redistributors), `ITARGETSR` and
//! the GICv2 SGI registers are gone, and `IROUTER<n>` routes SPIs; the ID registers sit at
//! 0xFFD0-0xFFFC.

use super::regs::{self, Bad, Bit, Field, Why, Width};
use super::{AFFINITY_MASK, Kick, Version, Vgic};

/// `GICD_IIDR` and `GICR_IIDR`: ProductID 0x46 ('F'), variant and revision 0, implementer Arm
/// (JEP106 0x43B) as the architecture's software expects from a virtual GIC.
pub(super) const IIDR: u32 = 0x4600_043b;

const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;

const IROUTER_IRM: u64 = 1 << 31;

/// A decoded distributor register.
#[derive(Clone, Copy, Debug)]
enum Reg {
    Ctlr,
    Typer,
    Iidr,
    /// Set (`true`) or clear register of a bit bank, its first INTID.
    Bits(Bit, bool, u32),
    /// A byte bank starting at this frame offset with INTID 0.
    Bytes(Field, u64),
    Cfg(u32),
    Sgir,
    /// `SPENDSGIR` (`true`) or `CPENDSGIR`, starting at this frame offset with SGI 0.
    SgiPend(bool, u64),
    Irouter(u32),
    /// Identification register, its index from `PIDR4`.
    Id(u64),
    RazWi,
}

impl Vgic {
    /// A guest's read of `size` bytes at `offset` in the distributor frame.
    pub fn dist_read(&mut self, vcpu: usize, offset: u64, size: u8) -> Result<u64, Bad> {
        let reg = self.dist_access(vcpu, offset, size)?;
        let v3 = self.version == Version::V3;
        Ok(match reg {
            Reg::Ctlr => {
                let mut v = 0;
                if self.enable_grp0 {
                    v |= CTLR_ENABLE_GRP0;
                }
                if self.enable_grp1 {
                    v |= CTLR_ENABLE_GRP1;
                }
                if v3 {
                    v |= CTLR_ARE | CTLR_DS;
                }
                u64::from(v)
            }
            Reg::Typer => u64::from(self.dist_typer()),
            Reg::Iidr => u64::from(IIDR),
            Reg::Bits(bit, _, first) => u64::from(self.read_bits(vcpu, first, bit)),
            Reg::Bytes(what, base) => (0..u64::from(size)).fold(0, |acc, i| {
                let intid = (offset + i - base) as u32;
                acc | u64::from(self.read_byte(vcpu, intid, what)) << (8 * i)
            }),
            Reg::Cfg(first) => u64::from(self.read_cfg(vcpu, first)),
            Reg::SgiPend(_, base) => (0..u64::from(size)).fold(0, |acc, i| {
                let sgi = (offset + i - base) as usize;
                acc | u64::from(self.sgi_pending_sources(vcpu, sgi)) << (8 * i)
            }),
            Reg::Irouter(intid) => {
                let route = self.spis.get(intid as usize - 32).map_or(0, |q| q.route);
                regs::quad_read(route, offset, size)
            }
            Reg::Id(index) => u64::from(id_register(self.version, index)),
            Reg::Sgir | Reg::RazWi => 0,
        })
    }

    /// A guest's write of `size` bytes at `offset` in the distributor frame.
    pub fn dist_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Kick, Bad> {
        let reg = self.dist_access(vcpu, offset, size)?;
        let word = value as u32;
        Ok(match reg {
            Reg::Ctlr => {
                let (grp0, grp1) = (word & CTLR_ENABLE_GRP0 != 0, word & CTLR_ENABLE_GRP1 != 0);
                let changed = (grp0, grp1) != (self.enable_grp0, self.enable_grp1);
                self.enable_grp0 = grp0;
                self.enable_grp1 = grp1;
                if changed {
                    self.all_vcpus()
                } else {
                    Kick::NONE
                }
            }
            Reg::Bits(bit, set, first) => self.write_bits(vcpu, first, bit, set, word),
            Reg::Bytes(what, base) => (0..u64::from(size)).fold(Kick::NONE, |k, i| {
                let intid = (offset + i - base) as u32;
                k | self.write_byte(vcpu, intid, what, (value >> (8 * i)) as u8)
            }),
            Reg::Cfg(first) => self.write_cfg(vcpu, first, word),
            Reg::Sgir => self.sgir(vcpu, word),
            Reg::SgiPend(set, base) => (0..u64::from(size)).fold(Kick::NONE, |k, i| {
                let sgi = (offset + i - base) as usize;
                k | self.write_sgi_pending(vcpu, sgi, set, (value >> (8 * i)) as u8)
            }),
            Reg::Irouter(intid) => self.write_irouter(intid, offset, size, value),
            Reg::Typer | Reg::Iidr | Reg::Id(_) | Reg::RazWi => Kick::NONE,
        })
    }

    fn dist_access(&self, vcpu: usize, offset: u64, size: u8) -> Result<Reg, Bad> {
        if vcpu >= self.cpus.len() {
            return Err(Bad {
                offset,
                size,
                why: Why::NoSuchVcpu,
            });
        }
        regs::check(offset, size, Self::DIST_SIZE)?;
        let (reg, width) = self.dist_decode(offset);
        regs::check_width(offset, size, width, || self.dist_decode(offset + 4).1)?;
        Ok(reg)
    }

    fn dist_decode(&self, offset: u64) -> (Reg, Width) {
        use Width::*;
        let v3 = self.version == Version::V3;
        let word = offset & !3;
        // One bit per interrupt; with affinity routing the SGI/PPI word is the redistributor's.
        let bits = |base: u64, bit, set| {
            let first = ((word - base) * 8) as u32;
            if v3 && first < 32 {
                (Reg::RazWi, Word)
            } else {
                (Reg::Bits(bit, set, first), Word)
            }
        };
        match offset {
            0x0000..0x0004 => (Reg::Ctlr, Word),
            0x0004..0x0008 => (Reg::Typer, Word),
            0x0008..0x000c => (Reg::Iidr, Word),
            // TYPER2, STATUSR
            0x000c..0x0014 if v3 => (Reg::RazWi, Word),
            0x0080..0x0100 => bits(0x080, Bit::Group, true),
            0x0100..0x0180 => bits(0x100, Bit::Enable, true),
            0x0180..0x0200 => bits(0x180, Bit::Enable, false),
            0x0200..0x0280 => bits(0x200, Bit::Pending, true),
            0x0280..0x0300 => bits(0x280, Bit::Pending, false),
            0x0300..0x0380 => bits(0x300, Bit::Active, true),
            0x0380..0x0400 => bits(0x380, Bit::Active, false),
            0x0400..0x0420 if v3 => (Reg::RazWi, Byte),
            0x0400..0x07fc => (Reg::Bytes(Field::Priority, 0x400), Byte),
            0x0800..0x0c00 if v3 => (Reg::RazWi, Byte),
            0x0800..0x0bfc => (Reg::Bytes(Field::Targets, 0x800), Byte),
            0x0c00..0x0c08 if v3 => (Reg::RazWi, Word),
            0x0c00..0x0d00 => (Reg::Cfg(((word - 0xc00) * 4) as u32), Word),
            // IGRPMODR: a guest with a single security state has no Secure Group 1.
            0x0d00..0x0d80 if v3 => (Reg::RazWi, Word),
            // NSACR: non-secure access control has no meaning without security states.
            0x0e00..0x0f00 => (Reg::RazWi, Word),
            0x0f00..0x0f04 if !v3 => (Reg::Sgir, Word),
            0x0f10..0x0f20 if !v3 => (Reg::SgiPend(false, 0xf10), Byte),
            0x0f20..0x0f30 if !v3 => (Reg::SgiPend(true, 0xf20), Byte),
            0x0fd0..0x1000 if !v3 => (Reg::Id((word - 0xfd0) / 4), Word),
            0x6000..0x6100 if v3 => (Reg::RazWi, Quad),
            0x6100..0x7fe0 if v3 => (Reg::Irouter(((offset - 0x6000) / 8) as u32), Quad),
            0xffd0..0x10000 if v3 => (Reg::Id((word - 0xffd0) / 4), Word),
            _ => (Reg::RazWi, Reserved),
        }
    }

    fn dist_typer(&self) -> u32 {
        let it_lines = (32 + self.spis.len() as u32).div_ceil(32) - 1;
        match self.version {
            Version::V2 => it_lines | (self.cpus.len() as u32 - 1) << 5,
            Version::V3 => {
                // IDbits: 10 INTID bits. RSS when some vCPU's Aff0 needs SGI1R.RS.
                let rss = self.cpus.iter().any(|c| c.affinity & 0xff > 15);
                it_lines | 9 << 19 | u32::from(rss) << 26
            }
        }
    }

    /// GICv2 `GICD_SGIR`: TargetListFilter 0 (the list), 1 (all but the sender), 2 (the sender).
    fn sgir(&mut self, vcpu: usize, value: u32) -> Kick {
        let intid = (value & 0xf) as usize;
        let list = (value >> 16) as u8;
        let all = self.v2_cpu_mask();
        let targets = match value >> 24 & 3 {
            0 => list & all,
            1 => all & !(1 << vcpu),
            2 => 1 << vcpu,
            _ => 0,
        };
        let mut kick = Kick::NONE;
        for (t, cpu) in self.cpus.iter_mut().enumerate() {
            if targets >> t & 1 != 0 {
                cpu.irqs[intid].sgi_sources |= 1 << vcpu;
                cpu.live |= 1 << intid;
                kick |= Kick(1 << t);
            }
        }
        kick
    }

    /// The sources from which SGI `sgi` of `vcpu` is pending, in the vGIC or in an LR.
    fn sgi_pending_sources(&self, vcpu: usize, sgi: usize) -> u8 {
        let irq = &self.cpus[vcpu].irqs[sgi];
        let in_lr = irq
            .in_lr
            .filter(|l| l.state.pending() && !irq.cancel_pending)
            .map_or(0, |l| 1 << l.source);
        irq.sgi_sources | in_lr
    }

    fn write_sgi_pending(&mut self, vcpu: usize, sgi: usize, set: bool, sources: u8) -> Kick {
        let sources = sources & self.v2_cpu_mask();
        if sources == 0 {
            return Kick::NONE;
        }
        let cpu = &mut self.cpus[vcpu];
        cpu.live |= 1 << sgi;
        let irq = &mut cpu.irqs[sgi];
        if set {
            irq.sgi_sources |= sources;
        } else {
            irq.sgi_sources &= !sources;
            if irq
                .in_lr
                .is_some_and(|l| l.state.pending() && sources >> l.source & 1 != 0)
            {
                irq.cancel_pending = true;
            }
        }
        Kick(1 << vcpu)
    }

    fn write_irouter(&mut self, intid: u32, offset: u64, size: u8, value: u64) -> Kick {
        let before = self.kick_for(0, intid);
        let Some(irq) = self.spis.get_mut(intid as usize - 32) else {
            return Kick::NONE;
        };
        let route = regs::quad_write(irq.route, offset, size, value);
        irq.route = route & (AFFINITY_MASK | IROUTER_IRM);
        before | self.kick_for(0, intid)
    }
}

/// `PIDR4`-`PIDR7`, `PIDR0`-`PIDR3`, `CIDR0`-`CIDR3`, by index: an Arm GIC of the given
/// architecture revision (`PIDR2.ArchRev`), as Linux and firmware probe for.
pub(super) fn id_register(version: Version, index: u64) -> u32 {
    let arch_rev = match version {
        Version::V2 => 2,
        Version::V3 => 3,
    };
    match index {
        0 => 0x04,
        4 => 0x92,
        5 => 0xb4,
        6 => arch_rev << 4 | 0xb,
        8 => 0x0d,
        9 => 0xf0,
        10 => 0x05,
        11 => 0xb1,
        _ => 0,
    }
}
