//! PV domUs at run time: their shared-info page and upcalls, and the calls that are not about
//! memory: `SCHED_OP`, `SET_TIMER_OP`, `VCPU_OP`, and the translation-control registers that
//! HCR_EL2.TVM traps. The PV MMU calls are in [`super::pvmm`], building a PV domU in
//! [`super::build_pv`].

use super::{Vm, sched, timers};
use crate::arch::context::Context;
use crate::arch::exceptions::TrapFrame;
use crate::arch::trap::{SysReg, reg};
use crate::arch::{context, cpu, timer};
use crate::domain::DomainState;
use crate::domain::power::Power;
use crate::pv::{FrameTable, GuestMemory};
use core::arch::asm;
use core::sync::atomic::Ordering;
use ferrite_abi::shared_info::{SharedInfo, VcpuInfo};
use ferrite_abi::{call, errno, sched as abi_sched};
use spin::Mutex;

/// MAIR_EL1 of every PV domU (docs/abi.md): index 0 Device-nGnRE, 1 Normal write-back,
/// 2 Normal non-cacheable.
pub const MAIR: u64 = 0x0000_0000_0044_FF04;
/// SCTLR_EL1 at start: the reset value with M, C and I.
pub const SCTLR: u64 = context::SCTLR_EL1_RESET | 1 | (1 << 2) | (1 << 12);
/// TCR_EL1.EPD0 / EPD1: no walks through that half (its base is cleared).
pub const TCR_EPD0: u64 = 1 << 7;
pub const TCR_EPD1: u64 = 1 << 23;

/// What Ferrite keeps for a PV domain besides its `Vm`.
pub struct PvDomain {
    /// Its frames and the page-table state built on them (src/pv).
    pub frames: Mutex<FrameTable<super::grant::PvGrants>>,
    /// Machine address of the shared-info page (held writable by Ferrite for the domain's life).
    pub shared_info: u64,
    /// Where its start-info page is, as a frame number of its initial allocation.
    pub start_info_pfn: u64,
    /// The most frames it may own (ballooning up stops there).
    pub max_pages: u64,
    /// HCR_EL2 of its vCPUs (the upcall line adds VI).
    pub hcr: u64,
}

/// Ferrite's view of physical memory for the validator: RAM is identity-mapped at EL2.
pub struct Phys;

impl GuestMemory for Phys {
    fn read_u64(&self, pa: u64) -> Option<u64> {
        // SAFETY: the validator asks only for words of frames the domain owns (its tables),
        // which are RAM in Ferrite's identity map; 8-aligned by the validator's checks.
        (pa.is_multiple_of(8)).then(|| unsafe { core::ptr::read_volatile(pa as *const u64) })
    }

    fn write_u64(&mut self, pa: u64, v: u64) -> bool {
        if !pa.is_multiple_of(8) {
            return false;
        }
        // SAFETY: as in read_u64; an aligned 64-bit store is single-copy atomic, so a table
        // walk sees the old or the new descriptor. The barrier makes it visible to walks.
        unsafe {
            core::ptr::write_volatile(pa as *mut u64, v);
            asm!("dsb ishst", options(nostack, preserves_flags));
        }
        true
    }

    fn flush_tlbs(&mut self) {
        // SAFETY: invalidates the current VMID's stage-1 entries on every CPU; the calling
        // vCPU's domain is the one loaded (VTTBR_EL2) while its hypercall runs.
        unsafe {
            asm!(
                "dsb ishst",
                "tlbi vmalle1is",
                "dsb ish",
                "isb",
                options(nostack)
            )
        };
    }
}

impl PvDomain {
    #[inline]
    fn vcpu_info(&self, v: usize) -> &VcpuInfo {
        // SAFETY: the shared-info page is one of the domain's frames that Ferrite holds
        // writable for the domain's life (it can never become a page table), identity-mapped
        // at EL2; every field Ferrite touches is atomic, as the guest writes it concurrently.
        let si = unsafe { &*(self.shared_info as *const SharedInfo) };
        &si.vcpu_info[v % ferrite_abi::shared_info::MAX_VCPUS]
    }

    pub fn upcall_pending(&self, v: usize) -> bool {
        // SeqCst: pairs with `raise_virq` and the blocked flag (see `sched::notify`).
        self.vcpu_info(v).upcall_pending.load(Ordering::SeqCst) != 0
    }

