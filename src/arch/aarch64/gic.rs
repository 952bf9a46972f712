//! The host interrupt controller (GICv2 or GICv3, through `arm-gic`), and IRQ dispatch to
//! registered handlers.
//!
//! Acknowledge and end-of-interrupt run on every IRQ, so they avoid the driver lock: on GICv3
//! they are system registers, on GICv2 the CPU interface is banked per CPU. Everything else
//! (configuration, SGIs) takes the lock with interrupts masked.

use crate::dt::GicInfo;
use crate::mm::region::Region;
use arm_gic::gicv2::{GicV2, SgiTarget as SgiTargetV2, SgiTargetListFilter};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use spin::{Mutex, RwLock};

use super::boot::MAX_CPUS;

/// The SGI Ferrite uses to interrupt another CPU.
pub const IPI_SGI: u32 = 0;

enum Driver {
    V2(GicV2<'static>),
    V3(GicV3<'static>),
}

// SAFETY: the driver holds MMIO pointers to the one GIC in the system; all use is serialised by
// the DRIVER lock.
unsafe impl Send for Driver {}

static DRIVER: Mutex<Option<Driver>> = Mutex::new(None);
/// GICv2 CPU interface base, for lock-free acknowledge/EOI (banked per CPU).
static GICC_BASE: AtomicUsize = AtomicUsize::new(0);
static GICD_BASE: AtomicUsize = AtomicUsize::new(0);
/// GICv2: each CPU's interface number, learnt from the banked GICD_ITARGETSR0.
static V2_TARGET: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// The driver is GICv3: an SGI is one system-register write, sent without the driver's lock.
static IS_V3: AtomicBool = AtomicBool::new(false);
/// GICv3: each CPU's MPIDR, for SGI routing; and its redistributor index.
static MPIDRS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

type Handler = fn(u32);
static HANDLERS: RwLock<[Option<Handler>; 1020]> = RwLock::new([None; 1020]);

/// The regions the GIC driver touches, for Ferrite's device map.
pub fn regions(info: &GicInfo) -> alloc::vec::Vec<Region> {
    match info {
        GicInfo::V2 { dist, cpu, hyp, .. } => {
            // The CPU interface is at least 8 KiB (GICC_DIR is at 0x1000); GICH is ours too.
            let mut v = alloc::vec![*dist, Region::new(cpu.start, cpu.size.max(0x2000))];
            v.extend(hyp.iter().map(|h| Region::new(h.start, h.size.max(0x1000))));
            v
        }
        GicInfo::V3 { dist, redist, .. } => {
            let mut v = alloc::vec![*dist];
            v.extend_from_slice(redist);
            v
        }
    }
}

fn with_irqs_masked<R>(f: impl FnOnce() -> R) -> R {
    let daif: u64;
    // SAFETY: reading DAIF.
    unsafe { core::arch::asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack)) };
    super::cpu::irq_disable();
    let r = f();
    if daif & (1 << 7) == 0 {
        super::cpu::irq_enable();
    }
    r
}

/// Brings up the distributor and this (boot) CPU's interface. Returns a one-line description.
///
/// # Safety
/// `info`'s regions must be the GIC's, mapped as device memory, and used by nothing else.
pub unsafe fn init(info: &GicInfo, cpus: usize) -> Result<alloc::string::String, &'static str> {
    use alloc::format;
    let (driver, desc) = match info {
        GicInfo::V2 { dist, cpu, .. } => {
            // SAFETY: forwarded from the caller.
            let mut gic = unsafe { GicV2::new(dist.start as *mut _, cpu.start as *mut _) };
            gic.setup();
            GICC_BASE.store(cpu.start as usize, Ordering::Release);
            GICD_BASE.store(dist.start as usize, Ordering::Release);
            let lines = gic.typer().num_irqs();
            (
                Driver::V2(gic),
                format!("v2, distributor {:#x}, {} lines", dist.start, lines),
            )
        }
        GicInfo::V3 { dist, redist, .. } => {
            let first = redist
                .first()
                .ok_or("GICv3 without a redistributor region")?;
            enable_sre_el2();
            // SAFETY: forwarded from the caller; the pointers are non-null device addresses.
            let mut gic = unsafe {
                let d =
                    UniqueMmioPointer::new(NonNull::new(dist.start as *mut _).ok_or("null GICD")?);
                let r = NonNull::new(first.start as *mut _).ok_or("null GICR")?;
                GicV3::new(d, r, cpus)
                    .map_err(|_| "GICv3 redistributors not as the device tree says")?
            };
            let me =
                redistributor_index(&mut gic, cpus).ok_or("no redistributor for the boot CPU")?;
            gic.setup(me);
            GicCpuInterface::set_priority_mask(0xff);
            split_eoi();
            (
                Driver::V3(gic),
                format!("v3, distributor {:#x}, {} redistributors", dist.start, cpus),
            )
        }
    };
    let v3 = matches!(driver, Driver::V3(_));
    *DRIVER.lock() = Some(driver);
    IS_V3.store(v3, Ordering::Release);
    if GICC_BASE.load(Ordering::Relaxed) != 0 {
        split_eoi();
    }
    init_cpu_state(0);
    Ok(desc)
}

