//! List registers: the model [`Lr`] that [`Vgic::fill_lrs`](super::Vgic::fill_lrs) and
//! [`Vgic::sync_lrs`](super::Vgic::sync_lrs) exchange with the arch code, and its exact encodings
//! in the hardware's `ICH_LR<n>_EL2` (GICv3, IHI 0069) and `GICH_LR<n>` (GICv2, IHI 0048B).
//!
//! Decoding never fails: every bit pattern maps to some [`Lr`], and fields a format cannot hold
//! are dropped by the encoder (a GICv2 LR keeps five priority bits and a ten-bit INTID).

/// The state of one list register, as the virtual CPU interface sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrState {
    /// The LR is free.
    #[default]
    Invalid,
    Pending,
    Active,
    PendingActive,
}

impl LrState {
    /// The state with these pending and active bits.
    pub const fn from_bits(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => Self::Invalid,
            (true, false) => Self::Pending,
            (false, true) => Self::Active,
            (true, true) => Self::PendingActive,
        }
    }

    pub const fn pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }

    pub const fn active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }

    /// The two-bit `State` field shared by both formats.
    const fn bits(self) -> u64 {
        self.pending() as u64 | (self.active() as u64) << 1
    }
}

/// One list register's content, independent of the GIC version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lr {
    /// The virtual INTID the guest acknowledges.
    pub intid: u32,
    pub state: LrState,
    /// Full 8-bit priority; GICv2 LRs keep only the top five bits.
    pub priority: u8,
    pub group1: bool,
    /// The physical INTID that backs this one (`HW` = 1): the guest's deactivation deactivates it.
    pub hw: Option<u32>,
    /// GICv2 SGIs only: the CPU that sent it (the guest reads it in `GICC_IAR.CPUID`).
    pub source: u8,
    /// Ask for an EOI maintenance interrupt when the guest deactivates it (only when `hw` is
    /// `None`: the formats share the bit with the physical INTID).
    pub eoi_maintenance: bool,
}

impl Lr {
    /// A free list register.
    pub const INVALID: Lr = Lr {
        intid: 0,
        state: LrState::Invalid,
        priority: 0,
        group1: false,
        hw: None,
        source: 0,
        eoi_maintenance: false,
    };
}

const V3_STATE_SHIFT: u32 = 62;
const V3_HW: u64 = 1 << 61;
const V3_GROUP: u64 = 1 << 60;
const V3_PRIORITY_SHIFT: u32 = 48;
const V3_PINTID_SHIFT: u32 = 32;
const V3_PINTID_MASK: u64 = 0x1fff;
const V3_EOI: u64 = 1 << 41;

/// Encodes `lr` as an `ICH_LR<n>_EL2` value.
#[inline]
pub fn encode_v3(lr: &Lr) -> u64 {
    let mut v = u64::from(lr.intid)
        | u64::from(lr.priority) << V3_PRIORITY_SHIFT
        | lr.state.bits() << V3_STATE_SHIFT;
    if lr.group1 {
        v |= V3_GROUP;
    }
    match lr.hw {
        Some(p) => v |= V3_HW | (u64::from(p) & V3_PINTID_MASK) << V3_PINTID_SHIFT,
        None if lr.eoi_maintenance => v |= V3_EOI,
        None => {}
    }
    v
}

/// Decodes an `ICH_LR<n>_EL2` value.
#[inline]
pub fn decode_v3(v: u64) -> Lr {
    let hw = v & V3_HW != 0;
    Lr {
        intid: v as u32,
        state: LrState::from_bits(v >> V3_STATE_SHIFT & 1 != 0, v >> (V3_STATE_SHIFT + 1) != 0),
        priority: (v >> V3_PRIORITY_SHIFT) as u8,
        group1: v & V3_GROUP != 0,
        hw: hw.then_some((v >> V3_PINTID_SHIFT & V3_PINTID_MASK) as u32),
        source: 0,
        eoi_maintenance: !hw && v & V3_EOI != 0,
    }
}

const V2_HW: u32 = 1 << 31;
const V2_GRP1: u32 = 1 << 30;
const V2_STATE_SHIFT: u32 = 28;
const V2_PRIORITY_SHIFT: u32 = 23;
const V2_PHYS_SHIFT: u32 = 10;
const V2_ID_MASK: u32 = 0x3ff;
const V2_EOI: u32 = 1 << 19;
const V2_CPUID_MASK: u32 = 0x7;

/// Encodes `lr` as a `GICH_LR<n>` value.
#[inline]
pub fn encode_v2(lr: &Lr) -> u32 {
    let mut v = (lr.intid & V2_ID_MASK)
        | u32::from(lr.priority >> 3) << V2_PRIORITY_SHIFT
        | (lr.state.bits() as u32) << V2_STATE_SHIFT;
    if lr.group1 {
        v |= V2_GRP1;
    }
    match lr.hw {
        Some(p) => v |= V2_HW | (p & V2_ID_MASK) << V2_PHYS_SHIFT,
        None => {
            v |= (u32::from(lr.source) & V2_CPUID_MASK) << V2_PHYS_SHIFT;
            if lr.eoi_maintenance {
                v |= V2_EOI;
            }
        }
    }
    v
}

/// Decodes a `GICH_LR<n>` value.
#[inline]
pub fn decode_v2(v: u32) -> Lr {
    let hw = v & V2_HW != 0;
    let phys = v >> V2_PHYS_SHIFT & V2_ID_MASK;
    Lr {
        intid: v & V2_ID_MASK,
        state: LrState::from_bits(
            v >> V2_STATE_SHIFT & 1 != 0,
            v >> (V2_STATE_SHIFT + 1) & 1 != 0,
        ),
        priority: ((v >> V2_PRIORITY_SHIFT & 0x1f) << 3) as u8,
        group1: v & V2_GRP1 != 0,
        hw: hw.then_some(phys),
        source: if hw { 0 } else { (phys & V2_CPUID_MASK) as u8 },
        eoi_maintenance: !hw && v & V2_EOI != 0,
    }
}
