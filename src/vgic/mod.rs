//! The virtual GIC: a guest's interrupt controller (GICv2 or GICv3, as the guest's device tree
//! says), as the guest sees it through its distributor and redistributors, and the bridge to the
//! hardware's virtual CPU interface through list registers (LRs).
//!
//! This module is the state machine only; it touches no hardware. The arch code:
//! - traps the guest's accesses to the distributor frame ([`Vgic::DIST_SIZE`] bytes) and, for
//!   GICv3, the redistributor region ([`Vgic::REDIST_STRIDE`] bytes per vCPU, RD_base then
//!   SGI_base) and forwards them to [`Vgic::dist_read`], [`Vgic::dist_write`],
//!   [`Vgic::redist_read`], [`Vgic::redist_write`]; a [`Bad`] becomes a fault for the guest;
//! - traps GICv3 guests' `ICC_SGI1R_EL1` (and `ICC_SGI0R_EL1`) writes to [`Vgic::sgi1r_write`]
//!   ([`Vgic::sgi0r_write`]);
//! - feeds device and timer lines with [`Vgic::set_level`] and [`Vgic::inject`], and declares
//!   physical interrupts passed through with [`Vgic::link_hw`];
//! - before running a vCPU calls [`Vgic::fill_lrs`] and writes the LRs to `ICH_LR<n>_EL2` or
//!   `GICH_LR<n>` with [`lr::encode_v3`] / [`lr::encode_v2`] (enabling the underflow maintenance
//!   interrupt when [`Fill::underflow`]); after the run reads them back, decodes them and calls
//!   [`Vgic::sync_lrs`]. Every fill must be followed by a sync before the next fill of that vCPU
//!   (a fill without one first folds the LRs it is given);
//! - acts on every [`Kick`]: wakes the vCPUs named if they are blocked, interrupts them with an
//!   IPI if they are running on another CPU, so that they sync and fill again;
//! - asks [`Vgic::has_pending`] before blocking a vCPU on WFI.
//!
//! Fill, sync and `has_pending` run on every exit: their cost is in the interrupts that are
//! pending, active or in an LR and in the number of LRs, not in the number of interrupts, and
//! they do not allocate (see `live`).
//!
//! ```text
//! pub enum Version { V2, V3 }
//! pub struct Config { version, vcpus, spis, mpidrs }
//! impl Vgic {
//!     pub fn new(cfg: Config) -> Vgic;
//!     pub fn dist_read(&mut self, vcpu: usize, offset: u64, size: u8) -> Result<u64, Bad>;
//!     pub fn dist_write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> Result<Kick, Bad>;
//!     pub fn redist_read(&mut self, vcpu: usize, offset: u64, size: u8) -> Result<u64, Bad>;
//!     pub fn redist_write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> Result<Kick, Bad>;
//!     pub fn sgi1r_write(&mut self, vcpu: usize, value: u64) -> Kick;
//!     pub fn sgi0r_write(&mut self, vcpu: usize, value: u64) -> Kick;
//!     pub fn set_level(&mut self, intid: u32, vcpu: Option<usize>, level: bool) -> Kick;
//!     pub fn inject(&mut self, intid: u32, vcpu: Option<usize>) -> Kick;
//!     pub fn link_hw(&mut self, intid: u32, vcpu: Option<usize>, pintid: Option<u32>);
//!     pub fn fill_lrs(&mut self, vcpu: usize, lrs: &mut [Lr]) -> Fill;
//!     pub fn sync_lrs(&mut self, vcpu: usize, lrs: &[Lr]);
//!     pub fn has_pending(&self, vcpu: usize) -> bool;
//!     pub fn pending_irqs(&self, vcpu: usize) -> Vec<u32>;
//! }
//! ```
//!
//! What the guest sees: a GIC with a single security state (`GICD_CTLR.DS` = 1 on GICv3, no
//! Security Extensions on GICv2), both interrupt groups, five priority bits, no LPIs or ITS, no
//! message-based SPIs, and on GICv3 affinity routing always on. INTIDs 0-15 are SGIs, 16-31 PPIs
//! (banked per vCPU), 32 and up SPIs. Priority masking, preemption and the guest's
//! acknowledge/EOI are the hardware's work; enable and group gating, routing and the pending and
//! active states are this module's. The ID registers sit where each architecture puts them:
//! `GICD_PIDR2` at 0xFFE8 on GICv3, at 0xFE8 (end of the 4 KiB GICv2 frame) on GICv2.
//!
//! Routing: a GICv2 SPI goes to the lowest-numbered vCPU in its `ITARGETSR`; a GICv3 SPI to the
//! vCPU whose MPIDR matches its `IROUTER`, or with `Interrupt_Routing_Mode` = 1 to the
//! lowest-numbered vCPU whose redistributor is awake (`GICR_WAKER.ProcessorSleep` = 0). An SPI
//! stays with the vCPU that has it in an LR or active until the guest is done with it there, so
//! interrupts left in the LRs of a vCPU that never runs again (sync it before parking it) stay
//! with that vCPU.
//!
//! Hardware-backed interrupts ([`Vgic::link_hw`]) are treated as edges: the physical GIC keeps
//! the level, the arch code injects each time the physical interrupt fires, and the guest's
//! deactivation (LR `HW` = 1) deactivates the physical interrupt so it can fire again. The guest's
//! `ICPENDR`/`ISACTIVER` writes to such an interrupt change only the virtual state.

