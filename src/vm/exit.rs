//! What a running vCPU asks for when it exits to Ferrite: PSCI and hypercalls, emulated MMIO
//! (distributor, redistributors, console UART, dom0's control page), trapped system registers, WFI, and faults that
//! end the domain. Every bad request gets the architecture's answer or crashes that domain
//! alone, with a log line naming it and the reason: never Ferrite.

use super::{Vm, current, kick, sched};
use crate::arch::context::Context;
use crate::arch::exceptions::TrapFrame;
use crate::arch::trap::{Mmio, SysReg, reg, set_reg};
use crate::arch::{cpu, gic, vgic_hw};
use crate::domain::DomainState;
use crate::vdev::{idregs, psci};
use crate::vgic::Lr;
use core::fmt;
use core::sync::atomic::Ordering;

/// HVC/SMC: PSCI first, then Ferrite's own calls.
///
/// A PV domU may not use PSCI's CPU_ON/CPU_OFF (a vCPU would start with its MMU off, seeing
/// all memory; `VCPU_OP` starts them safely), and its SYSTEM_OFF/SYSTEM_RESET stop only that
/// domain. dom0's stop the machine.
#[inline]
pub fn call(frame: &mut TrapFrame, vm: &'static Vm, v: usize) {
    if ferrite_abi::call::is_ferrite_call(frame.x[0]) {
        // Ferrite's own range first: the hot path of every PV guest.
        super::hypercall::dispatch(vm, v, frame);
        return;
    }
    psci_or_other(frame, vm, v);
}

#[inline(never)]
fn psci_or_other(frame: &mut TrapFrame, vm: &'static Vm, v: usize) {
    let x = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
    let ret = match psci::decode(x) {
        psci::Call::Return(r) => r,
        psci::Call::CpuOn { .. } | psci::Call::CpuOff if vm.is_pv() => {
            log::warn!(
                "{}: vcpu{v}: PSCI CPU_ON/CPU_OFF refused: use VCPU_OP",
                vm.name
            );
            psci::NOT_SUPPORTED
        }
        psci::Call::SystemOff | psci::Call::SystemReset if vm.id != 0 => {
            crate::println!(
                "ferrite: domain {} ({}) shut down from vcpu{v}: PSCI system off/reset",
                vm.id,
                vm.name
            );
            stop_domain(vm, DomainState::PoweredOff);
            sched::leave_current();
        }
        psci::Call::CpuOn {
            target,
            entry,
            context,
        } => {
            let r = vm.power.lock().cpu_on(target, entry, context);
            match r {
                Ok(t) => {
                    log::debug!("{}: vcpu{v}: CPU_ON vcpu{t} at {entry:#x}", vm.name);
                    let el2 = vm.vcpu[t].ctx.lock().el2;
                    *vm.vcpu[t].ctx.lock() = Context::reset(entry, context, el2);
                    vm.power.lock().take_start(t);
                    sched::wake(vm, t);
                    psci::SUCCESS
                }
                Err(e) => e,
            }
        }
        psci::Call::CpuOff => {
            retire_lrs(vm, v);
            vm.power.lock().cpu_off(v);
            log::debug!("{}: vcpu{v}: CPU_OFF", vm.name);
            sched::leave_current();
        }
        psci::Call::Suspend => {
            wfi(frame);
            psci::SUCCESS
        }
        psci::Call::AffinityInfo { target, level } => vm.power.lock().affinity_info(target, level),
        psci::Call::SystemOff => {
            log::info!("{}: PSCI SYSTEM_OFF", vm.name);
            *vm.state.lock() = DomainState::PoweredOff;
            vm.running.store(false, Ordering::Release);
            crate::boot::power_off();
        }
        psci::Call::SystemReset => {
            log::info!("{}: PSCI SYSTEM_RESET", vm.name);
            *vm.state.lock() = DomainState::Rebooting;
            vm.running.store(false, Ordering::Release);
            crate::boot::reboot();
        }
        // Not PSCI, not in Ferrite's range: the SMCCC queries, or nothing.
        psci::Call::NotPsci => {
            super::hypercall::other(vm, v, frame);
            return;
        }
    };
    frame.x[0] = ret as u64;
}

