//! A domain's life after it is built: pause and unpause, what happens when it stops (its
//! `on_crash`, `on_poweroff`, `on_reboot` settings), and destruction, which hands every frame
//! back to free memory and makes its id free again.
//!
//! Destruction runs in steps, because other CPUs may still be touching the domain:
//! 1. its vCPUs are stopped and must have left their CPUs;
//! 2. nobody else may still map its granted pages (dom0's window, a PV peer);
//! 3. it is unpublished (`domain(id)` finds nothing) and taken out of the scheduler, event
//!    channels, grant tables and device bus; every other CPU is sent an IPI;
//! 4. once each has taken an interrupt since (which it only does between exits, holding no
//!    reference to any domain), its page tables are released, its frames freed and its record
//!    dropped; a restart builds it again.
//!
//! [`poll`] moves each dying domain on as far as it can, never waiting long: it runs when a
//! vCPU leaves its CPU, on the scheduler tick, in the idle loop, and on dom0's `DESTROY`.

use super::{NOWHERE, Vm, domain, sched};
use crate::arch::{cpu, smp};
use crate::domain::DomainState;
use crate::domain::config::{Action, DomuSpec};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use spin::Mutex;

/// Where a domain's kernel came from, kept so that it can be built again (restart).
#[derive(Clone)]
pub enum Image {
    /// Packed into Ferrite's own image.
    Packed(&'static [u8]),
    /// Copied from dom0's memory by `DOMCTL CREATE`.
    Copied(Arc<Vec<u8>>),
    /// None: a restored domain (it cannot be built again from scratch).
    None,
}

impl Image {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Image::Packed(b) => b,
            Image::Copied(b) => b,
            Image::None => &[],
        }
    }
}

/// What a domU was built from.
#[derive(Clone)]
pub struct Origin {
    pub spec: DomuSpec,
    pub image: Image,
}

/// Lines of a domain's console Ferrite keeps, for its crash report.
const LAST_LINES: usize = 8;

/// A domain's lifecycle state, beside its `Vm`.
pub struct Life {
    /// dom0 paused it (or it was created and not yet unpaused): its vCPUs do not run.
    pub paused: AtomicBool,
    /// It is being destroyed (see the module's steps).
    pub dying: AtomicBool,
    /// Built from this (None for dom0).
    pub origin: Option<Origin>,
    /// Times it was rebuilt by a restart.
    pub restarts: AtomicU32,
    /// Its last console lines (CONSOLE_IO), and the line being written.
    pub last_lines: Mutex<(VecDeque<String>, String)>,
    /// Counter values: when its build began, and when it was last unpaused (0: never). Its
    /// first instruction is logged against them (`make bench` reads the line).
    pub born: AtomicU64,
    pub unpaused_at: AtomicU64,
    pub started: AtomicBool,
}

impl Life {
    pub fn new(origin: Option<Origin>, paused: bool) -> Self {
        Self {
            paused: AtomicBool::new(paused),
            dying: AtomicBool::new(false),
            origin,
            restarts: AtomicU32::new(0),
            last_lines: Mutex::new((VecDeque::new(), String::new())),
            born: AtomicU64::new(crate::arch::timer::counter()),
            unpaused_at: AtomicU64::new(0),
            started: AtomicBool::new(false),
        }
    }

    /// Keeps what the domain wrote, line by line (the last [`LAST_LINES`]).
    pub fn console_written(&self, bytes: &[u8]) {
        let mut g = self.last_lines.lock();
        let (lines, partial) = &mut *g;
        for &b in bytes {
            match b {
                b'\n' => {
                    if lines.len() == LAST_LINES {
                        lines.pop_front();
                    }
                    lines.push_back(core::mem::take(partial));
                }
                b'\r' => {}
                _ if partial.len() < 160 => {
                    partial.push(if b.is_ascii() { b as char } else { '?' })
                }
                _ => {}
            }
        }
    }
}

#[inline]
pub fn is_paused(vm: &Vm) -> bool {
    vm.life.paused.load(Ordering::Acquire)
}

/// Why an operation on a domain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// dom0 cannot be paused or destroyed from inside.
    Dom0,
    /// It stopped (shut down, crashed) or is being destroyed.
    NotRunning,
}