// Parts of the API (debugging, GICv3 Group 0 SGIs, accessors) have no caller in the image yet.
#![cfg_attr(not(test), allow(dead_code))]

mod deliver;
mod dist;
mod irq;
mod live;
pub mod lr;
mod redist;
mod regs;

#[cfg(test)]
mod tests;

use alloc::vec::Vec;

pub use lr::{Lr, LrState};
pub use regs::{Bad, Why};

use irq::Irq;

/// The architecture version the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

/// The shape of a guest's GIC.
#[derive(Clone, Debug)]
pub struct Config {
    pub version: Version,
    /// At most 8 for GICv2, 64 for GICv3.
    pub vcpus: usize,
    /// Number of SPIs (INTIDs 32 and up): rounded up to a multiple of 32, at most 988.
    pub spis: u32,
    /// Each vCPU's `MPIDR_EL1` (its affinity fields are used): GICv3 routing, `GICR_TYPER` and
    /// SGI targets. Missing entries default to Aff0 = the vCPU number.
    pub mpidrs: Vec<u64>,
}

impl Config {
    /// Why this configuration cannot be built as is ([`Vgic::new`] clamps instead).
    pub fn check(&self) -> Result<(), &'static str> {
        let max = match self.version {
            Version::V2 => 8,
            Version::V3 => 64,
        };
        if self.vcpus == 0 || self.vcpus > max {
            return Err("vcpus out of range for this GIC version");
        }
        if self.spis > MAX_SPIS {
            return Err("more than 988 SPIs");
        }
        if self.mpidrs.len() < self.vcpus && self.version == Version::V3 {
            return Err("an MPIDR per vCPU is needed");
        }
        Ok(())
    }
}

const MAX_SPIS: u32 = 988;
const AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// vCPUs whose interrupt state changed: each must be woken if blocked, or sent an IPI if running
/// elsewhere, so that it syncs its LRs and fills them again. May name the calling vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kick(pub u64);

impl Kick {
    pub const NONE: Kick = Kick(0);

    pub fn contains(self, vcpu: usize) -> bool {
        vcpu < 64 && self.0 >> vcpu & 1 != 0
    }

    /// The vCPUs named, ascending.
    pub fn vcpus(self) -> impl Iterator<Item = usize> {
        live::bits64(self.0)
    }

    fn one(vcpu: Option<usize>) -> Kick {
        Kick(vcpu.map_or(0, |v| 1 << v))
    }
}