/// At EL2 the GICv3 CPU interface is used through system registers only once SRE is set.
fn enable_sre_el2() {
    use aarch64_cpu::registers::ICC_SRE_EL2;
    use tock_registers::interfaces::Writeable;
    ICC_SRE_EL2.write(
        ICC_SRE_EL2::SRE::SET
            + ICC_SRE_EL2::DFB::SET
            + ICC_SRE_EL2::DIB::SET
            + ICC_SRE_EL2::ENABLE::SET,
    );
    // SAFETY: barrier only.
    unsafe { core::arch::asm!("isb", options(nomem, nostack)) };
}

fn redistributor_index(gic: &mut GicV3, cpus: usize) -> Option<usize> {
    let me = super::cpu::mpidr();
    (0..cpus).find(|&i| {
        gic.gicr_typer(i)
            .map(|t| t.core_mpidr() == me)
            .unwrap_or(false)
    })
}

fn init_cpu_state(index: usize) {
    MPIDRS[index].store(super::cpu::mpidr() as usize, Ordering::Relaxed);
    let gicd = GICD_BASE.load(Ordering::Acquire);
    if gicd != 0 {
        // SAFETY: GICD_ITARGETSR0 (offset 0x800) is banked: its low byte names this CPU's
        // interface, the only way to learn the number GICv2 SGIs are routed by.
        let t = unsafe { core::ptr::read_volatile((gicd + 0x800) as *const u32) };
        V2_TARGET[index].store(t as u8, Ordering::Relaxed);
    }
}

/// Turns on this CPU's GICv2 interface (banked registers, so no lock).
fn v2_cpu_interface_on() {
    let gicc = GICC_BASE.load(Ordering::Acquire);
    // SAFETY: GICC_PMR (0x4) and GICC_CTLR (0x0) of the banked, device-mapped CPU interface.
    unsafe {
        core::ptr::write_volatile((gicc + 0x4) as *mut u32, 0xff);
        core::ptr::write_volatile(gicc as *mut u32, 1);
    }
}

/// Brings up a secondary CPU's interface (its redistributor on v3, its CPU interface on v2).
pub fn init_secondary(index: usize, cpus: usize) -> Result<(), &'static str> {
    with_irqs_masked(|| {
        let mut d = DRIVER.lock();
        match d.as_mut().ok_or("GIC not initialised")? {
            Driver::V2(_) => {
                v2_cpu_interface_on();
                split_eoi();
            }
            Driver::V3(gic) => {
                enable_sre_el2();
                let me = redistributor_index(gic, cpus).ok_or("no redistributor for this CPU")?;
                gic.init_cpu(me);
                GicCpuInterface::enable_group1(true);
                GicCpuInterface::set_priority_mask(0xff);
                split_eoi();
            }
        }
        Ok(())
    })?;
    init_cpu_state(index);
    Ok(())
}

/// Registers `handler` for `intid` and enables it (on this CPU, for SGIs and PPIs).
pub fn enable(intid: u32, trigger_level: bool, handler: Handler) -> Result<(), &'static str> {
    let id = IntId::try_from(intid).map_err(|_| "invalid interrupt id")?;
    if intid as usize >= 1020 {
        return Err("interrupt id out of range");
    }
    HANDLERS.write()[intid as usize] = Some(handler);
    with_irqs_masked(|| {
        let mut d = DRIVER.lock();
        let trigger = if trigger_level {
            Trigger::Level
        } else {
            Trigger::Edge
        };
        match d.as_mut().ok_or("GIC not initialised")? {
            Driver::V2(gic) => {
                gic.set_interrupt_priority(id, 0x80);
                if !id.is_sgi() {
                    gic.set_trigger(id, trigger);
                }
                if id.is_spi() {
                    // GICv2 delivers an SPI only to the CPU interfaces its ITARGETSR byte names
                    // (reset: none). Route it to the CPU that enables it.
                    let gicd = GICD_BASE.load(Ordering::Relaxed);
                    let me = V2_TARGET[super::cpu::index()].load(Ordering::Relaxed);
                    // SAFETY: GICD_ITARGETSR<n> is byte-accessible; the distributor is mapped
                    // as device memory and this write is made under the driver lock.
                    unsafe {
                        core::ptr::write_volatile((gicd + 0x800 + intid as usize) as *mut u8, me)
                    };
                }
                gic.enable_interrupt(id, true)
                    .map_err(|_| "GICv2 refused to enable")?;
            }
            Driver::V3(gic) => {
                let cpu = if id.is_private() {
                    Some(redistributor_index(gic, MAX_CPUS).ok_or("no redistributor")?)
                } else {
                    None
                };
                gic.set_interrupt_priority(id, cpu, 0x80)
                    .map_err(|_| "GICv3 priority")?;
                if !id.is_sgi() {
                    gic.set_trigger(id, cpu, trigger)
                        .map_err(|_| "GICv3 trigger")?;
                }
                gic.enable_interrupt(id, cpu, true)
                    .map_err(|_| "GICv3 refused to enable")?;
            }
        }
        Ok(())
    })
}