/// Stops `vm`'s vCPUs; its memory, devices and channels stay. They leave their CPUs at their
/// next exit (an IPI makes that soon).
pub fn pause(vm: &'static Vm) -> Result<(), Refused> {
    if vm.id == 0 {
        return Err(Refused::Dom0);
    }
    if !super::is_running(vm) || vm.life.dying.load(Ordering::Acquire) {
        return Err(Refused::NotRunning);
    }
    // SeqCst: pairs with `sched::claim` (see there).
    if vm.life.paused.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let t = sched::now();
    sched::with(|c| {
        for v in 0..vm.vcpus {
            c.block(sched::id(vm, v), t);
        }
    });
    for v in 0..vm.vcpus {
        sched::notify_stop(vm, v);
    }
    log::info!("{}: domain {} paused", vm.name, vm.id);
    Ok(())
}

/// Lets a paused domain's vCPUs run again. Each up vCPU is woken: one that had blocked sees a
/// spurious wake-up, which both WFI and `SCHED_OP BLOCK` allow.
pub fn unpause(vm: &'static Vm) -> Result<(), Refused> {
    if vm.id == 0 {
        return Err(Refused::Dom0);
    }
    if !super::is_running(vm) || vm.life.dying.load(Ordering::Acquire) {
        return Err(Refused::NotRunning);
    }
    if !vm.life.paused.swap(false, Ordering::AcqRel) {
        return Ok(());
    }
    vm.life
        .unpaused_at
        .store(crate::arch::timer::counter(), Ordering::Relaxed);
    for v in 0..vm.vcpus {
        sched::wake(vm, v);
    }
    log::info!("{}: domain {} unpaused", vm.name, vm.id);
    Ok(())
}

/// A vCPU of `vm` is about to run for the first time (called from the world switch).
#[cold]
pub fn first_run(vm: &Vm) {
    if vm.life.started.swap(true, Ordering::Relaxed) {
        return;
    }
    let t = crate::arch::timer::counter();
    let us = |from: u64| crate::arch::timer::ticks_to_ns(t.wrapping_sub(from)) / 1000;
    let born = vm.life.born.load(Ordering::Relaxed);
    let unpaused = vm.life.unpaused_at.load(Ordering::Relaxed);
    if unpaused == 0 {
        log::info!(
            "{}: domain {}: first instruction {} us after its build began",
            vm.name,
            vm.id,
            us(born)
        );
    } else {
        log::info!(
            "{}: domain {}: first instruction {} us after its build began, {} us after unpause",
            vm.name,
            vm.id,
            us(born),
            us(unpaused)
        );
    }
}

/// Whether every vCPU of `vm` is off every CPU (saved, or left for good).
pub fn all_vcpus_off(vm: &Vm) -> bool {
    vm.vcpu
        .iter()
        .all(|c| c.loaded_on.load(Ordering::SeqCst) == NOWHERE)
}

/// A domain on its way out.
struct Dying {
    vm: &'static Vm,
    /// Build it again once it is gone.
    restart: bool,
    /// Step 3 done: each other CPU's interrupt count when the IPIs went.
    unpublished: Option<[u64; crate::arch::boot::MAX_CPUS]>,
    /// Step 2 was logged as waiting (said once).
    said_mapped: bool,
}

static DYING: Mutex<Vec<Dying>> = Mutex::new(Vec::new());
/// Restarts queued: the machine must not power off as "every domain gone" meanwhile.
static RESTARTS: AtomicU32 = AtomicU32::new(0);

pub fn restart_pending() -> bool {
    RESTARTS.load(Ordering::Acquire) != 0
}

/// Starts destroying `vm` (a domU). Returns whether it is completely gone already.
pub fn destroy(vm: &'static Vm) -> Result<bool, Refused> {
    if vm.id == 0 {
        return Err(Refused::Dom0);
    }
    let (id, p) = (vm.id, vm as *const Vm);
    begin(vm, false);
    poll();
    // `vm` may be freed by now: only compare the pointer.
    Ok(domain_ptr(id) != p)
}

fn domain_ptr(id: crate::domain::DomId) -> *const Vm {
    domain(id).map_or(core::ptr::null(), |d| d as *const Vm)
}