impl core::ops::BitOr for Kick {
    type Output = Kick;
    fn bitor(self, o: Kick) -> Kick {
        Kick(self.0 | o.0)
    }
}

impl core::ops::BitOrAssign for Kick {
    fn bitor_assign(&mut self, o: Kick) {
        self.0 |= o.0;
    }
}

/// The result of [`Vgic::fill_lrs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fill {
    /// More interrupts were waiting than LRs: enable the underflow maintenance interrupt so the
    /// vCPU exits to be filled again once the guest has drained the LRs.
    pub underflow: bool,
}

/// Most LRs any GIC has (GICv2: 64, GICv3: 16).
const MAX_LRS: usize = 64;

/// An LR the last fill left empty, in [`Cpu::slots`].
const NO_SLOT: u16 = u16::MAX;

/// Per-vCPU state: its banked SGIs and PPIs, its redistributor, its LR bookkeeping.
#[derive(Clone, Debug)]
struct Cpu {
    irqs: [Irq; 32],
    /// Bit `n`: `irqs[n]` may be live (see [`live`]).
    live: u32,
    affinity: u64,
    /// `GICR_WAKER.ProcessorSleep`.
    asleep: bool,
    /// INTIDs the last fill put in each LR ([`NO_SLOT`]: none), so that the next fill keeps
    /// them in place.
    slots: [u16; MAX_LRS],
    /// Bit `k`: `slots[k]` holds an INTID (is not [`NO_SLOT`]).
    occupied: u64,
    /// A fill has not been synced yet.
    unsynced: bool,
}

/// A guest's virtual GIC. See the module documentation.
#[derive(Clone, Debug)]
pub struct Vgic {
    version: Version,
    cpus: Vec<Cpu>,
    spis: Vec<Irq>,
    /// SPIs (by index in `spis`) that may be live (see [`live`]).
    spi_live: live::Set,
    /// Scratch for [`Vgic::fill_lrs`], by INTID; empty between calls.
    mark: [u64; 16],
    enable_grp0: bool,
    enable_grp1: bool,
    /// Enable changes the guest made to hardware-backed SPIs, for the arch code to mirror on
    /// the physical interrupt ([`Vgic::take_hw_enables`]).
    hw_enables: Vec<(u32, bool)>,
    /// Hardware-backed SPIs whose physical interrupt is active for a pending state the guest
    /// discarded without acknowledging it ([`Vgic::take_hw_deactivations`]).
    hw_deactivations: Vec<u32>,
}

impl Vgic {
    /// Size of the distributor frame the arch code traps.
    pub const DIST_SIZE: u64 = 0x10000;
    /// GICv3: size of one vCPU's redistributor (RD_base and SGI_base frames).
    pub const REDIST_STRIDE: u64 = 0x20000;

