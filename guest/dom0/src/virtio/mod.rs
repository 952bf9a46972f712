//! virtio-mmio devices (through `virtio-drivers`): probe every `virtio,mmio` slot, skip the empty
//! ones (device id 0), and exercise each block and network device once.
//!
//! Completions are taken as interrupts through the GIC (the slot's SPI from its `interrupts`
//! property): under Ferrite that proves the device's interrupt is routed to dom0. Polling the
//! used ring stays as a bounded fallback that prints a warning.

pub mod blk;
mod hal;
mod net;
pub mod uplink;

use crate::dt::{Irq, VirtioSlot};
use crate::{cpu, gic, timer};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use virtio_drivers::transport::mmio::{MmioError, MmioTransport, MmioVersion};
use virtio_drivers::transport::{DeviceType, Transport};

pub use hal::{Dom0Hal, forget_grant, record_grant, set_grant_window};

/// Interrupts seen per INTID.
static IRQ_COUNT: [AtomicU32; 1020] = [const { AtomicU32::new(0) }; 1020];

/// The GIC handler for a device SPI: count it and mask it. A level-triggered line stays high
/// until the driver acknowledges the device, which happens outside the handler
/// ([`DevIrq::rearm`]).
fn on_irq(intid: u32) {
    IRQ_COUNT[intid as usize].fetch_add(1, Ordering::AcqRel);
    gic::set_enabled(intid, false);
}

/// A device's interrupt, or the lack of one.
pub struct DevIrq {
    irq: Option<Irq>,
    warned: bool,
    pub taken: u32,
}

/// How long a request may take.
const REQUEST_TIMEOUT_US: u64 = 2_000_000;
/// How long after a completion its interrupt may still be on its way.
const IRQ_GRACE_US: u64 = 20_000;

impl DevIrq {
    fn new(irq: Option<Irq>, what: &str) -> Self {
        let irq = irq.filter(|i| match gic::enable(*i, on_irq) {
            Ok(()) => true,
            Err(e) => {
                println!("dom0: WARNING: {what}: interrupt {}: {e}; polling", i.intid);
                false
            }
        });
        if irq.is_none() {
            println!("dom0: WARNING: {what}: no usable interrupt; polling");
        }
        Self {
            irq,
            warned: irq.is_none(),
            taken: 0,
        }
    }

    pub fn intid(&self) -> Option<u32> {
        self.irq.map(|i| i.intid)
    }

    fn count(&self) -> u32 {
        self.irq
            .map(|i| IRQ_COUNT[i.intid as usize].load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// The current interrupt count, taken before a request is submitted (for [`Self::confirm`]).
    pub fn mark(&self) -> u32 {
        self.count()
    }

    /// Waits (bounded) for `done`, sleeping until an interrupt (the device's or a tick).
    /// Returns false on timeout.
    pub fn wait(&self, mut done: impl FnMut() -> bool) -> bool {
        let deadline = timer::deadline_us(REQUEST_TIMEOUT_US);
        while !done() {
            if timer::counter() > deadline {
                return false;
            }
            cpu::wfi();
        }
        true
    }

    /// After a completion: checks that the device interrupted since `mark` (allowing the
    /// interrupt a moment to arrive), and warns once if it did not.
    pub fn confirm(&mut self, what: &str, mark: u32) -> bool {
        if self.irq.is_none() {
            return false;
        }
        let grace = timer::deadline_us(IRQ_GRACE_US);
        while self.count() == mark && timer::counter() < grace {
            cpu::wfi();
        }
        if self.count() != mark {
            self.taken += 1;
            return true;
        }
        if !self.warned {
            self.warned = true;
            println!(
                "dom0: WARNING: {what}: completion without interrupt {}; polling",
                self.intid().unwrap_or(0)
            );
        }
        false
    }

    /// Unmasks the interrupt again, after the driver acknowledged it at the device.
    pub fn rearm(&self) {
        if let Some(i) = self.irq {
            gic::set_enabled(i.intid, true);
        }
    }
}

/// Probes every slot and runs each device's check. Returns the number of failures.
pub fn probe_all(slots: &[VirtioSlot], blk_selftest: bool) -> usize {
    let (mut blk, mut net, mut failures) = (0, 0, 0);
    for s in slots {
        let Some(header) = NonNull::new(s.reg.start as *mut _) else {
            continue;
        };
        // SAFETY: the slot's registers from the device tree, mapped as device memory by the
        // real map for dom0's life; only this transport (and the driver it is moved into) uses
        // them.
        let transport = match unsafe { MmioTransport::new(header, s.reg.size as usize) } {
            Ok(t) => t,
            Err(MmioError::InvalidDeviceID(_)) => continue, // an empty slot
            Err(e) => {
                println!("dom0: virtio: {}: {e}", s.reg);
                continue;
            }
        };
        let irq = s.irq.map(|i| i.intid).unwrap_or(0);
        let kind = transport.device_type();
        let version = match transport.version() {
            MmioVersion::Legacy => "legacy",
            MmioVersion::Modern => "modern",
        };
        println!(
            "dom0: virtio: {kind:?} at {:#x}, INTID {irq}, virtio-mmio {version}",
            s.reg.start
        );
        let ok = match kind {
            DeviceType::Block => {
                blk += 1;
                blk::check(transport, s.irq, blk_selftest)
            }
            DeviceType::Network => {
                net += 1;
                net::check(transport, s.irq)
            }
            _ => true,
        };
        failures += usize::from(!ok);
    }
    if blk == 0 {
        println!("dom0: blk: no device");
    }
    if net == 0 {
        println!("dom0: net: no device");
    }
    failures
}