/// Queues `vm` for destruction (once), stopping it first if it still runs.
fn begin(vm: &'static Vm, restart: bool) {
    if vm.life.dying.swap(true, Ordering::SeqCst) {
        return;
    }
    super::exit::stop_domain(vm, DomainState::PoweredOff);
    super::devbus::front_gone(vm.id);
    if restart {
        RESTARTS.fetch_add(1, Ordering::AcqRel);
    }
    log::info!(
        "{}: domain {} is being destroyed{}",
        vm.name,
        vm.id,
        if restart { " (to restart)" } else { "" }
    );
    let masked = cpu::irqs_masked();
    cpu::irq_disable();
    DYING.lock().push(Dying {
        vm,
        restart,
        unpublished: None,
        said_mapped: false,
    });
    if !masked {
        cpu::irq_enable();
    }
}

/// `vm` stopped by itself (shut down or crashed): do what its settings say. Called on the CPU
/// of the vCPU that stopped it, before that vCPU leaves.
pub fn stopped(vm: &'static Vm) {
    let Some(origin) = &vm.life.origin else {
        return;
    };
    let state = vm.state.lock().clone();
    let (action, what) = match &state {
        DomainState::Crashed(_) => (origin.spec.on_crash, "on_crash"),
        DomainState::Rebooting => (origin.spec.on_reboot, "on_reboot"),
        DomainState::PoweredOff => (origin.spec.on_poweroff, "on_poweroff"),
        DomainState::Running => return,
    };
    if let DomainState::Crashed(_) = state {
        report_crash(vm);
    }
    crate::println!(
        "ferrite: domain {} ({}): {what}={}",
        vm.id,
        vm.name,
        action.name()
    );
    match action {
        Action::Preserve => crate::println!(
            "ferrite: domain {} ({}) is kept for inspection; destroy it from dom0",
            vm.id,
            vm.name
        ),
        Action::Destroy => begin(vm, false),
        Action::Restart if matches!(origin.image, Image::None) => {
            crate::println!(
                "ferrite: domain {} ({}) was restored from a save: it has no image to restart                  from, so it is destroyed",
                vm.id,
                vm.name
            );
            begin(vm, false)
        }
        Action::Restart => begin(vm, true),
    }
}

/// The domain's last console lines, after the registers `exit::crash` printed.
fn report_crash(vm: &Vm) {
    let g = vm.life.last_lines.lock();
    if g.0.is_empty() && g.1.is_empty() {
        return;
    }
    crate::println!(
        "ferrite: domain {} ({}): its last console lines:",
        vm.id,
        vm.name
    );
    for l in g.0.iter() {
        crate::println!("ferrite:   | {l}");
    }
    if !g.1.is_empty() {
        crate::println!("ferrite:   | {}", g.1);
    }
}

/// Moves every dying domain on as far as it can without waiting long. Safe to call from any
/// CPU with no vCPU state of a dying domain in hand; callers must not hold domain locks.
pub fn poll() {
    let masked = cpu::irqs_masked();
    cpu::irq_disable();
    poll_masked();
    if !masked {
        cpu::irq_enable();
    }
}

fn poll_masked() {
    // Another CPU is at it: it will do the same work.
    let Some(mut list) = DYING.try_lock() else {
        return;
    };
    if list.is_empty() {
        return;
    }
    let mut done = Vec::new();
    for (i, d) in list.iter_mut().enumerate() {
        if d.unpublished.is_none() {
            if !all_vcpus_off(d.vm) {
                continue;
            }
            // Its page tables are never walked again: its maps of others' grants can end.
            super::grant::release_maps_of(d.vm.id);
            let mapped = super::grant::mapped_by_others(d.vm.id);
            if mapped != 0 {
                if !d.said_mapped {
                    log::warn!(
                        "{}: domain {} waits to be destroyed: {mapped} of its granted pages are \
                         still mapped by other domains",
                        d.vm.name,
                        d.vm.id
                    );
                    d.said_mapped = true;
                }
                continue;
            }
            unpublish(d.vm);
            let mut snap = [0u64; crate::arch::boot::MAX_CPUS];
            let me = cpu::index();
            for (c, s) in snap.iter_mut().enumerate().take(smp::cpu_count()) {
                if c != me && smp::online(c) {
                    *s = smp::ipis(c);
                    crate::arch::gic::send_ipi(c);
                }
            }
            d.unpublished = Some(snap);
        }
        let snap = d.unpublished.expect("set above");
        let me = cpu::index();
        // Each other CPU takes the IPI between exits; a short wait covers the usual case.
        let quiet = smp::wait_for(2000, || {
            (0..smp::cpu_count())
                .filter(|&c| c != me && smp::online(c))
                .all(|c| smp::ipis(c) > snap[c])
        });
        if quiet {
            done.push(i);
        }
    }
    let mut finished = Vec::new();
    for i in done.into_iter().rev() {
        finished.push(list.swap_remove(i));
    }
    drop(list);
    for d in finished {
        release(d);
    }
}