    /// A vGIC in its reset state. Out-of-range values in `cfg` are clamped (see
    /// [`Config::check`]).
    pub fn new(cfg: Config) -> Self {
        let v3 = cfg.version == Version::V3;
        let max_cpus = if v3 { 64 } else { 8 };
        let nvcpus = cfg.vcpus.clamp(1, max_cpus);
        let nspis = cfg.spis.next_multiple_of(32).min(MAX_SPIS) as usize;
        let cpus = (0..nvcpus)
            .map(|i| {
                let mut irqs = [Irq::new(false, v3); 32];
                for sgi in &mut irqs[..16] {
                    sgi.edge = true;
                }
                Cpu {
                    irqs,
                    live: 0,
                    affinity: cfg.mpidrs.get(i).copied().unwrap_or(i as u64) & AFFINITY_MASK,
                    asleep: true,
                    slots: [NO_SLOT; MAX_LRS],
                    occupied: 0,
                    unsynced: false,
                }
            })
            .collect();
        Self {
            version: cfg.version,
            cpus,
            spis: alloc::vec![Irq::new(false, v3); nspis],
            spi_live: live::Set::new(),
            mark: [0; 16],
            enable_grp0: false,
            enable_grp1: false,
            hw_enables: Vec::new(),
            hw_deactivations: Vec::new(),
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Number of vCPUs (after clamping).
    pub fn vcpus(&self) -> usize {
        self.cpus.len()
    }

    /// Number of SPIs (after rounding).
    pub fn spis(&self) -> u32 {
        self.spis.len() as u32
    }

    /// GICv3: size of the whole redistributor region (0 for GICv2).
    pub fn redist_size(&self) -> u64 {
        match self.version {
            Version::V2 => 0,
            Version::V3 => self.cpus.len() as u64 * Self::REDIST_STRIDE,
        }
    }

    /// Drives a level-sensitive input: a device's line (SPI, `vcpu` ignored) or a vCPU's PPI such
    /// as its timer (`vcpu` required). On an interrupt the guest configured as edge-triggered, or
    /// a hardware-backed one, a rising level is one edge.
    pub fn set_level(&mut self, intid: u32, vcpu: Option<usize>, level: bool) -> Kick {
        let v2 = self.version == Version::V2;
        let Some(irq) = self.irq_for_input(intid, vcpu) else {
            return Kick::NONE;
        };
        let rising = level && !irq.line;
        irq.line = level;
        if !rising {
            return Kick::NONE;
        }
        if !irq.level_tracked() {
            irq.set_pending(sgi_source(v2, intid, vcpu));
        }
        self.kick_for(vcpu.unwrap_or(0), intid)
    }

    /// Makes an interrupt pending once (an edge; on a level-sensitive interrupt, like a write to
    /// `ISPENDR`: pending until the guest acknowledges it). GICv2 SGIs count as sent by `vcpu`.
    pub fn inject(&mut self, intid: u32, vcpu: Option<usize>) -> Kick {
        let v2 = self.version == Version::V2;
        let Some(irq) = self.irq_for_input(intid, vcpu) else {
            return Kick::NONE;
        };
        irq.set_pending(sgi_source(v2, intid, vcpu));
        self.kick_for(vcpu.unwrap_or(0), intid)
    }

    /// Enable changes to hardware-backed SPIs since the last call, as (physical INTID, enabled):
    /// the physical interrupt must follow, so that a level line the guest has masked does not
    /// keep firing into a disabled virtual interrupt.
    pub fn take_hw_enables(&mut self) -> Vec<(u32, bool)> {
        core::mem::take(&mut self.hw_enables)
    }

    /// Physical INTIDs to deactivate, since the last call.
    ///
    /// A hardware interrupt stays active in the physical GIC from the moment it fires until the
    /// guest deactivates its virtual copy through an LR with `HW` = 1. When the guest discards
    /// the virtual pending state instead (enabling the interrupt again drops what was latched
    /// while it was masked; `ICPENDR`), that deactivation never comes: left active, the
    /// physical interrupt could never fire again, and the device would look dead.
    pub fn take_hw_deactivations(&mut self) -> Vec<u32> {
        core::mem::take(&mut self.hw_deactivations)
    }

    /// Whether [`Vgic::take_hw_enables`] or [`Vgic::take_hw_deactivations`] has work.
    pub fn hw_work(&self) -> bool {
        !self.hw_enables.is_empty() || !self.hw_deactivations.is_empty()
    }

    /// Declares that physical interrupt `pintid` backs this virtual one (`None` undoes it): its
    /// LRs carry `HW` = 1 and the physical INTID from the next fill on.
    pub fn link_hw(&mut self, intid: u32, vcpu: Option<usize>, pintid: Option<u32>) {
        if let Some(irq) = self.irq_for_input(intid, vcpu) {
            irq.hw = pintid;
        }
    }

    /// GICv3: the guest wrote `ICC_SGI1R_EL1`: Group 1 SGIs to the vCPUs it names.
    pub fn sgi1r_write(&mut self, vcpu: usize, value: u64) -> Kick {
        self.sgi_v3(vcpu, value, true)
    }

    /// GICv3: the guest wrote `ICC_SGI0R_EL1`: Group 0 SGIs.
    pub fn sgi0r_write(&mut self, vcpu: usize, value: u64) -> Kick {
        self.sgi_v3(vcpu, value, false)
    }

    fn sgi_v3(&mut self, vcpu: usize, value: u64, group1: bool) -> Kick {
        if self.version != Version::V3 || vcpu >= self.cpus.len() {
            return Kick::NONE;
        }
        let intid = (value >> 24 & 0xf) as usize;
        let all_but_self = value >> 40 & 1 != 0;
        let list = value & 0xffff;
        let aff_hi =
            (value >> 16 & 0xff) << 8 | (value >> 32 & 0xff) << 16 | (value >> 48 & 0xff) << 32;
        let rs = (value >> 44 & 0xf) * 16;
        let mut kick = Kick::NONE;
        for (t, cpu) in self.cpus.iter_mut().enumerate() {
            let hit = if all_but_self {
                t != vcpu
            } else {
                let aff0 = cpu.affinity & 0xff;
                cpu.affinity & !0xff == aff_hi
                    && (rs..rs + 16).contains(&aff0)
                    && list >> (aff0 - rs) & 1 != 0
            };
            // A Group 1 SGI only reaches a target that configured that SGI as Group 1, and the
            // other way round (single security state).
            if hit && cpu.irqs[intid].group1 == group1 {
                cpu.irqs[intid].latch = true;
                cpu.live |= 1 << intid;
                kick |= Kick(1 << t);
            }
        }
        kick
    }

    /// Nothing may need a list register of `vcpu`: none of its private interrupts and no SPI at
    /// all is live. Conservative (true only when certain), O(1): the exit path skips the
    /// list registers entirely when this holds and they are empty.
    pub fn quiet(&self, vcpu: usize) -> bool {
        self.cpus.get(vcpu).is_some_and(|c| c.live == 0) && self.spi_live.is_empty()
    }

    /// Whether `vcpu` has an interrupt it could take (pending, enabled, its group enabled, not
    /// active), ignoring priority masks: a vCPU blocked in WFI must be woken.
    pub fn has_pending(&self, vcpu: usize) -> bool {
        // The usual answer for a vCPU going idle, in O(1).
        !self.quiet(vcpu) && self.deliverable(vcpu).next().is_some()
    }

    /// The INTIDs [`has_pending`](Self::has_pending) counts, ascending (for debugging).
    pub fn pending_irqs(&self, vcpu: usize) -> Vec<u32> {
        self.deliverable(vcpu).collect()
    }

    /// The INTIDs `vcpu` could take, ascending. Only live interrupts can be, so only those are
    /// looked at.
    fn deliverable(&self, vcpu: usize) -> impl Iterator<Item = u32> + '_ {
        let private = self
            .cpus
            .get(vcpu)
            .into_iter()
            .flat_map(|c| live::bits32(c.live).map(move |i| (i, &c.irqs[i as usize])));
        let spis = self
            .spi_live
            .iter()
            .filter_map(|i| Some((i as u32 + 32, self.spis.get(i)?)));
        private
            .chain(spis)
            .filter(move |&(intid, irq)| self.is_deliverable(vcpu, intid, irq))
            .map(|(intid, _)| intid)
    }

    /// Whether `vcpu` could take `irq` (INTID `intid`, banked in `vcpu` if private) now.
    fn is_deliverable(&self, vcpu: usize, intid: u32, irq: &Irq) -> bool {
        let v2_sgi = self.version == Version::V2 && intid < 16;
        let waiting = if v2_sgi && irq.active {
            irq.sgi_sources & !(1 << irq.active_source) != 0
        } else {
            irq.pending() && !irq.active
        };
        waiting && self.may_signal(irq) && (intid < 32 || self.spi_owner(irq) == Some(vcpu))
    }

    /// Enable and group gating.
    fn may_signal(&self, irq: &Irq) -> bool {
        irq.enabled
            && if irq.group1 {
                self.enable_grp1
            } else {
                self.enable_grp0
            }
    }

    /// The vCPU an SPI goes to: whoever holds it, else the routing's choice.
    fn spi_owner(&self, irq: &Irq) -> Option<usize> {
        irq.holder.map(usize::from).or_else(|| self.spi_target(irq))
    }

    /// Routing of an SPI that no vCPU holds. Where several vCPUs qualify (GICv2 targets, GICv3
    /// 1-of-N) the lowest-numbered one gets it.
    fn spi_target(&self, irq: &Irq) -> Option<usize> {
        match self.version {
            Version::V2 => {
                let mask = irq.targets & self.v2_cpu_mask();
                (mask != 0).then(|| mask.trailing_zeros() as usize)
            }
            Version::V3 if irq.route >> 31 & 1 != 0 => self.cpus.iter().position(|c| !c.asleep),
            Version::V3 => {
                let aff = irq.route & AFFINITY_MASK;
                self.cpus.iter().position(|c| c.affinity == aff)
            }
        }
    }

    /// GICv2: the CPU interfaces that exist, as target bits.
    fn v2_cpu_mask(&self) -> u8 {
        (1u16 << self.cpus.len().min(8)).wrapping_sub(1) as u8
    }

    /// The interrupt at `intid`: banked in `vcpu` for SGIs and PPIs.
    fn irq(&self, vcpu: usize, intid: u32) -> Option<&Irq> {
        match intid {
            0..32 => self.cpus.get(vcpu).map(|c| &c.irqs[intid as usize]),
            _ => self.spis.get(intid as usize - 32),
        }
    }

    /// The interrupt at `intid` to change, marked as possibly live (see [`live`]): every change
    /// to an interrupt's pending or active state, or to what it depends on, goes through here
    /// or marks the interrupt itself.
    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        match intid {
            0..32 => self.cpus.get_mut(vcpu).map(|c| {
                c.live |= 1 << intid;
                &mut c.irqs[intid as usize]
            }),
            _ => {
                let i = intid as usize - 32;
                let irq = self.spis.get_mut(i)?;
                self.spi_live.insert(i);
                Some(irq)
            }
        }
    }

