//! The interrupt controller as dom0 sees it at EL1 (GICv2 or GICv3 per the device tree, through
//! `arm-gic`), and IRQ dispatch to registered handlers.
//!
//! On bare QEMU this is the real GIC; under Ferrite it is the virtual GIC (a GICv2 virtual CPU
//! interface, or GICv3 system registers backed by list registers), which `arm-gic` drives the
//! same way. Configuration takes the driver lock with IRQs masked; acknowledge and EOI on GICv3
//! are system registers and need no lock.

use crate::cpu;
use crate::dt::{Gic, Irq, Region};
use crate::entry::MAX_CPUS;
use alloc::vec::Vec;
use arm_gic::gicv2::GicV2;
use arm_gic::gicv3::{GicCpuInterface, GicV3};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use spin::{Mutex, RwLock};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

enum Driver {
    V2(GicV2<'static>),
    V3(GicV3<'static>),
}

// SAFETY: the driver holds MMIO pointers to the one GIC; every use is serialised by DRIVER.
unsafe impl Send for Driver {}

static DRIVER: Mutex<Option<Driver>> = Mutex::new(None);
static V3: AtomicBool = AtomicBool::new(false);
/// GICv3: each vCPU's redistributor index.
static REDIST: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// GICv2: the boot vCPU's CPU-interface bit, the target of every SPI.
static V2_BOOT_TARGET: AtomicU8 = AtomicU8::new(1);
/// GICv2: the distributor, for the SPI target registers `arm-gic` does not expose.
static V2_GICD: AtomicUsize = AtomicUsize::new(0);

type Handler = fn(u32);
static HANDLERS: RwLock<[Option<Handler>; 1020]> = RwLock::new([None; 1020]);
/// An interrupt ended before its handler runs ([`end_first`]), 0 for none.
static END_FIRST: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Ends interrupt `intid` (EOI) before its handler runs rather than after. For an interrupt
/// that is re-raised for each new cause rather than held as a level (Ferrite's event
/// interrupt): a cause arriving during the handler raises it again, and under Ferrite the
/// interrupt is already out of its list register when the handler's hypercalls trap, so they
/// cost no list-register work.
pub fn end_first(intid: u32) {
    END_FIRST.store(intid, Ordering::Relaxed);
}

register_structs! {
    /// GICv2 GICD_ITARGETSR<n>: one byte per interrupt, a mask of CPU interfaces. Words 0-7
    /// (SGIs and PPIs) are banked per CPU and read-only: reading word 0 tells a CPU its own bit.
    GicdTargets {
        (0x000 => _before),
        (0x800 => itargetsr: [ReadWrite<u32>; 255]),
        (0xbfc => _after),
        (0xc00 => @END),
    }
}

fn v2_targets() -> Option<&'static GicdTargets> {
    let base = V2_GICD.load(Ordering::Acquire);
    // SAFETY: `init` stored the device-mapped GICv2 distributor here. `arm-gic` never touches
    // ITARGETSR, so this view of those registers conflicts with no other user.
    (base != 0).then(|| unsafe { &*(base as *const GicdTargets) })
}

/// The regions the driver touches, for dom0's device map.
pub fn regions(g: &Gic) -> Vec<Region> {
    match g {
        Gic::V2 { dist, cpu } => alloc::vec![*dist, *cpu],
        Gic::V3 { dist, redist } => core::iter::once(*dist)
            .chain(redist.iter().copied())
            .collect(),
    }
}

/// Brings up the distributor and the boot vCPU's interface.
///
/// # Safety
/// `g`'s regions must be the GIC's, mapped as device memory, and used by nothing else.
pub unsafe fn init(g: &Gic, cpus: usize) -> Result<(), &'static str> {
    let driver = match g {
        Gic::V2 { dist, cpu } => {
            // SAFETY: forwarded from the caller.
            let mut gic = unsafe { GicV2::new(dist.start as *mut _, cpu.start as *mut _) };
            gic.setup();
            V2_GICD.store(dist.start as usize, Ordering::Release);
            if let Some(t) = v2_targets() {
                V2_BOOT_TARGET.store(t.itargetsr[0].get() as u8, Ordering::Relaxed);
            }
            Driver::V2(gic)
        }
        Gic::V3 { dist, redist } => {
            let first = redist
                .first()
                .ok_or("GICv3 without a redistributor region")?;
            // SAFETY: forwarded from the caller; the pointers are non-null device addresses.
            let mut gic = unsafe {
                let d =
                    UniqueMmioPointer::new(NonNull::new(dist.start as *mut _).ok_or("null GICD")?);
                let r = NonNull::new(first.start as *mut _).ok_or("null GICR")?;
                GicV3::new(d, r, cpus)
                    .map_err(|_| "GICv3 redistributors are not as the device tree says")?
            };
            let me = redistributor_index(&mut gic, cpus).ok_or("no redistributor for vcpu0")?;
            gic.setup(me);
            GicCpuInterface::set_priority_mask(0xff);
            REDIST[0].store(me, Ordering::Relaxed);
            V3.store(true, Ordering::Release);
            Driver::V3(gic)
        }
    };
    *DRIVER.lock() = Some(driver);
    Ok(())
}