/// Interrupts CPU `index` with Ferrite's IPI.
pub fn send_ipi(index: usize) {
    if IS_V3.load(Ordering::Acquire) {
        // ICC_SGI1R_EL1 is this CPU's own register: nothing to serialise with other CPUs, and
        // one write cannot be torn by an interrupt (on the exit path of every event).
        send_sgi_v3(index);
        return;
    }
    with_irqs_masked(|| {
        let mut d = DRIVER.lock();
        match d.as_mut() {
            Some(Driver::V2(gic)) => {
                let target = V2_TARGET[index].load(Ordering::Relaxed) as u16;
                gic.send_sgi(
                    IntId::sgi(IPI_SGI),
                    SgiTargetV2::List {
                        target_list_filter: SgiTargetListFilter::CPUTargetList,
                        target_list: target,
                    },
                );
            }
            Some(Driver::V3(_)) => send_sgi_v3(index),
            None => {}
        }
    });
}

fn send_sgi_v3(index: usize) {
    let m = MPIDRS[index].load(Ordering::Relaxed) as u64;
    let _ = GicCpuInterface::send_sgi(
        IntId::sgi(IPI_SGI),
        SgiTarget::List {
            affinity3: (m >> 32) as u8,
            affinity2: (m >> 16) as u8,
            affinity1: (m >> 8) as u8,
            target_list: 1 << (m & 0xf),
        },
        SgiTargetGroup::CurrentGroup1,
    );
}

fn acknowledge() -> Option<u32> {
    let gicc = GICC_BASE.load(Ordering::Relaxed);
    if gicc != 0 {
        // SAFETY: GICC_IAR (offset 0xc) of the banked, device-mapped CPU interface.
        let iar = unsafe { core::ptr::read_volatile((gicc + 0x0c) as *const u32) };
        let id = iar & 0x3ff;
        (id < 1020).then_some(iar)
    } else {
        GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1).map(u32::from)
    }
}

fn end(iar: u32) {
    let gicc = GICC_BASE.load(Ordering::Relaxed);
    if gicc != 0 {
        // SAFETY: GICC_EOIR (offset 0x10) of the banked, device-mapped CPU interface.
        unsafe { core::ptr::write_volatile((gicc + 0x10) as *mut u32, iar) };
    } else if let Ok(id) = IntId::try_from(iar) {
        GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
    }
}

/// Deactivates an interrupt (with EOImode = 1, end-of-interrupt only drops the priority).
fn deactivate(iar: u32) {
    let gicc = GICC_BASE.load(Ordering::Relaxed);
    if gicc != 0 {
        // SAFETY: GICC_DIR (offset 0x1000) of the banked, device-mapped CPU interface.
        unsafe { core::ptr::write_volatile((gicc + 0x1000) as *mut u32, iar) };
    } else {
        // SAFETY: ICC_DIR_EL1 deactivates the interrupt this CPU just handled.
        unsafe {
            core::arch::asm!("msr icc_dir_el1, {}", in(reg) iar as u64, options(nomem, nostack))
        };
    }
}

/// Splits end-of-interrupt into priority drop and deactivation on this CPU, so an interrupt
/// forwarded to a guest stays active until the guest deactivates it (through a list register
/// with the HW bit), instead of firing again while the guest has not handled it yet.
fn split_eoi() {
    let gicc = GICC_BASE.load(Ordering::Relaxed);
    if gicc != 0 {
        // SAFETY: GICC_CTLR of the banked CPU interface: EnableGrp1 stays, EOImodeNS (bit 9) set.
        unsafe {
            let ctlr = core::ptr::read_volatile(gicc as *const u32);
            core::ptr::write_volatile(gicc as *mut u32, ctlr | (1 << 9));
        }
    } else {
        // SAFETY: ICC_CTLR_EL1.EOImode (bit 1) for this CPU's physical interface.
        unsafe {
            core::arch::asm!(
                "mrs {t}, icc_ctlr_el1", "orr {t}, {t}, #2", "msr icc_ctlr_el1, {t}", "isb",
                t = out(reg) _, options(nomem, nostack));
        }
    }
}