    /// Drops `intid` (banked in `vcpu`) from the live sets: only once it is known not live.
    fn forget(&mut self, vcpu: usize, intid: u32) {
        match intid {
            0..32 => {
                if let Some(c) = self.cpus.get_mut(vcpu) {
                    c.live &= !(1 << intid);
                }
            }
            _ => self.spi_live.remove(intid as usize - 32),
        }
    }

    fn irq_for_input(&mut self, intid: u32, vcpu: Option<usize>) -> Option<&mut Irq> {
        match (intid, vcpu) {
            (0..32, None) => None,
            (_, v) => self.irq_mut(v.unwrap_or(0), intid),
        }
    }

    /// The vCPU to kick after `intid` (banked in `vcpu`) changed: its owner, if the interrupt
    /// is now pending and deliverable, or sits in an LR that must be rebuilt.
    fn kick_for(&self, vcpu: usize, intid: u32) -> Kick {
        let Some(irq) = self.irq(vcpu, intid) else {
            return Kick::NONE;
        };
        if irq.in_lr.is_none() && !(irq.pending() && self.may_signal(irq)) {
            return Kick::NONE;
        }
        match intid {
            0..32 => Kick::one(Some(vcpu)),
            _ => Kick::one(self.spi_owner(irq)),
        }
    }

    fn all_vcpus(&self) -> Kick {
        Kick(u64::MAX >> (64 - self.cpus.len()))
    }
}

/// GICv2 SGIs are pending per source; who sends one through the arch code is `vcpu` itself.
fn sgi_source(v2: bool, intid: u32, vcpu: Option<usize>) -> Option<u8> {
    (v2 && intid < 16).then(|| vcpu.unwrap_or(0) as u8)
}
