//! The GIC's virtualisation hardware on this CPU: the list registers through which virtual
//! interrupts reach a running vCPU (ICH_* system registers on GICv3, the GICH frame on GICv2),
//! and the controls around them. What goes into the list registers is [`crate::vgic`]'s call.

use crate::vgic::{Lr, lr};
use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

/// GICv2: the GICH frame (banked per CPU at this address). 0 means GICv3 (system registers).
static GICH: AtomicUsize = AtomicUsize::new(0);

pub const MAX_LRS: usize = 16;

pub fn init_v2(gich: u64) {
    GICH.store(gich as usize, Ordering::Release);
}

fn gich() -> usize {
    GICH.load(Ordering::Relaxed)
}

fn gich_read(off: usize) -> u32 {
    // SAFETY: GICH registers of the device-mapped, banked hypervisor interface.
    unsafe { core::ptr::read_volatile((gich() + off) as *const u32) }
}

fn gich_write(off: usize, v: u32) {
    // SAFETY: as in gich_read.
    unsafe { core::ptr::write_volatile((gich() + off) as *mut u32, v) }
}

macro_rules! ich_lr {
    ($op:ident, $n:expr, $($v:expr)?) => {
        ich_lr!(@dispatch $op, $n, $($v)?; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
    };
    (@dispatch read, $n:expr, ; $($i:literal)+) => {
        match $n {
            $($i => {
                let v: u64;
                // SAFETY: reading a list register of this CPU's virtual interface.
                unsafe { asm!(concat!("mrs {}, ich_lr", $i, "_el2"), out(reg) v, options(nomem, nostack)) };
                v
            })+
            _ => 0,
        }
    };
    (@dispatch write, $n:expr, $v:expr; $($i:literal)+) => {
        match $n {
            $($i => {
                // SAFETY: writing a list register of this CPU's virtual interface, which only
                // affects the vCPU that runs here.
                unsafe { asm!(concat!("msr ich_lr", $i, "_el2, {}"), in(reg) $v, options(nomem, nostack)) };
            })+
            _ => {}
        }
    };
}

/// How many list registers the CPUs have, once [`enable`] has asked the hardware (0 before).
static LR_COUNT: AtomicUsize = AtomicUsize::new(0);

/// How many list registers this CPU has: asked once, then one load on every exit.
#[inline]
pub fn lr_count() -> usize {
    match LR_COUNT.load(Ordering::Relaxed) {
        0 => {
            let n = lr_count_hw();
            LR_COUNT.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

#[cold]
fn lr_count_hw() -> usize {
    let n = if gich() != 0 {
        (gich_read(0x4) & 0x3f) as usize + 1
    } else {
        let vtr: u64;
        // SAFETY: reading ICH_VTR_EL2.
        unsafe { asm!("mrs {}, ich_vtr_el2", out(reg) vtr, options(nomem, nostack)) };
        (vtr & 0x1f) as usize + 1
    };
    n.min(MAX_LRS)
}

/// Turns this CPU's virtual interface on for a vCPU about to run.
pub fn enable() {
    if gich() != 0 {
        gich_write(0x8, 0); // GICH_VMCR: the guest programs its own mask and enables
        for i in 0..lr_count() {
            gich_write(0x100 + 4 * i, 0);
        }
        gich_write(0x0, 1); // GICH_HCR.En
    } else {
        for i in 0..lr_count() {
            ich_lr!(write, i, 0u64);
        }
        // SAFETY: ICH_VMCR_EL2 / ICH_HCR_EL2 configure this CPU's virtual interface only.
        unsafe {
            asm!("msr ich_vmcr_el2, xzr", "msr ich_hcr_el2, {}", "isb", in(reg) 1u64, options(nomem, nostack));
        }
    }
}

/// Reads back the list registers that `out` (what [`write_lrs`] wrote) says hold something;
/// the others were written empty and the guest cannot fill a list register, so they are left
/// as they are: an exit usually has one or none in use.
/// Returns which ones it read (bit i: list register i), for [`clear_lrs`].
pub fn read_lrs(out: &mut [Lr]) -> u32 {
    let v2 = gich() != 0;
    let mut read = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if slot.state == crate::vgic::LrState::Invalid {
            continue;
        }
        read |= 1 << i;
        *slot = if v2 {
            lr::decode_v2(gich_read(0x100 + 4 * i))
        } else {
            lr::decode_v3(ich_lr!(read, i,))
        };
    }
    read
}

/// Empties the list registers in `mask` (what [`read_lrs`] read: those [`write_lrs`] wrote), and turns
/// off the underflow interrupt (after an exit). The others are empty already.
pub fn clear_lrs(mask: u32) {
    let v2 = gich() != 0;
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        if v2 {
            gich_write(0x100 + 4 * i, 0);
        } else {
            ich_lr!(write, i, 0u64);
        }
    }
    if v2 {
        gich_write(0x0, 1);
    } else {
        // SAFETY: ICH_HCR_EL2 with only En set: this CPU's virtual interface stays on.
        unsafe { asm!("msr ich_hcr_el2, {}", in(reg) 1u64, options(nomem, nostack)) };
    }
}

/// Writes `lrs` into list registers that are all empty (every exit empties them, see
/// [`clear_lrs`]): only the entries that hold something are written.
pub fn write_lrs(lrs: &[Lr], underflow: bool) {
    let v2 = gich() != 0;
    for (i, l) in lrs.iter().enumerate() {
        if l.state == crate::vgic::LrState::Invalid {
            continue;
        }
        if v2 {
            gich_write(0x100 + 4 * i, lr::encode_v2(l));
        } else {
            ich_lr!(write, i, lr::encode_v3(l));
        }
    }
    // HCR.En (bit 0) plus UIE (bit 1): a maintenance interrupt when the list registers run
    // (nearly) empty while more interrupts wait.
    let hcr = 1 | if underflow { 2 } else { 0 };
    if v2 {
        gich_write(0x0, hcr);
    } else {
        // SAFETY: as in enable().
        unsafe { asm!("msr ich_hcr_el2, {}", in(reg) hcr as u64, options(nomem, nostack)) };
    }
}

macro_rules! ich_apr {
    (read, $g:literal, $n:expr) => {
        match $n {
            0 => ich_apr!(@r $g, 0),
            1 => ich_apr!(@r $g, 1),
            2 => ich_apr!(@r $g, 2),
            _ => ich_apr!(@r $g, 3),
        }
    };
    (@r $g:literal, $i:literal) => {{
        let v: u64;
        // SAFETY: reading an active-priority register of this CPU's virtual interface.
        unsafe { asm!(concat!("mrs {}, ich_ap", $g, "r", $i, "_el2"), out(reg) v, options(nomem, nostack)) };
        v as u32
    }};
    (write, $g:literal, $n:expr, $v:expr) => {
        match $n {
            0 => ich_apr!(@w $g, 0, $v),
            1 => ich_apr!(@w $g, 1, $v),
            2 => ich_apr!(@w $g, 2, $v),
            _ => ich_apr!(@w $g, 3, $v),
        }
    };
    (@w $g:literal, $i:literal, $v:expr) => {
        // SAFETY: writing an active-priority register of this CPU's virtual interface, which
        // only affects the vCPU about to run here.
        unsafe { asm!(concat!("msr ich_ap", $g, "r", $i, "_el2, {}"), in(reg) $v as u64, options(nomem, nostack)) }
    };
}

/// GICv3: how many ICH_AP0Rn/AP1Rn registers exist (1, 2 or 4, from the preemption bits).
fn apr_count() -> usize {
    let vtr: u64;
    // SAFETY: reading ICH_VTR_EL2.
    unsafe { asm!("mrs {}, ich_vtr_el2", out(reg) vtr, options(nomem, nostack)) };
    let pre = ((vtr >> 26) & 7) as usize + 1;
    1 << pre.saturating_sub(5).min(2)
}

/// Saves the virtual interface's state of the vCPU leaving this CPU into `s` (its list
/// registers are already empty: see `vm::exit::after_exit`). Only the active-priority
/// registers the CPU has are written; `load_state` reads no others. In place: returned, the
/// 40-byte state was copied by a `memcpy` call on every world switch (about 40 instructions
/// under the strict-alignment target).
pub fn save_state(s: &mut crate::arch::context::GicState) {
    if gich() != 0 {
        s.vmcr = gich_read(0x8) as u64;
        s.ap1r[0] = gich_read(0xf0);
    } else {
        // SAFETY: reading ICH_VMCR_EL2.
        unsafe { asm!("mrs {}, ich_vmcr_el2", out(reg) s.vmcr, options(nomem, nostack)) };
        for i in 0..apr_count() {
            s.ap0r[i] = ich_apr!(read, 0, i);
            s.ap1r[i] = ich_apr!(read, 1, i);
        }
    }
}

/// Loads the virtual interface's state of the vCPU about to run on this CPU.
pub fn load_state(s: &crate::arch::context::GicState) {
    if gich() != 0 {
        gich_write(0x8, s.vmcr as u32);
        gich_write(0xf0, s.ap1r[0]);
    } else {
        // SAFETY: ICH_VMCR_EL2 of the vCPU about to run here.
        unsafe { asm!("msr ich_vmcr_el2, {}", in(reg) s.vmcr, options(nomem, nostack)) };
        for i in 0..apr_count() {
            ich_apr!(write, 0, i, s.ap0r[i]);
            ich_apr!(write, 1, i, s.ap1r[i]);
        }
    }
}