static FORWARDED: [core::sync::atomic::AtomicU32; 32] =
    [const { core::sync::atomic::AtomicU32::new(0) }; 32];

fn forwarded(id: u32) -> bool {
    FORWARDED[(id / 32) as usize % 32].load(Ordering::Relaxed) & (1 << (id % 32)) != 0
}

/// Enables or disables an interrupt at the distributor without touching its handler (an SPI a
/// guest masks or unmasks).
pub fn set_enabled(intid: u32, on: bool) {
    let Ok(id) = IntId::try_from(intid) else {
        return;
    };
    with_irqs_masked(|| match DRIVER.lock().as_mut() {
        Some(Driver::V2(g)) => {
            let _ = g.enable_interrupt(id, on);
        }
        Some(Driver::V3(g)) => {
            let _ = g.enable_interrupt(id, None, on);
        }
        None => {}
    });
}

/// Gives interrupt `intid` to a guest: `handler` injects it, and the guest's deactivation of
/// the virtual interrupt deactivates the physical one.
pub fn forward(intid: u32, level: bool, handler: Handler) -> Result<(), &'static str> {
    if intid >= 1020 {
        return Err("interrupt id out of range");
    }
    FORWARDED[(intid / 32) as usize].fetch_or(1 << (intid % 32), Ordering::Relaxed);
    enable(intid, level, handler)?;
    // An SPI stays masked until the guest enables it in its vGIC (the vGIC's enable is mirrored).
    if intid >= 32 {
        set_enabled(intid, false);
    }
    Ok(())
}

/// Per CPU: the handler running now asked for its (forwarded) interrupt to be deactivated
/// anyway, because it did not hand it to a guest this time.
static DEACTIVATE_NOW: [core::sync::atomic::AtomicBool; MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; MAX_CPUS];

/// From an interrupt handler: this forwarded interrupt was handled at EL2 (not given to a
/// guest with the HW bit), so deactivate it once its priority is dropped.
pub fn deactivate_after_handling() {
    DEACTIVATE_NOW[super::cpu::index()].store(true, Ordering::Relaxed);
}

/// Deactivates PPI `intid` on this CPU if it is active: a vCPU leaving the CPU took a
/// forwarded PPI with it (the virtual timer), and the next vCPU must be able to get its own.
/// The virtual copy stays with the vGIC; its HW-bit deactivation later has no effect.
pub fn deactivate_ppi(intid: u32) {
    let gicd = GICD_BASE.load(Ordering::Relaxed);
    if GICC_BASE.load(Ordering::Relaxed) != 0 && gicd != 0 {
        // SAFETY: GICD_ICACTIVER0 (0x380), banked per CPU for SGIs and PPIs.
        unsafe { core::ptr::write_volatile((gicd + 0x380) as *mut u32, 1 << (intid % 32)) };
    } else {
        // SAFETY: ICC_DIR_EL1 for a PPI whose priority was dropped when it was handled; for an
        // inactive interrupt the write has no effect.
        unsafe {
            core::arch::asm!("msr icc_dir_el1, {}", "isb", in(reg) intid as u64, options(nomem, nostack))
        };
    }
}

/// Deactivates SPI `intid`, from any CPU: a forwarded interrupt whose virtual copy the guest
/// discarded without deactivating it (see `Vgic::take_hw_deactivations`).
pub fn deactivate_spi(intid: u32) {
    let gicd = GICD_BASE.load(Ordering::Relaxed);
    if !(32..1020).contains(&intid) || gicd == 0 {
        return;
    }
    let reg = gicd + 0x380 + (intid as usize / 32) * 4;
    // SAFETY: GICD_ICACTIVER<n> (0x380 + 4n) of the device-mapped distributor, which Ferrite
    // owns; for an SPI it is global (GICv2, and GICv3 with affinity routing alike), and writing
    // one bit deactivates only that interrupt (no effect if it is inactive).
    unsafe { core::ptr::write_volatile(reg as *mut u32, 1 << (intid % 32)) };
}

/// Called from the IRQ vector: handles every pending interrupt.
pub fn handle_irq() {
    while let Some(iar) = acknowledge() {
        let id = iar & 0x3ff;
        let handler = HANDLERS.read()[id as usize];
        match handler {
            Some(h) => h(id),
            None => log::warn!("gic: interrupt {id} has no handler"),
        }
        end(iar);
        let now = DEACTIVATE_NOW[super::cpu::index()].swap(false, Ordering::Relaxed);
        if !forwarded(id) || now {
            deactivate(iar);
        }
    }
}

/// SPIs the distributor implements.
pub fn spi_count() -> u32 {
    match &*DRIVER.lock() {
        Some(Driver::V2(g)) => g.typer().num_irqs().saturating_sub(32),
        Some(Driver::V3(g)) => g.typer().num_spis(),
        None => 0,
    }
}