    /// Before a return to vCPU `v` (running here): the virtual IRQ line follows
    /// `upcall_pending` unless the guest masked upcalls. WFI runs at EL1 only where
    /// `vwfi=native` allows and upcalls are unmasked: the virtual IRQ that ends it is then the
    /// upcall itself (with upcalls masked, a trapped WFI still returns when one is pending).
    #[inline]
    pub fn update_upcall_line(&self, v: usize) {
        use crate::arch::vcpu::{HCR_TWI, HCR_VI};
        let i = self.vcpu_info(v);
        let unmasked = i.upcall_mask.load(Ordering::Relaxed) == 0;
        let up = i.upcall_pending.load(Ordering::Acquire) != 0 && unmasked;
        let mut hcr = self.hcr | if up { HCR_VI } else { 0 };
        if unmasked && sched::wfi_native_here() {
            hcr &= !HCR_TWI;
        }
        context::set_hcr(hcr);
    }
}

/// Sets `bits` in vCPU `v`'s pending virtual interrupts and raises its upcall: a blocked vCPU
/// wakes (BOOSTed), a running one on another CPU is interrupted.
pub fn raise_virq(vm: &'static Vm, v: usize, bits: u32) {
    let Some(pv) = vm.pv() else { return };
    let i = pv.vcpu_info(v);
    i.virq_pending.fetch_or(bits, Ordering::AcqRel);
    i.upcall_pending.store(1, Ordering::SeqCst);
    sched::notify(vm, v);
    super::events::on_virq_bits(vm, v, bits);
}

/// Whether the CPU has 16-bit ASIDs (ID_AA64MMFR0_EL1.ASIDBits = 2).
pub fn asid16() -> bool {
    (cpu::read_id_reg(7, 0) >> 4) & 0xf == 2
}

/// `SCHED_OP`.
#[inline(never)]
pub fn sched_op(vm: &'static Vm, v: usize, frame: &mut TrapFrame) -> i64 {
    match frame.x[1] {
        abi_sched::YIELD => {
            sched::yield_current();
            0
        }
        abi_sched::BLOCK => {
            let pv = vm.pv().expect("a PV call from a PV domain");
            let pending = || pv.upcall_pending(v) || !super::is_running(vm);
            if !pending() {
                // The result must be in place before the vCPU may leave the CPU.
                frame.x[0] = 0;
                sched::block_current(pending);
            }
            0
        }
        abi_sched::SHUTDOWN => {
            let Some(reason) = abi_sched::ShutdownReason::from_raw(frame.x[2]) else {
                return errno::EINVAL;
            };
            shutdown(vm, v, reason)
        }
        abi_sched::POLL => errno::ENOSYS,
        _ => errno::ENOSYS,
    }
}

fn shutdown(vm: &'static Vm, v: usize, reason: abi_sched::ShutdownReason) -> ! {
    use abi_sched::ShutdownReason as R;
    let (state, what) = match reason {
        R::PowerOff => (DomainState::PoweredOff, "power off"),
        R::Reboot => (DomainState::Rebooting, "reboot"),
        R::Suspend => (
            DomainState::PoweredOff,
            "suspend (not supported yet: stopped)",
        ),
        R::Crash => (
            DomainState::Crashed("it reported a crash (SHUTDOWN crash)".into()),
            "crash",
        ),
        R::Watchdog => (
            DomainState::Crashed("its watchdog fired (SHUTDOWN watchdog)".into()),
            "watchdog",
        ),
    };
    crate::println!(
        "ferrite: domain {} ({}) shut down from vcpu{v}: {what}",
        vm.id,
        vm.name
    );
    super::exit::stop_domain(vm, state);
    super::lifecycle::stopped(vm);
    sched::leave_current()
}

