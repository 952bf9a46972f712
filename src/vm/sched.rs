//! The Credit scheduler at work: one [`Credit`] instance for the machine decides which vCPU
//! each pCPU runs; this module carries its decisions out. It feeds it time (the counter, in
//! ns), the periodic tick, wake-ups (interrupts and events for blocked vCPUs), blocks (WFI,
//! `SCHED_OP BLOCK`) and yields, and performs the world switch (`arch::context`) when a
//! decision names another vCPU. A pCPU with nothing to run sits in [`idle_loop`], in WFI,
//! until an IPI or its timer says a vCPU is waiting.
//!
//! Locking: the scheduler's lock is taken with interrupts masked and never while holding a
//! domain's locks in the other order (domain locks first, then the scheduler).

use super::{NOWHERE, Vm, current, domain, set_current, timers, try_current};
use crate::arch::boot::MAX_CPUS;
use crate::arch::exceptions::TrapFrame;
use crate::arch::{context, cpu, gic, timer};
use crate::domain::power::Power;
use crate::sched::{Config, CpuMask, Credit, SchedError, Time, VcpuId};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

static CREDIT: Mutex<Option<Credit>> = Mutex::new(None);
/// Per pCPU: its next decision is due (a wake-up placed work there, the tick or the slice
/// says so, its vCPU blocked or yielded).
static RESCHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per pCPU: when the current vCPU's run ends (counter ticks).
static SLICE_END: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
static PAUTH: AtomicBool = AtomicBool::new(false);
/// `vwfi=native`: a vCPU's WFI may run at EL1 without trapping while no vCPU waits for a pCPU.
static VWFI_NATIVE: AtomicBool = AtomicBool::new(false);
/// The pCPUs whose vCPU may wait in WFI at EL1: no vCPU waited behind a running one at their
/// last decision (`Credit::contended`). Changed only under the scheduler's lock, so that a
/// vCPU queued anywhere (every queueing happens under that lock, in [`with`]) sees every such
/// pCPU and makes it trap WFI again.
static NATIVE_WFI: AtomicU64 = AtomicU64::new(0);

/// Starts the scheduler for `cfg.pcpus` pCPUs; `vwfi_native`: see [`NATIVE_WFI`].
pub fn init(cfg: Config, vwfi_native: bool) -> Result<(), SchedError> {
    let c = Credit::new(cfg)?;
    PAUTH.store(context::has_pauth(), Ordering::Relaxed);
    VWFI_NATIVE.store(vwfi_native, Ordering::Relaxed);
    let masked = cpu::irqs_masked();
    cpu::irq_disable();
    *CREDIT.lock() = Some(c);
    if !masked {
        cpu::irq_enable();
    }
    log::info!(
        "sched: credit, {} pcpus, slice {} ms, tick {} ms, rate limit {} us, vwfi {}",
        cfg.pcpus,
        cfg.tslice_ns / 1_000_000,
        cfg.tick_ns / 1_000_000,
        cfg.ratelimit_ns / 1000,
        if vwfi_native { "native" } else { "trap" }
    );
    Ok(())
}

/// Runs `f` on the scheduler with interrupts masked (the tick handler takes the same lock).
/// If a vCPU now waits behind a running one, every pCPU that let its vCPU wait in WFI at EL1
/// is made to decide again, and so to trap WFI: an idle vCPU must not keep its pCPU from one
/// with work.
pub fn with<R>(f: impl FnOnce(&mut Credit) -> R) -> Option<R> {
    let masked = cpu::irqs_masked();
    cpu::irq_disable();
    let mut c = CREDIT.lock();
    let r = c.as_mut().map(f);
    let native =
        if NATIVE_WFI.load(Ordering::Relaxed) != 0 && c.as_ref().is_some_and(|c| c.contended()) {
            NATIVE_WFI.swap(0, Ordering::Relaxed)
        } else {
            0
        };
    drop(c);
    if !masked {
        cpu::irq_enable();
    }
    kick_mask(native);
    r
}

/// A scheduling decision for this pCPU, `me`; records whether the vCPU it runs may wait in WFI
/// at EL1 ([`NATIVE_WFI`]).
fn schedule_here(me: usize, t: Time) -> Option<crate::sched::Decision> {
    if !VWFI_NATIVE.load(Ordering::Relaxed) {
        // WFI always traps: nothing to record (NATIVE_WFI stays empty).
        return with(|c| c.schedule(me, t));
    }
    with(|c| {
        let d = c.schedule(me, t);
        if d.next.is_some() && !c.contended() {
            NATIVE_WFI.fetch_or(1 << me, Ordering::Relaxed);
        } else {
            NATIVE_WFI.fetch_and(!(1 << me), Ordering::Relaxed);
        }
        d
    })
}

