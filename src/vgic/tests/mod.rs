//! Host tests of the vGIC: registers as a guest programs them, SGIs, routing, the LR cycle with a
//! model of the guest's virtual CPU interface, and fuzzing of every entry point.

mod delivery;
mod exit_path;
mod fuzz;
mod hw;
mod lrs;
mod mmio;
mod sgi;

use alloc::vec;
use alloc::vec::Vec;

use super::*;

pub(super) const NLRS: usize = 4;

pub(super) use crate::testutil::Rng;
pub(super) fn gic(version: Version, vcpus: usize) -> Vgic {
    Vgic::new(Config {
        version,
        vcpus,
        spis: 64,
        mpidrs: (0..vcpus as u64).collect(),
    })
}

pub(super) fn rd(g: &mut Vgic, off: u64) -> u32 {
    g.dist_read(0, off, 4).unwrap() as u32
}

pub(super) fn wr(g: &mut Vgic, off: u64, v: u32) -> Kick {
    g.dist_write(0, off, 4, u64::from(v)).unwrap()
}

/// SGI_base register of vCPU `v`'s redistributor.
pub(super) fn sgi_base(v: usize, off: u64) -> u64 {
    v as u64 * Vgic::REDIST_STRIDE + 0x10000 + off
}

/// Sets a bit of a one-bit-per-interrupt distributor bank (`base` = the set register).
pub(super) fn set_bit(g: &mut Vgic, vcpu: usize, base: u64, intid: u32) -> Kick {
    let off = base + u64::from(intid / 32) * 4;
    g.dist_write(vcpu, off, 4, 1 << (intid % 32)).unwrap()
}

/// A guest that has brought its GIC up the way Linux does: distributor on for both groups,
/// every SPI routed to vCPU 0 and enabled, every SGI and PPI enabled, priority 0xa0.
pub(super) fn booted(version: Version, vcpus: usize) -> Vgic {
    let mut g = gic(version, vcpus);
    wr(&mut g, 0x0, 3);
    for intid in (32u64..96).step_by(4) {
        wr(&mut g, 0x400 + intid, 0xa0a0_a0a0);
    }
    for n in 1..3 {
        wr(&mut g, 0x100 + 4 * n, !0);
    }
    for v in 0..vcpus {
        match version {
            Version::V2 => {
                for off in (0..32).step_by(4) {
                    g.dist_write(v, 0x400 + off, 4, 0xa0a0_a0a0).unwrap();
                }
                g.dist_write(v, 0x100, 4, 0xffff_ffff).unwrap();
            }
            Version::V3 => {
                g.redist_write(v, v as u64 * Vgic::REDIST_STRIDE + 0x14, 4, 0)
                    .unwrap();
                for off in (0..32).step_by(4) {
                    g.redist_write(v, sgi_base(v, 0x400 + off), 4, 0xa0a0_a0a0)
                        .unwrap();
                }
                g.redist_write(v, sgi_base(v, 0x100), 4, 0xffff_ffff)
                    .unwrap();
            }
        }
    }
    if version == Version::V2 {
        for intid in (32u64..96).step_by(4) {
            wr(&mut g, 0x800 + intid, 0x0101_0101);
        }
    }
    g
}

/// Sets one interrupt's priority through the distributor (SPIs, or v2 private ones of `vcpu`).
pub(super) fn set_priority(g: &mut Vgic, vcpu: usize, intid: u32, prio: u8) {
    if intid < 32 && g.version() == Version::V3 {
        let off = sgi_base(vcpu, 0x400 + u64::from(intid));
        g.redist_write(vcpu, off, 1, u64::from(prio)).unwrap();
    } else {
        g.dist_write(vcpu, 0x400 + u64::from(intid), 1, u64::from(prio))
            .unwrap();
    }
}

/// A vCPU's list registers plus the guest's side of the virtual CPU interface: acknowledge the
/// highest-priority pending interrupt, EOI (drop and deactivate) an active one.
pub(super) struct Cpu {
    pub vcpu: usize,
    pub lrs: Vec<Lr>,
}

impl Cpu {
    pub fn new(vcpu: usize) -> Self {
        Self {
            vcpu,
            lrs: vec![Lr::INVALID; NLRS],
        }
    }

    pub fn fill(&mut self, g: &mut Vgic) -> Fill {
        let f = g.fill_lrs(self.vcpu, &mut self.lrs);
        let mut seen: Vec<(u32, u8)> = self
            .lrs
            .iter()
            .filter(|l| l.state != LrState::Invalid)
            .map(|l| (l.intid, l.source))
            .collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen.len(),
            n,
            "an interrupt twice in the LRs: {:?}",
            self.lrs
        );
        f
    }

    pub fn sync(&mut self, g: &mut Vgic) {
        g.sync_lrs(self.vcpu, &self.lrs);
    }

    /// `IAR`: the highest-priority pending LR becomes active. Like the hardware, an interrupt
    /// that is pending and active cannot be acknowledged again.
    pub fn ack(&mut self) -> Option<(u32, u8)> {
        let lr = self
            .lrs
            .iter_mut()
            .filter(|l| l.state == LrState::Pending)
            .min_by_key(|l| (l.priority, l.intid))?;
        lr.state = LrState::Active;
        Some((lr.intid, lr.source))
    }

    /// `EOIR` with EOImode 0: deactivates the LR of `intid`.
    pub fn eoi(&mut self, intid: u32) {
        let lr = self
            .lrs
            .iter_mut()
            .find(|l| l.intid == intid && l.state.active())
            .expect("EOI of an interrupt that is not active");
        lr.state = if lr.state.pending() {
            LrState::Pending
        } else {
            LrState::Invalid
        };
    }

    /// One run: fill, let the guest take and finish everything it can, sync. Gives what the
    /// guest took, in order.
    pub fn run(&mut self, g: &mut Vgic) -> Vec<(u32, u8)> {
        self.fill(g);
        let mut taken = Vec::new();
        while let Some(t) = self.ack() {
            self.eoi(t.0);
            taken.push(t);
        }
        self.sync(g);
        taken
    }

    pub fn state_of(&self, intid: u32) -> LrState {
        self.lrs
            .iter()
            .find(|l| l.intid == intid && l.state != LrState::Invalid)
            .map_or(LrState::Invalid, |l| l.state)
    }

    pub fn lr_of(&self, intid: u32) -> Option<Lr> {
        self.lrs
            .iter()
            .find(|l| l.intid == intid && l.state != LrState::Invalid)
            .copied()
    }
}

/// Runs until nothing more is taken; everything taken, in order.
pub(super) fn drain(g: &mut Vgic, cpu: &mut Cpu) -> Vec<u32> {
    let mut all = Vec::new();
    for _ in 0..64 {
        let t = cpu.run(g);
        if t.is_empty() {
            break;
        }
        all.extend(t.into_iter().map(|(i, _)| i));
    }
    all
}