fn redistributor_index(gic: &mut GicV3, cpus: usize) -> Option<usize> {
    let me = cpu::mpidr();
    (0..cpus).find(|&i| {
        gic.gicr_typer(i)
            .map(|t| t.core_mpidr() == me)
            .unwrap_or(false)
    })
}

/// Brings up a secondary vCPU's interface: its redistributor on v3, its banked CPU interface on
/// v2.
pub fn init_secondary(index: usize, cpus: usize) -> Result<(), &'static str> {
    cpu::with_irqs_masked(|| {
        let mut d = DRIVER.lock();
        match d.as_mut().ok_or("GIC not initialised")? {
            Driver::V2(gic) => {
                // GICC_CTLR, GICC_PMR and the SGI/PPI group register are banked: `setup` turns
                // on this vCPU's interface and rewrites the shared settings with the same values.
                gic.setup();
            }
            Driver::V3(gic) => {
                let me = redistributor_index(gic, cpus).ok_or("no redistributor for this vCPU")?;
                gic.init_cpu(me);
                GicCpuInterface::enable_group1(true);
                GicCpuInterface::set_priority_mask(0xff);
                REDIST[index].store(me, Ordering::Relaxed);
            }
        }
        Ok(())
    })
}

/// Registers `handler` for `irq` and enables it: on this vCPU for a PPI, routed to the boot
/// vCPU for an SPI.
pub fn enable(irq: Irq, handler: Handler) -> Result<(), &'static str> {
    let id = IntId::try_from(irq.intid).map_err(|_| "invalid interrupt id")?;
    if irq.intid as usize >= 1020 {
        return Err("interrupt id out of range");
    }
    let trigger = if irq.level {
        Trigger::Level
    } else {
        Trigger::Edge
    };
    // Masked: the IRQ path takes both locks, so holding either with IRQs on could deadlock.
    cpu::with_irqs_masked(|| {
        HANDLERS.write()[irq.intid as usize] = Some(handler);
        let mut d = DRIVER.lock();
        match d.as_mut().ok_or("GIC not initialised")? {
            Driver::V2(gic) => {
                gic.set_interrupt_priority(id, 0x80);
                if !id.is_sgi() {
                    gic.set_trigger(id, trigger);
                }
                if !id.is_private() {
                    set_v2_target(irq.intid, V2_BOOT_TARGET.load(Ordering::Relaxed));
                }
                gic.enable_interrupt(id, true)
                    .map_err(|_| "GICv2 refused to enable")?;
            }
            Driver::V3(gic) => {
                let cpu = id
                    .is_private()
                    .then(|| REDIST[cpu::index()].load(Ordering::Relaxed));
                gic.set_interrupt_priority(id, cpu, 0x80)
                    .map_err(|_| "GICv3 priority")?;
                if !id.is_sgi() {
                    gic.set_trigger(id, cpu, trigger)
                        .map_err(|_| "GICv3 trigger")?;
                }
                if !id.is_private() {
                    gic.distributor()
                        .set_routing(id, Some(boot_mpidr()))
                        .map_err(|_| "GICv3 routing")?;
                }
                gic.enable_interrupt(id, cpu, true)
                    .map_err(|_| "GICv3 refused to enable")?;
            }
        }
        Ok(())
    })
}