/// Whether the vCPU running here may wait in WFI at EL1 (`vwfi=native`, nothing waiting).
#[inline]
pub fn wfi_native_here() -> bool {
    NATIVE_WFI.load(Ordering::Relaxed) & (1 << cpu::index()) != 0
}

/// Sets WFI trapping for a dom0 vCPU just chosen here (a PV vCPU's HCR_EL2 is written on
/// every return, with its upcall line: `domu::PvDomain::update_upcall_line`).
fn apply_wfi_trap(vm: &Vm) {
    if VWFI_NATIVE.load(Ordering::Relaxed) && !vm.is_pv() {
        context::trap_wfi(!wfi_native_here());
    }
}

/// The scheduler's clock: the counter in ns.
pub fn now() -> Time {
    timer::ticks_to_ns(timer::counter())
}

pub fn id(vm: &Vm, v: usize) -> VcpuId {
    VcpuId::new(vm.id, v as u16)
}

/// Makes pCPU `p` decide again: at its next exit, or now if it idles.
fn resched(p: usize) {
    if p >= MAX_CPUS {
        return;
    }
    RESCHED[p].store(true, Ordering::Release);
    if p != cpu::index() {
        gic::send_ipi(p);
    }
}

pub fn kick_mask(mask: CpuMask) {
    // Only the set bits: a decision's mask is usually empty.
    let mut m = mask;
    while m != 0 {
        resched(m.trailing_zeros() as usize);
        m &= m - 1;
    }
}

/// Makes the running vCPU's pCPU (this one) decide at the end of this exit.
pub fn resched_here() {
    RESCHED[cpu::index()].store(true, Ordering::Release);
}

/// Registers `vm` and its vCPUs with the scheduler (all blocked); `affinity(v)` is vCPU v's
/// hard affinity.
pub fn add_domain(
    vm: &Vm,
    weight: u32,
    cap: u32,
    affinity: impl Fn(usize) -> CpuMask,
) -> Result<(), SchedError> {
    let t = now();
    with(|c| {
        c.add_domain(vm.id, weight, cap)?;
        for v in 0..vm.vcpus {
            if let Err(e) = c.add_vcpu(id(vm, v), affinity(v), t) {
                for u in 0..v {
                    let _ = c.remove_vcpu(id(vm, u), t);
                }
                let _ = c.remove_domain(vm.id);
                return Err(e);
            }
        }
        Ok(())
    })
    .unwrap_or(Err(SchedError::BadConfig("the scheduler is not running")))
}

/// Takes a stopped domain's vCPUs out of the scheduler.
pub fn remove_domain(vm: &Vm) {
    let t = now();
    let kick = with(|c| {
        let mut kick = 0;
        for v in 0..vm.vcpus {
            kick |= c.remove_vcpu(id(vm, v), t).unwrap_or(0);
        }
        let _ = c.remove_domain(vm.id);
        kick
    });
    kick_mask(kick.unwrap_or(0));
}

/// Wakes vCPU `v` of `vm` if it is up and its domain runs.
pub fn wake(vm: &Vm, v: usize) {
    if !super::is_running(vm)
        || super::lifecycle::is_paused(vm)
        || vm.power.lock().state(v) != Some(Power::On)
    {
        return;
    }
    let t = now();
    // The flag changes with the scheduler's state, under its lock, so the two always agree.
    let woken = with(|c| {
        vm.vcpu[v].blocked.store(false, Ordering::SeqCst);
        c.wake(id(vm, v), t)
    });
    if let Some(Some(p)) = woken {
        resched(p);
    }
}

/// Something is pending for vCPU `v`: wake it if it is blocked, and if it runs on another
/// pCPU, interrupt that pCPU so the vCPU sees it.
///
/// The caller made the interrupt or event pending first; a vCPU that is not blocked needs no
/// scheduler work (most interrupts arrive for a running vCPU). The flag and the pending state
/// are sequentially consistent on both sides, so a vCPU blocking at the same moment either
/// sees the pending work itself (`block_current`) or is seen blocked here.
pub fn notify(vm: &Vm, v: usize) {
    if vm.vcpu[v].blocked.load(Ordering::SeqCst) {
        wake(vm, v);
    }
    let on = vm.vcpu[v].loaded_on.load(Ordering::Acquire);
    if on != NOWHERE && on != cpu::index() {
        gic::send_ipi(on);
    }
}

/// vCPU `v` must leave its pCPU (it was taken down): interrupt that pCPU if it is another.
pub fn notify_stop(vm: &Vm, v: usize) {
    let on = vm.vcpu[v].loaded_on.load(Ordering::SeqCst);
    if on != NOWHERE {
        // Its pCPU decides at its next exit, and the decision sees that it must stop.
        resched(on);
    }
}