/// Step 3: nobody can find the domain any more.
fn unpublish(vm: &'static Vm) {
    sched::remove_domain(vm);
    super::events::remove_domain(vm.id);
    super::grant::remove_domain(vm.id);
    super::devbus::remove_domain(vm.id);
    for v in 0..vm.vcpus {
        super::timers::cancel(vm.id, v as u16, super::timers::Kind::OneShot);
        super::timers::cancel(vm.id, v as u16, super::timers::Kind::VirtualTimer);
    }
    super::set_retiring(vm.id, true);
    super::uninstall(vm);
}

/// Step 4: its memory goes back, its record is dropped, and a restart builds it again.
fn release(d: Dying) {
    let vm = d.vm;
    let (id, name) = (vm.id, vm.name.clone());
    let mut freed = 0usize;
    if let Some(pv) = vm.pv() {
        // The frame table is dropped unwalked. Walking its tables to drop every count (about
        // 28 ms for 512 MiB, with interrupts masked on this pCPU) would only tidy records
        // about to be freed: its maps of other domains' grants, the one effect outside them,
        // ended when it was unpublished (`grant::release_maps_of`), and nothing maps its
        // frames any more.
        let ft = pv.frames.lock();
        let frames: Vec<u64> = ft.frames().collect();
        drop(ft);
        // Its VMID goes to the next domain with its id.
        cpu::tlb_flush_guests();
        freed = frames.len();
        free_runs(&frames);
    }
    let restart = d.restart.then(|| vm.life.origin.clone()).flatten();
    let restarts = vm.life.restarts.load(Ordering::Relaxed);
    let gic_v3 = vm.gic_v3;
    super::set_retiring(id, false);
    // SAFETY: `vm` was leaked by `install` and unpublished in step 3; every other CPU has
    // taken an interrupt since, i.e. finished the exit it may have been handling, and no
    // vCPU of it is loaded anywhere. Nothing can reach it any more.
    unsafe { super::free_record(vm) };
    log::info!("{name}: domain {id} destroyed; {freed} frames freed");
    if let Some(o) = restart {
        RESTARTS.fetch_sub(1, Ordering::AcqRel);
        rebuild(id, o, restarts + 1, gic_v3);
    }
}

/// Frees frames (machine addresses, ascending within runs) in contiguous runs.
fn free_runs(frames: &[u64]) {
    let mut i = 0;
    while i < frames.len() {
        let start = frames[i];
        let mut n = 1;
        while i + n < frames.len() && frames[i + n] == start + n as u64 * 4096 {
            n += 1;
        }
        crate::boot::free_frames(start, n);
        i += n;
    }
}

/// Builds a restarted domain again under the lowest free id (usually its own), and lets it run.
fn rebuild(old: crate::domain::DomId, o: Origin, restarts: u32, gic_v3: bool) {
    let name = o.spec.name.clone().unwrap_or_else(|| String::from("domU"));
    let Some(id) = super::free_domid() else {
        log::error!("{name}: cannot restart: no free domain id");
        return;
    };
    let cpus = sched::with(|c| c.config().pcpus).unwrap_or(1);
    match super::build_pv::domu_from(id, o, cpus, gic_v3, false) {
        Ok(vm) => {
            vm.life.restarts.store(restarts, Ordering::Relaxed);
            crate::println!(
                "ferrite: domain {old} ({}) restarted as domain {id} (restart {restarts})",
                vm.name
            );
        }
        Err(e) => log::error!("{name}: cannot restart: {e}"),
    }
}
