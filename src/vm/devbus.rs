//! The device bus on the machine: `DEVICE_OP` (the rules are [`crate::devbus`]'s), the `DEVBUS`
//! virtual IRQ that tells the other side of each change, and the virtual disks boot
//! configuration gives domUs (`disk=`), which dom0's block backend asks for with `DOMCTL DISK`.

use super::{Vm, domain, events};
use crate::arch::exceptions::TrapFrame;
use crate::devbus::Bus;
use crate::domain::DomId;
use alloc::format;
use alloc::string::String;
use ferrite_abi::devbus as abi;
use ferrite_abi::evtchn::virq;
use ferrite_abi::{DOMID_SELF, Errno};
use spin::Mutex;

static BUS: Mutex<Bus> = Mutex::new(Bus::new());
static DISKS: Mutex<[Option<(u64, u64)>; super::MAX_DOMAINS]> =
    Mutex::new([None; super::MAX_DOMAINS]);

/// Gives domain `id` this region of dom0's disk (bytes, from its `disk=` setting), or none,
/// unless another domain's region overlaps it: two domains writing the same sectors would
/// corrupt each other's file systems (as Xen's toolstack, Ferrite refuses to give one disk to
/// two domains).
pub fn claim_disk(id: DomId, disk: Option<(u64, u64)>) -> Result<(), String> {
    let clash = {
        let mut disks = DISKS.lock();
        let clash = disk.and_then(|want| crate::devbus::disk_overlap(&disks[..], id, want));
        if clash.is_none() {
            disks[id as usize] = disk;
        }
        clash
    };
    // Named after the lock is dropped: the domain table is not taken under it.
    match (clash, disk) {
        (Some((other, (o, z))), Some((wo, wz))) => {
            let name = domain(other).map_or_else(String::new, |d| format!(" ({})", d.name));
            Err(format!(
                "its disk ({wz} bytes at {wo}) overlaps domain {other}{name}'s ({z} bytes at {o})"
            ))
        }
        _ => Ok(()),
    }
}

fn set_disk(id: DomId, disk: Option<(u64, u64)>) {
    DISKS.lock()[id as usize] = disk;
}

/// Domain `id`'s disk as its `disk=` gave it: (offset, size) in bytes.
pub fn disk_bytes(id: DomId) -> Option<(u64, u64)> {
    DISKS.lock()[id as usize]
}

/// Domain `id`'s disk as (first sector, sectors).
pub fn disk(id: DomId) -> Option<(u64, u64)> {
    disk_bytes(id).map(|(o, z)| (o / 512, z / 512))
}

/// Domain `id` is being destroyed: its open devices read as closed by the frontend, and dom0's
/// backends are told (they unmap its rings, which destruction waits for).
pub fn front_gone(id: DomId) {
    let changed = BUS.lock().front_gone(id);
    if changed != 0
        && let Some(dom0) = domain(0)
    {
        events::raise_virq(dom0, virq::DEVBUS, 0);
    }
}

/// Forgets domain `id`'s devices and disk.
pub fn remove_domain(id: DomId) {
    BUS.lock().remove_domain(id);
    set_disk(id, None);
}

fn target(vm: &Vm, arg: u64) -> Result<DomId, Errno> {
    if arg == DOMID_SELF as u64 || arg == vm.id as u64 {
        return Ok(vm.id);
    }
    if vm.is_pv() {
        return Err(Errno::Perm);
    }
    let id = u16::try_from(arg).map_err(|_| Errno::Inval)?;
    domain(id).map(|d| d.id).ok_or(Errno::NoEnt)
}

/// `DEVICE_OP`.
#[inline(never)]
pub fn device_op(vm: &'static Vm, v: usize, frame: &mut TrapFrame) -> i64 {
    let (cmd, a, b, c, d) = (frame.x[1], frame.x[2], frame.x[3], frame.x[4], frame.x[5]);
    let r = op(vm, cmd, [a, b, c, d], frame);
    match r {
        Ok(x) => x as i64,
        // The end of a NEXT walk is not a mistake, nor is a backend finding a destroyed
        // domain's device gone when it looks at it or lets go of it.
        Err(Errno::NoEnt) if matches!(cmd, abi::NEXT | abi::GET | abi::SET_BACK_STATE) => {
            Errno::NoEnt.to_ret()
        }
        Err(e) => {
            log::warn!(
                "{}: vcpu{v}: DEVICE_OP {cmd} ({a:#x}, {b:#x}, {c:#x}): {}",
                vm.name,
                e.name()
            );
            e.to_ret()
        }
    }
}

fn op(
    vm: &'static Vm,
    cmd: u64,
    [a, b, c, d]: [u64; 4],
    frame: &mut TrapFrame,
) -> Result<u64, Errno> {
    match cmd {
        abi::PUBLISH | abi::SET_FRONT_STATE => {
            if !vm.is_pv() {
                return Err(Errno::Perm);
            }
            let r = if cmd == abi::PUBLISH {
                BUS.lock().publish(vm.id, a, b, c, d, frame.x[6])
            } else {
                BUS.lock().set_front(vm.id, a, b)
            };
            r?;
            // dom0's backends learn of it.
            if let Some(dom0) = domain(0) {
                events::raise_virq(dom0, virq::DEVBUS, 0);
            }
            Ok(0)
        }
        abi::SET_BACK_STATE => {
            if vm.is_pv() {
                return Err(Errno::Perm);
            }
            let dom = target(vm, a)?;
            BUS.lock().set_back(dom, b, c, d, frame.x[6])?;
            if let Some(front) = domain(dom) {
                events::raise_virq(front, virq::DEVBUS, 0);
            }
            Ok(0)
        }
        abi::GET => {
            let dom = target(vm, a)?;
            let dev = BUS.lock().get(dom, b)?;
            frame.x[1] = dev.gref as u64;
            frame.x[2] = dev.port as u64;
            frame.x[3] = dev.back_param;
            frame.x[4] = dev.features;
            frame.x[5] = dev.back_features;
            frame.x[6] = dev.front_param;
            Ok(dev.front as u64 | (dev.back as u64) << 8)
        }
        abi::NEXT => {
            if vm.is_pv() {
                return Err(Errno::Perm);
            }
            let dom = target(vm, a)?;
            BUS.lock().next(dom, b)
        }
        _ => Err(Errno::NoSys),
    }
}