/// WFI: the vCPU blocks until an interrupt (dom0) or an event (PV) is pending for it; its
/// pCPU runs others meanwhile.
pub fn wfi(_frame: &mut TrapFrame) {
    let (vm, v) = current();
    let pending = || !super::is_running(vm) || has_work(vm, v);
    if pending() {
        return;
    }
    sched::block_current(pending);
}

/// Whether something is pending for vCPU `v`: an interrupt in its vGIC (dom0) or an upcall
/// (PV).
pub fn has_work(vm: &Vm, v: usize) -> bool {
    match vm.pv() {
        Some(pv) => pv.upcall_pending(v),
        None => vm.vgic.lock().has_pending(v),
    }
}

fn width_mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size as u32 * 8)) - 1
    }
}

/// A data abort with a valid syndrome: one of the trapped frames, or nothing there.
pub fn mmio(frame: &mut TrapFrame, m: Mmio, esr: u64) {
    let (vm, v) = current();
    let value = reg(frame, m.reg) & width_mask(m.size);
    let result: Result<u64, &'static str> = if vm.dist.contains(m.ipa) {
        let off = m.ipa - vm.dist.start;
        let mut g = vm.vgic.lock();
        if m.write {
            g.dist_write(v, off, m.size, value).map(|k| {
                mirror_hw(g);
                kick(vm, k);
                0
            })
        } else {
            g.dist_read(v, off, m.size)
        }
        .map_err(|_| "distributor access the GIC architecture does not allow")
    } else if let Some(r) = vm.redist.filter(|r| r.contains(m.ipa)) {
        let off = m.ipa - r.start;
        let mut g = vm.vgic.lock();
        if m.write {
            g.redist_write(v, off, m.size, value).map(|k| {
                drop(g);
                kick(vm, k);
                0
            })
        } else {
            g.redist_read(v, off, m.size)
        }
        .map_err(|_| "redistributor access the GIC architecture does not allow")
    } else if let Some(r) = vm.uart.filter(|r| r.contains(m.ipa)) {
        uart(vm, m, m.ipa - r.start, value)
    } else if let Some(off) = super::ctrl::offset(vm, m.ipa) {
        // dom0's control page: calls from its user space (docs/linux-dom0.md).
        Ok(super::ctrl::access(
            vm, v, frame, off, m.size, m.write, value,
        ))
    } else {
        crash(
            frame,
            format_args!(
                "{} of {} bytes at IPA {:#x}: no memory or device is there ({})",
                if m.write { "write" } else { "read" },
                m.size,
                m.ipa,
                crate::arch::esr::Syndrome(esr)
            ),
        );
    };
    match result {
        Ok(read) => {
            if !m.write {
                let mut r = read & width_mask(m.size);
                if m.sign_extend && m.size < 8 {
                    let shift = 64 - 8 * m.size as u32;
                    r = (((r << shift) as i64) >> shift) as u64;
                }
                if !m.sixty_four {
                    r &= 0xffff_ffff;
                }
                set_reg(frame, m.reg, r);
            }
            frame.elr += 4;
        }
        Err(why) => crash(
            frame,
            format_args!(
                "{} of {} bytes at IPA {:#x}: {why}",
                if m.write { "write" } else { "read" },
                m.size,
                m.ipa
            ),
        ),
    }
}

