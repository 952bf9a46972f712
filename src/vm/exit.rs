//! What a running vCPU asks for when it exits to Ferrite: PSCI and hypercalls, emulated MMIO
//! (distributor, redistributors, console UART), trapped system registers, WFI, and faults that
//! end the domain. Every bad request gets the architecture's answer or crashes that domain
//! alone, with a log line naming it and the reason: never Ferrite.

use super::{Vm, current, kick, stop_here};
use crate::arch::exceptions::TrapFrame;
use crate::arch::trap::{Mmio, SysReg, reg, set_reg};
use crate::arch::{cpu, gic, vgic_hw};
use crate::domain::DomainState;
use crate::vdev::{idregs, psci};
use crate::vgic::Lr;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

/// HVC/SMC: PSCI first, then Ferrite's own calls (none yet: SMCCC "unknown function").
pub fn call(frame: &mut TrapFrame) {
    let (vm, v) = current();
    let x = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
    let ret = match psci::decode(x) {
        psci::Call::Return(r) => r,
        psci::Call::CpuOn {
            target,
            entry,
            context,
        } => {
            let r = vm.power.lock().cpu_on(target, entry, context);
            match r {
                Ok(t) => {
                    log::debug!("{}: vcpu{v}: CPU_ON vcpu{t} at {entry:#x}", vm.name);
                    super::request_start(t);
                    psci::SUCCESS
                }
                Err(e) => e,
            }
        }
        psci::Call::CpuOff => {
            retire_lrs(vm, v);
            vm.power.lock().cpu_off(v);
            log::debug!("{}: vcpu{v}: CPU_OFF", vm.name);
            stop_here();
        }
        psci::Call::Suspend => {
            wfi(frame);
            psci::SUCCESS
        }
        psci::Call::AffinityInfo { target, level } => vm.power.lock().affinity_info(target, level),
        psci::Call::SystemOff => {
            log::info!("{}: PSCI SYSTEM_OFF", vm.name);
            *vm.state.lock() = DomainState::PoweredOff;
            crate::boot::power_off();
        }
        psci::Call::SystemReset => {
            log::info!("{}: PSCI SYSTEM_RESET", vm.name);
            *vm.state.lock() = DomainState::Rebooting;
            crate::boot::reboot();
        }
        psci::Call::NotPsci => hypercall(vm, v, frame),
    };
    frame.x[0] = ret as u64;
}

/// Ferrite's own calls (guest/abi, docs/abi.md). dom0 has the version and feature queries so
/// far; the PV calls arrive with PV domUs. Anything else: -ENOSYS, or SMCCC's "unknown".
fn hypercall(vm: &Vm, v: usize, frame: &TrapFrame) -> i64 {
    use ferrite_abi::{call, errno};
    let f = frame.x[0] as u32;
    match f {
        call::VERSION => call::version_word() as i64,
        // dom0 has the console; the PV memory and scheduling calls come with PV domUs.
        call::FEATURES if frame.x[1] == 0 => call::features::CONSOLE as i64,
        call::FEATURES => errno::EINVAL,
        call::CONSOLE_IO => console_io(vm, v, frame),
        _ if call::is_ferrite_call(frame.x[0]) => {
            log::debug!("{}: vcpu{v}: hypercall {f:#x} not available", vm.name);
            errno::ENOSYS
        }
        _ => {
            log::debug!("{}: vcpu{v}: unknown call {f:#x}", vm.name);
            -1 // SMCCC: unknown function identifier
        }
    }
}

/// CONSOLE_IO WRITE: the guest's bytes, from its own memory, on Ferrite's console.
fn console_io(vm: &Vm, v: usize, frame: &TrapFrame) -> i64 {
    use ferrite_abi::{call, errno};
    /// At most this much per call: a guest cannot hold a CPU in Ferrite for long.
    const MAX: usize = 4096;
    let (cmd, va, len) = (frame.x[1], frame.x[2], frame.x[3] as usize);
    if cmd != call::console::WRITE {
        return errno::EINVAL;
    }
    let len = len.min(MAX);
    let mut buf = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len());
        if !crate::arch::guest_mem::read(va.wrapping_add(done as u64), &mut buf[..n], &vm.memory) {
            log::warn!(
                "{}: vcpu{v}: CONSOLE_IO from {va:#x}: not the domain's memory",
                vm.name
            );
            return if done == 0 {
                errno::EFAULT
            } else {
                done as i64
            };
        }
        crate::console::write_guest_line(&buf[..n]);
        done += n;
    }
    done as i64
}

/// WFI: the vCPU waits until an interrupt is deliverable to it.
pub fn wfi(_frame: &mut TrapFrame) {
    let (vm, v) = current();
    loop {
        if vm.vgic.lock().has_pending(v) || !super::is_running(vm) {
            return;
        }
        // Masked WFI wakes on any pending physical interrupt; unmasking then takes it (the
        // handler may make an interrupt pending for this vCPU).
        cpu::wfi();
        cpu::irq_enable();
        cpu::irq_disable();
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
                let hw = g.take_hw_enables();
                drop(g);
                for (pintid, on) in hw {
                    gic::set_enabled(pintid, on);
                }
                kick(k);
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
                kick(k);
                0
            })
        } else {
            g.redist_read(v, off, m.size)
        }
        .map_err(|_| "redistributor access the GIC architecture does not allow")
    } else if let Some(r) = vm.uart.filter(|r| r.contains(m.ipa)) {
        uart(vm, m, m.ipa - r.start, value)
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

fn uart(vm: &Vm, m: Mmio, off: u64, value: u64) -> Result<u64, &'static str> {
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
        kick(k);
    }
    Ok(read)
}

