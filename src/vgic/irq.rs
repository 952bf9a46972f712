//! The state of one virtual interrupt: its configuration (what the guest programs through the
//! distributor or redistributor) and its pending/active state, split between the vGIC and, while
//! the interrupt sits in a list register, that LR.
//!
//! Pending has several sources, kept apart because they end differently:
//! - `latch`: an edge, a write to `ISPENDR`, or an [`inject`](super::Vgic::inject). The latch
//!   moves into the LR when the interrupt is placed there as pending, so one that arrives while
//!   the guest handles the first is not merged into it, nor taken as consumed by its activation.
//!   For level interrupts the architecture says activation clears a software-set pending state:
//!   the sync gives the latch back only if the guest has not activated the interrupt
//!   ([`InLr::latched`]).
//! - `line`: the input level of a level-sensitive interrupt; pending while it is high.
//! - `sgi_sources`: GICv2 SGIs are pending once per sending CPU.

use super::lr::LrState;

/// Priority bits the virtual distributor implements (five, like the GICv2 LR can carry and like
/// most virtual CPU interfaces); the low three read as zero.
pub(super) const PRIORITY_MASK: u8 = 0xf8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Irq {
    pub enabled: bool,
    pub group1: bool,
    pub priority: u8,
    /// `ICFGR`: edge-triggered (else level-sensitive).
    pub edge: bool,
    pub line: bool,
    pub latch: bool,
    pub active: bool,
    pub sgi_sources: u8,
    /// GICv2 SGIs: the source of the activation in progress.
    pub active_source: u8,
    /// GICv2 SPIs: `ITARGETSR`.
    pub targets: u8,
    /// GICv3 SPIs: `IROUTER` (affinity and `Interrupt_Routing_Mode`).
    pub route: u64,
    pub hw: Option<u32>,
    /// SPIs: the vCPU whose LRs hold the interrupt, or which has it active. An active interrupt
    /// must stay with the vCPU that acknowledged it, whatever the routing says meanwhile.
    pub holder: Option<u8>,
    /// What the last fill put in an LR, until the next sync folds the LR back.
    pub in_lr: Option<InLr>,
    /// `ICPENDR` was written while the interrupt sat in an LR: drop the LR's pending state when
    /// it is folded back.
    pub cancel_pending: bool,
    /// `ISACTIVER`/`ICACTIVER` was written while the interrupt sat in an LR: this wins over the
    /// LR's active state when it is folded back.
    pub force_active: Option<bool>,
}

/// An interrupt's presence in a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct InLr {
    pub vcpu: u8,
    pub slot: u8,
    pub state: LrState,
    pub source: u8,
    /// A level interrupt's latch went into the LR's pending state (not only its line).
    pub latched: bool,
}

impl Irq {
    /// Reset state; `edge` for SGIs, `group1` for GICv3 guests (which expect Group 1 everywhere,
    /// while GICv2 guests leave everything in Group 0 and signal it as IRQ).
    pub const fn new(edge: bool, group1: bool) -> Self {
        Self {
            enabled: false,
            group1,
            priority: 0,
            edge,
            line: false,
            latch: false,
            active: false,
            sgi_sources: 0,
            active_source: 0,
            targets: 0,
            route: 0,
            hw: None,
            holder: None,
            in_lr: None,
            cancel_pending: false,
            force_active: None,
        }
    }

    /// Whether pending follows the input line. Hardware-backed interrupts are not: the physical
    /// GIC holds their level, and each assertion reaches the vGIC as one latch.
    pub const fn level_tracked(&self) -> bool {
        !self.edge && self.hw.is_none()
    }

    /// Pending, as `ISPENDR` reads it: here or in an LR.
    pub fn pending(&self) -> bool {
        let in_lr = match self.in_lr {
            Some(l) => {
                l.state.pending() && !self.cancel_pending && (!self.level_tracked() || l.latched)
            }
            None => false,
        };
        self.pending_here() || in_lr
    }

    /// Pending state the vGIC holds (not handed to an LR).
    pub const fn pending_here(&self) -> bool {
        self.latch || self.sgi_sources != 0 || (self.level_tracked() && self.line)
    }

    /// Pending here, active, or in an LR: the only interrupts the exit path has to look at
    /// (see [`live`](super::live)). Anything deliverable, or that an LR should hold, is live.
    pub fn live(&self) -> bool {
        self.pending_here() || self.active || self.in_lr.is_some()
    }

    /// Active, as `ISACTIVER` reads it.
    pub fn is_active(&self) -> bool {
        self.force_active.unwrap_or(self.active)
    }

    /// Makes the interrupt pending by software or an edge; `source` is for GICv2 SGIs.
    pub fn set_pending(&mut self, v2_sgi_source: Option<u8>) {
        match v2_sgi_source {
            Some(src) => self.sgi_sources |= 1 << (src & 7),
            None => self.latch = true,
        }
    }

    /// `ICPENDR`: clears software and edge pending state. The line of a level interrupt is not
    /// affected (it stays pending while the line is high).
    pub fn clear_pending(&mut self) {
        self.latch = false;
        self.sgi_sources = 0;
        if self.in_lr.is_some_and(|l| l.state.pending()) {
            self.cancel_pending = true;
        }
    }

    pub fn set_active(&mut self, active: bool) {
        if self.in_lr.is_some() {
            self.force_active = Some(active);
        } else {
            self.active = active;
        }
    }

    pub fn set_priority(&mut self, p: u8) {
        self.priority = p & PRIORITY_MASK;
    }
}