fn uart(vm: &'static Vm, m: Mmio, off: u64, value: u64) -> Result<u64, &'static str> {
    let mut u = vm.vuart.lock();
    let (read, irq) = if m.write {
        let e = u
            .write(off, m.size, value as u32)
            .map_err(|_| "UART access wider than 32 bits")?;
        if let Some(line) = e.output {
            crate::console::write_guest_line(&line);
        }
        (0, e.irq)
    } else {
        let (r, irq) = u
            .read(off, m.size)
            .map_err(|_| "UART access wider than 32 bits")?;
        (r as u64, irq)
    };
    drop(u);
    if let Some(spi) = vm.uart_spi {
        let k = vm.vgic.lock().set_level(spi, None, irq);
        kick(vm, k);
    }
    Ok(read)
}

/// A trapped system register. Returns false to make it undefined for the guest.
pub fn sysreg(frame: &mut TrapFrame, r: SysReg) -> bool {
    let (vm, v) = current();
    if vm.is_pv()
        && !r.read
        && let Some(ok) = super::domu::trapped_write(vm, v, frame, r)
    {
        return ok;
    }
    match (r.op0, r.op1, r.crn, r.crm, r.op2, r.read) {
        // ICC_SGI1R_EL1: the guest sends an SGI.
        (3, 0, 12, 11, 5, false) if !vm.is_pv() => {
            let k = vm.vgic.lock().sgi1r_write(v, reg(frame, r.reg));
            kick(vm, k);
            true
        }
        // ICC_ASGI1R_EL1 / ICC_SGI0R_EL1: other-group SGIs do not exist for a non-secure guest.
        (3, 0, 12, 11, 6 | 7, false) => true,
        // The ID space (TID3): sanitised real values.
        (3, 0, 0, 1..=7, _, true) => {
            let real = cpu::read_id_reg(r.crm, r.op2);
            set_reg(
                frame,
                r.reg,
                idregs::sanitise((r.crm, r.op2), real, vm.gic_v3),
            );
            true
        }
        _ => {
            log::warn!(
                "{}: vcpu{v}: {} at {:#x} is not emulated; the guest sees it undefined",
                vm.name,
                r,
                frame.elr
            );
            false
        }
    }
}

/// Ends the domain on a fault it cannot be given back: log, stop its other vCPUs, and go on
/// with other vCPUs on this CPU. Ferrite itself goes on.
pub fn crash(frame: &TrapFrame, why: fmt::Arguments) -> ! {
    let (vm, v) = current();
    let reason = alloc::format!("{why}");
    crate::println!(
        "ferrite: domain {} ({}) crashed on vcpu{v}: {reason}",
        vm.id,
        vm.name
    );
    crate::println!("{frame}");
    stop_domain(vm, DomainState::Crashed(reason));
    crate::println!("ferrite: {} is gone; Ferrite keeps running", vm.name);
    super::lifecycle::stopped(vm);
    sched::leave_current();
}

/// Stops every vCPU of `vm`: they leave their pCPUs at their next exit (the caller's own when
/// it calls `sched::leave_current`, which also powers off or reboots when that was the last
/// domain and the boot options say so).
pub fn stop_domain(vm: &'static Vm, why: DomainState) {
    if let Some(line) = vm.vuart.lock().take_partial_line() {
        crate::console::write_guest_line(&line);
    }
    {
        let mut st = vm.state.lock();
        if *st != DomainState::Running {
            return;
        }
        *st = why;
        // SeqCst: pairs with `sched::claim` (see there).
        vm.running.store(false, Ordering::SeqCst);
    }
    for other in 0..vm.vcpus {
        // Its pCPU leaves it at its next decision (the caller's own leaves directly).
        sched::notify_stop(vm, other);
        super::timers::cancel(vm.id, other as u16, super::timers::Kind::OneShot);
        super::timers::cancel(vm.id, other as u16, super::timers::Kind::VirtualTimer);
    }
    let t = sched::now();
    sched::with(|c| {
        for other in 0..vm.vcpus {
            c.block(sched::id(vm, other), t);
        }
    });
}

/// Hands what is in this CPU's list registers back to the vGIC and empties them, so interrupts
/// held by a vCPU that stops are not stranded there.
fn retire_lrs(vm: &Vm, v: usize) {
    let n = vgic_hw::lr_count();
    let mut lrs = vm.vcpu[v].lrs.lock();
    let empty = [Lr::INVALID; vgic_hw::MAX_LRS];
    // The hardware copy was emptied at this exit; hand the vGIC an empty set so it takes back
    // whatever the shadow still held.
    let mut g = vm.vgic.lock();
    g.sync_lrs(v, &empty[..n]);
    if g.hw_work() {
        mirror_hw(g);
    }
    lrs[..n].copy_from_slice(&empty[..n]);
    vm.vcpu[v].lrs_in_use.store(false, Ordering::Relaxed);
}

/// First thing on every exit: fold what the guest did to its list registers (acknowledged,
/// ended interrupts) back into the vGIC, before anything (a physical interrupt for the same
/// INTID, a register write) looks at the vGIC's state.
///
/// The hardware list registers are then emptied (a copy is kept for the refill): left as they
/// are, an ended level interrupt's EOI-maintenance condition or an underflow would keep the
/// maintenance interrupt firing at EL2 for as long as the vCPU is not running.
#[inline]
pub fn after_exit(vm: &Vm, v: usize) {
    if vm.vcpu[v].lrs_in_use.load(Ordering::Relaxed) {
        fold_lrs(vm, v);
    }
    // Otherwise the list registers were left empty: the guest cannot have changed them.
}

#[inline(never)]
fn fold_lrs(vm: &Vm, v: usize) {
    let n = vgic_hw::lr_count();
    let mut lrs = vm.vcpu[v].lrs.lock();
    let written = vgic_hw::read_lrs(&mut lrs[..n]);
    vgic_hw::clear_lrs(written);
    let mut g = vm.vgic.lock();
    g.sync_lrs(v, &lrs[..n]);
    if g.hw_work() {
        mirror_hw(g);
    }
}

/// Makes the physical GIC follow what the guest did to its hardware-backed SPIs: their enables,
/// and deactivation of those whose virtual pending state it discarded. Releases the vGIC first.
#[cold]
fn mirror_hw(mut g: spin::MutexGuard<'_, crate::vgic::Vgic>) {
    let enables = g.take_hw_enables();
    let deactivations = g.take_hw_deactivations();
    drop(g);
    for pintid in deactivations {
        gic::deactivate_spi(pintid);
    }
    for (pintid, on) in enables {
        gic::set_enabled(pintid, on);
    }
}

/// Before every return to a guest: take a due scheduling decision (which may switch to
/// another vCPU, or leave this one if its domain stopped), then give the vCPU that will run
/// its pending interrupts: list registers (dom0) or the upcall line (PV).
pub fn before_return(frame: &mut TrapFrame) {
    let (vm, v) = current();
    before_return_of(frame, vm, v);
}

/// [`before_return`] for vCPU `v` of `vm`, the one running here. Inlined into the exit path:
/// it runs on every exit.
#[inline(always)]
pub fn before_return_of(frame: &mut TrapFrame, vm: &'static Vm, v: usize) {
    // A stopped domain or a vCPU taken down asks for a decision, which leaves it.
    let (vm, v) = if sched::switch_point(frame) {
        current()
    } else {
        (vm, v)
    };
    if let Some(pv) = vm.pv() {
        pv.update_upcall_line(v);
        return;
    }
    refill_lrs(vm, v);
}

/// dom0: give vCPU `v` its pending interrupts through the list registers.
#[inline(never)]
fn refill_lrs(vm: &Vm, v: usize) {
    let vc = &vm.vcpu[v];
    let mut g = vm.vgic.lock();
    if g.quiet(v) {
        // No interrupt for this vCPU anywhere: the common case of a hypercall or MMIO exit costs
        // no list-register work. The hardware's are empty (every exit empties them, and a
        // switch follows an exit); the copy may still hold what that exit read back (e.g. an
        // interrupt the guest has just ended, already folded into the vGIC): forget it.
        if vc.lrs_in_use.load(Ordering::Relaxed) {
            // Only those the hardware has: the rest are never used.
            vc.lrs.lock()[..vgic_hw::lr_count()].fill(Lr::INVALID);
            vc.lrs_in_use.store(false, Ordering::Relaxed);
        }
        return;
    }
    let n = vgic_hw::lr_count();
    let mut lrs = vc.lrs.lock();
    let fill = g.fill_lrs(v, &mut lrs[..n]);
    drop(g);
    vgic_hw::write_lrs(&lrs[..n], fill.underflow);
    let in_use = fill.underflow
        || lrs[..n]
            .iter()
            .any(|l| l.state != crate::vgic::LrState::Invalid);
    vc.lrs_in_use.store(in_use, Ordering::Relaxed);
}