/// The running vCPU blocks (WFI, `SCHED_OP BLOCK`): it leaves the CPU at the end of this exit
/// unless `pending()`, checked after blocking so a wake-up in between is not lost, says
/// something arrived.
pub fn block_current(pending: impl Fn() -> bool) {
    let (vm, v) = current();
    let t = now();
    with(|c| {
        vm.vcpu[v].blocked.store(true, Ordering::SeqCst);
        c.block(id(vm, v), t)
    });
    resched_here();
    if pending() {
        wake(vm, v);
    }
}

/// The running vCPU gives way to another (`SCHED_OP YIELD`).
pub fn yield_current() {
    let (vm, v) = current();
    let t = now();
    with(|c| c.yield_(id(vm, v), t));
    resched_here();
}

/// The timer interrupt (CNTHP): the periodic tick, expired vCPU timers, the end of a run.
pub fn on_timer_irq() {
    let me = cpu::index();
    let ticked = timer::handle_tick();
    let t = timer::counter();
    timers::expire(me, t);
    if ticked {
        super::lifecycle::poll();
        let ns = timer::ticks_to_ns(t);
        if let Some(tick) = with(|c| c.tick(me, ns)) {
            if tick.resched {
                resched_here();
            }
            kick_mask(tick.kick);
        }
    }
    if t >= SLICE_END[me].load(Ordering::Relaxed) {
        SLICE_END[me].store(u64::MAX, Ordering::Relaxed);
        resched_here();
    }
    reprogram();
}

/// Sets this pCPU's timer for its next event: tick, vCPU timer or end of run.
pub fn reprogram() {
    let me = cpu::index();
    timer::program(timers::next(me).min(SLICE_END[me].load(Ordering::Relaxed)));
}

fn set_slice(run_for: Time) {
    let me = cpu::index();
    let end = if run_for == Time::MAX {
        u64::MAX
    } else {
        timer::counter().saturating_add(timer::ns_to_ticks(run_for))
    };
    SLICE_END[me].store(end, Ordering::Relaxed);
}

/// At the end of every exit: if a decision is due, take it, and switch vCPUs if it names
/// another one (or idle if none). Returns with `frame` holding the vCPU to return to, and
/// whether that is another vCPU.
#[inline]
pub fn switch_point(frame: &mut TrapFrame) -> bool {
    // Nothing due: the common case costs one load.
    RESCHED[cpu::index()].load(Ordering::Relaxed) && decide(frame)
}

#[inline(never)]
fn decide(frame: &mut TrapFrame) -> bool {
    let me = cpu::index();
    if !RESCHED[me].swap(false, Ordering::AcqRel) {
        return false;
    }
    let (vm, v) = current();
    // Its domain stopped, or another vCPU took it down (both ask for a decision here).
    if !super::is_running(vm) {
        leave_current();
    }
    if vm.is_pv() && super::domu::must_stop(vm, v) {
        leave_current_then(|| super::domu::went_down(vm, v));
    }
    let t = now();
    let Some(d) = schedule_here(me, t) else {
        return false;
    };
    kick_mask(d.kick);
    set_slice(d.run_for);
    reprogram();
    match d.next {
        Some(n) if n == id(vm, v) => {
            apply_wfi_trap(vm);
            false
        }
        next => {
            let start = crate::arch::pmu::instructions();
            save_current(vm, v, frame);
            match next.and_then(|n| Some((domain(n.dom)?, n.vcpu as usize))) {
                Some((nvm, nv)) if claim(nvm, nv) => {
                    load(nvm, nv, frame);
                    apply_wfi_trap(nvm);
                    super::stats::switched(crate::arch::pmu::instructions().wrapping_sub(start));
                    true
                }
                // Gone or stopped meanwhile: decide again from idle.
                _ => idle_after_exit(),
            }
        }
    }
}

/// Saves the running vCPU's state and frees this CPU of it.
fn save_current(vm: &'static Vm, v: usize, frame: &TrapFrame) {
    let vc = &vm.vcpu[v];
    let mut ctx = vc.ctx.lock();
    context::save(&mut ctx, frame, PAUTH.load(Ordering::Relaxed));
    if !vm.is_pv() {
        // Its virtual timer may be active at the GIC through a list register's HW bit; the next
        // vCPU must be able to take its own.
        gic::deactivate_ppi(crate::vm::build::VTIMER_PPI);
    }
    // Its virtual timer keeps counting while it is away: wake it when it would fire.
    let (ctl, cval) = (ctx.el1.cntv_ctl, ctx.el1.cntv_cval);
    let cntvoff = ctx.el2.cntvoff;
    drop(ctx);
    if ctl & 3 == 1 {
        timers::arm(
            cpu::index(),
            timers::Entry {
                deadline: cval.wrapping_add(cntvoff),
                dom: vm.id,
                vcpu: v as u16,
                kind: timers::Kind::VirtualTimer,
            },
        );
    }
    vc.loaded_on.store(NOWHERE, Ordering::Release);
    set_current(None);
}