/// `SET_TIMER_OP`: a one-shot timer at `deadline` ticks of the vCPU's virtual counter.
#[inline(never)]
pub fn set_timer(vm: &'static Vm, v: usize, deadline: u64) -> i64 {
    let vc = &vm.vcpu[v];
    if deadline == 0 {
        vc.timer_deadline.store(0, Ordering::Release);
        timers::cancel(vm.id, v as u16, timers::Kind::OneShot);
        return 0;
    }
    let phys = deadline.wrapping_add(vm.cntvoff);
    if phys <= timer::counter() {
        vc.timer_deadline.store(0, Ordering::Release);
        raise_virq(vm, v, ferrite_abi::shared_info::virq::TIMER);
        return 0;
    }
    vc.timer_deadline.store(phys, Ordering::Release);
    timers::arm(
        cpu::index(),
        timers::Entry {
            deadline: phys,
            dom: vm.id,
            vcpu: v as u16,
            kind: timers::Kind::OneShot,
        },
    );
    sched::reprogram();
    0
}

fn read_el1(r: &str) -> u64 {
    let v: u64;
    // SAFETY: reading the running vCPU's EL1 translation controls; no side effects.
    unsafe {
        match r {
            "ttbr0" => asm!("mrs {}, ttbr0_el1", out(reg) v, options(nomem, nostack)),
            "ttbr1" => asm!("mrs {}, ttbr1_el1", out(reg) v, options(nomem, nostack)),
            "tcr" => asm!("mrs {}, tcr_el1", out(reg) v, options(nomem, nostack)),
            "mair" => asm!("mrs {}, mair_el1", out(reg) v, options(nomem, nostack)),
            "amair" => asm!("mrs {}, amair_el1", out(reg) v, options(nomem, nostack)),
            _ => asm!("mrs {}, sctlr_el1", out(reg) v, options(nomem, nostack)),
        }
    }
    v
}

/// `VCPU_OP`.
#[inline(never)]
pub fn vcpu_op(vm: &'static Vm, v: usize, frame: &mut TrapFrame) -> i64 {
    let (cmd, target) = (frame.x[1], frame.x[2]);
    if target >= vm.vcpus as u64 {
        return errno::ENOENT;
    }
    let t = target as usize;
    match cmd {
        call::vcpu::IS_UP => (vm.power.lock().state(t) == Some(Power::On)) as i64,
        call::vcpu::UP => {
            let (entry, x0) = (frame.x[3], frame.x[4]);
            let mut power = vm.power.lock();
            if power.state(t) != Some(Power::Off) {
                return errno::EEXIST;
            }
            if !entry.is_multiple_of(4) {
                return errno::EINVAL;
            }
            let pv = vm.pv().expect("a PV call from a PV domain");
            pv.frames.lock().copy_bases(v, t, &mut Phys);
            let el2 = vm.vcpu[t].ctx.lock().el2;
            let mut ctx = Context::reset(entry, x0, el2);
            ctx.el1.sctlr = read_el1("sctlr");
            ctx.el1.tcr = read_el1("tcr");
            ctx.el1.mair = MAIR;
            ctx.el1.ttbr0 = read_el1("ttbr0");
            ctx.el1.ttbr1 = read_el1("ttbr1");
            *vm.vcpu[t].ctx.lock() = ctx;
            // A DOWN that has not taken effect yet is superseded.
            vm.vcpu[t].stop.store(false, Ordering::Release);
            let _ = power.cpu_on(t as u64, entry, x0);
            power.take_start(t);
            drop(power);
            sched::wake(vm, t);
            0
        }
        call::vcpu::DOWN => {
            let mut power = vm.power.lock();
            let up = (0..vm.vcpus)
                .filter(|&i| power.state(i) == Some(Power::On))
                .count();
            if power.state(t) != Some(Power::On) {
                return 0;
            }
            if up <= 1 {
                return errno::EBUSY;
            }
            power.cpu_off(t);
            drop(power);
            timers::cancel(vm.id, t as u16, timers::Kind::OneShot);
            if t == v {
                frame.x[0] = 0;
                went_down(vm, t);
                sched::leave_current();
            }
            // It stops at its pCPU's next decision; its bases go when it has left (a table
            // must not lose its base reference while a vCPU may still walk it).
            vm.vcpu[t].stop.store(true, Ordering::Release);
            let tm = sched::now();
            sched::with(|c| c.block(sched::id(vm, t), tm));
            if vm.vcpu[t].loaded_on.load(Ordering::Acquire) == super::NOWHERE
                && vm.vcpu[t].stop.swap(false, Ordering::AcqRel)
            {
                went_down(vm, t);
            } else {
                sched::notify_stop(vm, t);
            }
            0
        }
        _ => errno::ENOSYS,
    }
}