static BOOT_MPIDR: AtomicUsize = AtomicUsize::new(0);

/// Records the boot vCPU's MPIDR: SPIs are routed to it.
pub fn set_boot_mpidr(m: u64) {
    BOOT_MPIDR.store(m as usize, Ordering::Relaxed);
}

fn boot_mpidr() -> u64 {
    BOOT_MPIDR.load(Ordering::Relaxed) as u64
}

fn set_v2_target(intid: u32, mask: u8) {
    if let Some(t) = v2_targets() {
        let reg = &t.itargetsr[intid as usize / 4];
        let shift = (intid % 4) * 8;
        reg.set((reg.get() & !(0xff << shift)) | ((mask as u32) << shift));
    }
}

/// Masks or unmasks an SPI at the distributor (a level-triggered device line stays asserted
/// until its driver acknowledges the device, which happens outside the handler).
pub fn set_enabled(intid: u32, on: bool) {
    let Ok(id) = IntId::try_from(intid) else {
        return;
    };
    cpu::with_irqs_masked(|| match DRIVER.lock().as_mut() {
        Some(Driver::V2(gic)) => {
            let _ = gic.enable_interrupt(id, on);
        }
        Some(Driver::V3(gic)) => {
            let _ = gic.enable_interrupt(id, None, on);
        }
        None => {}
    });
}

fn acknowledge() -> Option<IntId> {
    if V3.load(Ordering::Acquire) {
        GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1)
    } else {
        // GICv2: IAR is banked per CPU interface; the lock only serialises the driver object.
        match DRIVER.lock().as_mut() {
            Some(Driver::V2(gic)) => gic.get_and_acknowledge_interrupt(InterruptGroup::Group0),
            _ => None,
        }
    }
}

fn end(id: IntId) {
    if V3.load(Ordering::Acquire) {
        GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
    } else if let Some(Driver::V2(gic)) = DRIVER.lock().as_mut() {
        gic.end_interrupt(id, InterruptGroup::Group0);
    }
}

/// Some interrupt since the main loop last looked may have left the back ends work: every one
/// but an event interrupt that only echoed events back ([`crate::events`], the round-trip
/// benchmark's device), which has nothing left for them.
static WORK: AtomicBool = AtomicBool::new(true);

/// Takes (clears) [`WORK`]: whether the main loop's pass over the back ends is due.
pub fn take_work() -> bool {
    WORK.load(Ordering::Relaxed) && WORK.swap(false, Ordering::AcqRel)
}

/// An interrupt handler left the back ends work (see [`WORK`]).
pub fn note_work() {
    WORK.store(true, Ordering::Release);
}

/// Called from the IRQ vector (IRQs masked): handles every pending interrupt.
pub fn handle_irq() {
    while let Some(id) = acknowledge() {
        let n = u32::from(id);
        if n >= 1020 {
            break; // a special INTID (1020-1023): nothing to handle
        }
        let first = n == END_FIRST.load(Ordering::Relaxed);
        if first {
            end(id);
        }
        if !crate::events::is_event_irq(n) {
            note_work();
        }
        match HANDLERS.read()[n as usize] {
            Some(h) => h(n),
            None => log::warn!("gic: interrupt {n} has no handler"),
        }
        if !first {
            end(id);
        }
    }
}