/// Takes vCPU `v` of `vm` for this CPU once the pCPU it last ran on has saved it. Returns
/// false (leaving it) if its domain stopped, is being destroyed or was paused meanwhile.
///
/// Sequentially consistent with `exit::stop_domain`, `lifecycle::pause` and
/// `lifecycle::all_vcpus_off`: either this sees the domain stopped or paused and backs off, or
/// they see the vCPU loaded here (and IPI this CPU, or wait for it to leave).
fn claim(vm: &'static Vm, v: usize) -> bool {
    let me = cpu::index();
    let vc = &vm.vcpu[v];
    while vc
        .loaded_on
        .compare_exchange(NOWHERE, me, Ordering::SeqCst, Ordering::Acquire)
        .is_err()
    {
        core::hint::spin_loop();
    }
    if !vm.running.load(Ordering::SeqCst)
        || vm.life.paused.load(Ordering::SeqCst)
        || vm.life.dying.load(Ordering::SeqCst)
    {
        vc.loaded_on.store(NOWHERE, Ordering::SeqCst);
        return false;
    }
    true
}

/// Loads vCPU `v` of `vm`, [`claim`]ed for this CPU, into `frame`.
fn load(vm: &'static Vm, v: usize, frame: &mut TrapFrame) {
    let vc = &vm.vcpu[v];
    if !vm.life.started.load(Ordering::Relaxed) {
        super::lifecycle::first_run(vm);
    }
    let invalidate = vm.last_ran.load(cpu::index(), v as u16);
    let ctx = vc.ctx.lock();
    context::load(&ctx, frame, PAUTH.load(Ordering::Relaxed), invalidate);
    drop(ctx);
    set_current(Some((vm, v)));
}

/// The running vCPU stops for good, or until it is started again (CPU_OFF, its domain shut
/// down or crashed): it is blocked, its timer stopped, and this CPU goes on with others.
pub fn leave_current() -> ! {
    leave_current_then(|| {})
}

/// [`leave_current`], running `after` once the vCPU is off this CPU.
pub fn leave_current_then(after: impl FnOnce()) -> ! {
    cpu::irq_disable();
    if let Some((vm, v)) = try_current() {
        let t = now();
        with(|c| c.block(id(vm, v), t));
        timer::stop_virtual();
        if !vm.is_pv() {
            gic::deactivate_ppi(crate::vm::build::VTIMER_PPI);
        }
        vm.vcpu[v].loaded_on.store(NOWHERE, Ordering::Release);
        set_current(None);
        after();
        // Once polled, a destroyed domain's record may be gone: read what is needed first.
        let stopped = !super::is_running(vm);
        super::lifecycle::poll();
        if stopped && super::running_domains() == 0 && !super::lifecycle::restart_pending() {
            crate::boot::all_domains_gone();
        }
    }
    idle_after_exit()
}

/// [`idle_loop`] from an exit whose vCPU left this CPU (a WFI or `BLOCK` with nothing else to
/// run, a vCPU that stopped): the exit never returns to the guest, so it is counted here.
fn idle_after_exit() -> ! {
    super::stats::end();
    idle_loop()
}

/// What a pCPU does when it has no vCPU: decide, and if there is nothing to run, wait in WFI
/// for an interrupt that brings work.
pub fn idle_loop() -> ! {
    let me = cpu::index();
    cpu::irq_disable();
    set_current(None);
    loop {
        super::lifecycle::poll();
        let t = now();
        if let Some(d) = schedule_here(me, t) {
            kick_mask(d.kick);
            if let Some((vm, v)) = d.next.and_then(|n| Some((domain(n.dom)?, n.vcpu as usize)))
                && claim(vm, v)
            {
                set_slice(d.run_for);
                reprogram();
                enter(vm, v);
            }
        }
        SLICE_END[me].store(u64::MAX, Ordering::Relaxed);
        reprogram();
        context::lower_virtual_irq();
        while !RESCHED[me].swap(false, Ordering::AcqRel) {
            // WFI wakes on a pending interrupt even while masked; it is taken once unmasked.
            cpu::wfi();
            super::stats::idle_woke();
            cpu::irq_enable();
            cpu::irq_disable();
        }
    }
}

/// Enters vCPU `v` of `vm` from the idle loop.
fn enter(vm: &'static Vm, v: usize) -> ! {
    super::prepare_cpu();
    crate::arch::vcpu::enter(|frame| {
        load(vm, v, frame);
        apply_wfi_trap(vm);
        super::exit::before_return(frame);
    })
}