/// A write HCR_EL2.TVM (or TACR) trapped. Returns `Some(true)` if it was carried out,
/// `Some(false)` to refuse it (the guest takes an Undefined Instruction exception), `None` if
/// it is not one of these registers.
pub fn trapped_write(vm: &Vm, v: usize, frame: &TrapFrame, r: SysReg) -> Option<bool> {
    let val = reg(frame, r.reg);
    let refuse = |what: &str| {
        log::warn!(
            "{}: vcpu{v}: write of {val:#x} to {what} refused at {:#x} (Ferrite fixes it for PV \
             domains; see docs/abi.md)",
            vm.name,
            frame.elr
        );
        false
    };
    let same = |name: &str, what: &str| {
        if read_el1(name) == val {
            true
        } else {
            refuse(what)
        }
    };
    Some(match (r.op0, r.op1, r.crn, r.crm, r.op2) {
        (3, 0, 1, 0, 0) => {
            // SCTLR_EL1: the MMU stays on and little-endian.
            if val & 1 == 0 || val & (3 << 24) != 0 {
                refuse("SCTLR_EL1 (MMU off or big-endian)")
            } else {
                write_el1(El1Reg::Sctlr, val);
                true
            }
        }
        (3, 0, 1, 0, 1) => true, // ACTLR_EL1: implementation defined; ignored.
        (3, 0, 2, 0, 0) => same("ttbr0", "TTBR0_EL1 (use MMUEXT_OP NEW_TTBR0)"),
        (3, 0, 2, 0, 1) => same("ttbr1", "TTBR1_EL1 (use MMUEXT_OP NEW_TTBR1)"),
        (3, 0, 2, 0, 2) => same("tcr", "TCR_EL1"),
        (3, 0, 10, 2, 0) => same("mair", "MAIR_EL1"),
        (3, 0, 10, 3, 0) => same("amair", "AMAIR_EL1"),
        (3, 0, 13, 0, 1) => write_el1(El1Reg::Contextidr, val),
        (3, 0, 5, 2, 0) => write_el1(El1Reg::Esr, val),
        (3, 0, 6, 0, 0) => write_el1(El1Reg::Far, val),
        (3, 0, 5, 1, 0) => write_el1(El1Reg::Afsr0, val),
        (3, 0, 5, 1, 1) => write_el1(El1Reg::Afsr1, val),
        _ => return None,
    })
}

/// vCPU `v` is down and off every CPU: its translation bases are released.
pub fn went_down(vm: &Vm, v: usize) {
    if let Some(pv) = vm.pv() {
        pv.frames.lock().clear_bases(v, &mut Phys);
    }
}

/// The EL1 registers HCR_EL2.TVM traps that a PV guest may write freely.
enum El1Reg {
    Sctlr,
    Contextidr,
    Esr,
    Far,
    Afsr0,
    Afsr1,
}

/// Carries out a trapped write the guest is allowed; returns true.
fn write_el1(r: El1Reg, val: u64) -> bool {
    // SAFETY: the running vCPU's own EL1 registers, set to what its own write would have set
    // (SCTLR only once checked to keep the MMU on): nothing at EL2 or in another domain uses
    // them.
    unsafe {
        match r {
            El1Reg::Sctlr => asm!("msr sctlr_el1, {}", "isb", in(reg) val, options(nostack)),
            El1Reg::Contextidr => asm!("msr contextidr_el1, {}", in(reg) val, options(nostack)),
            El1Reg::Esr => asm!("msr esr_el1, {}", in(reg) val, options(nostack)),
            El1Reg::Far => asm!("msr far_el1, {}", in(reg) val, options(nostack)),
            El1Reg::Afsr0 => asm!("msr afsr0_el1, {}", in(reg) val, options(nostack)),
            El1Reg::Afsr1 => asm!("msr afsr1_el1, {}", in(reg) val, options(nostack)),
        }
    }
    true
}

/// Whether vCPU `v`, running here, must stop before returning (VCPU_OP DOWN from another
/// vCPU).
pub fn must_stop(vm: &Vm, v: usize) -> bool {
    vm.vcpu[v].stop.load(Ordering::Relaxed) && vm.vcpu[v].stop.swap(false, Ordering::AcqRel)
}