/// A trapped system register. Returns false to make it undefined for the guest.
pub fn sysreg(frame: &mut TrapFrame, r: SysReg) -> bool {
    let (vm, v) = current();
    match (r.op0, r.op1, r.crn, r.crm, r.op2, r.read) {
        // ICC_SGI1R_EL1: the guest sends an SGI.
        (3, 0, 12, 11, 5, false) => {
            let k = vm.vgic.lock().sgi1r_write(v, reg(frame, r.reg));
            kick(k);
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

/// Ends the domain on a fault it cannot be given back: log, stop its other vCPUs, and leave
/// this CPU idle. Ferrite itself goes on.
pub fn crash(frame: &TrapFrame, why: fmt::Arguments) -> ! {
    let (vm, v) = current();
    let reason = alloc::format!("{why}");
    crate::println!(
        "ferrite: domain {} ({}) crashed on vcpu{v}: {reason}",
        vm.id,
        vm.name
    );
    crate::println!("{frame}");
    if let Some(line) = vm.vuart.lock().take_partial_line() {
        crate::console::write_guest_line(&line);
    }
    *vm.state.lock() = DomainState::Crashed(reason);
    for other in (0..vm.vcpus).filter(|&o| o != v) {
        gic::send_ipi(other);
    }
    crate::println!("ferrite: {} is gone; Ferrite keeps running", vm.name);
    crate::boot::all_domains_gone();
    stop_here();
}

/// Hands what is in this CPU's list registers back to the vGIC and empties them, so interrupts
/// held by a vCPU that stops are not stranded there.
fn retire_lrs(vm: &Vm, v: usize) {
    let n = vgic_hw::lr_count();
    let mut lrs = SHADOW[v].lock();
    let empty = [Lr::INVALID; vgic_hw::MAX_LRS];
    // The hardware copy was emptied at this exit; hand the vGIC an empty set so it takes back
    // whatever the shadow still held.
    vm.vgic.lock().sync_lrs(v, &empty[..n]);
    lrs[..n].copy_from_slice(&empty[..n]);
    LRS_IN_USE[v].store(false, Ordering::Relaxed);
}

/// First thing on every exit: fold what the guest did to its list registers (acknowledged,
/// ended interrupts) back into the vGIC, before anything (a physical interrupt for the same
/// INTID, a register write) looks at the vGIC's state.
///
/// The hardware list registers are then emptied (a copy is kept for the refill): left as they
/// are, an ended level interrupt's EOI-maintenance condition or an underflow would keep the
/// maintenance interrupt firing at EL2 for as long as the vCPU is not running.
pub fn after_exit() {
    let (vm, v) = current();
    if !LRS_IN_USE[v].load(Ordering::Relaxed) {
        // The list registers were left empty: the guest cannot have changed them.
        return;
    }
    let n = vgic_hw::lr_count();
    let mut lrs = SHADOW[v].lock();
    vgic_hw::read_lrs(&mut lrs[..n]);
    vgic_hw::clear_lrs(n);
    vm.vgic.lock().sync_lrs(v, &lrs[..n]);
}

/// Per CPU: its list registers hold something (or the underflow interrupt is on).
static LRS_IN_USE: [AtomicBool; crate::arch::boot::MAX_CPUS] =
    [const { AtomicBool::new(false) }; crate::arch::boot::MAX_CPUS];

/// Each CPU's list registers as its vCPU left them (see [`after_exit`]).
static SHADOW: [spin::Mutex<[Lr; vgic_hw::MAX_LRS]>; crate::arch::boot::MAX_CPUS] =
    [const { spin::Mutex::new([Lr::INVALID; vgic_hw::MAX_LRS]) }; crate::arch::boot::MAX_CPUS];

/// Before every return to the guest: refill the list registers, and leave if the domain has
/// stopped meanwhile.
pub fn before_return(_frame: &mut TrapFrame) {
    let (vm, v) = current();
    if !super::is_running(vm) {
        stop_here();
    }
    let mut g = vm.vgic.lock();
    if !LRS_IN_USE[v].load(Ordering::Relaxed) && g.quiet(v) {
        // No interrupt for this vCPU anywhere, and its list registers are empty already: the
        // common case of a hypercall or MMIO exit costs no list-register work.
        return;
    }
    let n = vgic_hw::lr_count();
    let mut lrs = SHADOW[v].lock();
    let fill = g.fill_lrs(v, &mut lrs[..n]);
    drop(g);
    vgic_hw::write_lrs(&lrs[..n], fill.underflow);
    let in_use = fill.underflow
        || lrs[..n]
            .iter()
            .any(|l| l.state != crate::vgic::LrState::Invalid);
    LRS_IN_USE[v].store(in_use, Ordering::Relaxed);
}
