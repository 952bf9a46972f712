//! Running domains on the machine: the runtime state of each domain (its vCPUs, vGIC, virtual
//! UART, power states, memory) and the table of domains. Building dom0 is in [`build`], PV
//! domUs in [`domu`]; which vCPU runs where is [`sched`]'s job (the Credit scheduler, with the
//! world switch); what a running vCPU asks for is handled in [`exit`] and [`hypercall`].

pub mod balloon;
pub mod build;
pub mod build_pv;
pub mod ctl;
pub mod ctrl;
pub mod devbus;
pub mod domctl;
pub mod domu;
pub mod events;
pub mod exit;
pub mod grant;
pub mod hypercall;
pub mod keys;
pub mod lifecycle;
pub mod modules;
pub mod pvmm;
pub mod save;
pub mod sched;
pub mod stats;
pub mod timers;

use crate::arch::boot::MAX_CPUS;
use crate::arch::context::Context;
use crate::arch::{cpu, gic};
use crate::domain::power::PowerTable;
use crate::domain::{DomId, DomainState};
use crate::mm::region::Region;
use crate::mm::tlb::LastRan;
use crate::vdev::pl011::Pl011;
use crate::vgic::{Kick, Lr, Vgic};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

/// Domain ids are 0 (dom0) to `MAX_DOMAINS - 1`.
pub const MAX_DOMAINS: usize = 64;

/// What kind of guest a domain is.
pub enum Kind {
    /// The privileged domain: stage 2 (1:1), a vGIC, passed-through devices.
    Dom0,
    /// A paravirtualised domU: stage 2 off, validated page tables, upcalls.
    Pv(domu::PvDomain),
}

/// One vCPU's runtime state.
pub struct Vcpu {
    /// Its registers while it is off the CPU (and its reset state before it first runs).
    pub ctx: Mutex<Context>,
    /// The CPU its registers are loaded on, or [`NOWHERE`]. Another CPU may load it only once
    /// this says NOWHERE (the previous CPU has saved it).
    pub loaded_on: AtomicUsize,
    /// Its list registers as the last exit left them (see `exit::after_exit`).
    pub lrs: Mutex<[Lr; crate::arch::vgic_hw::MAX_LRS]>,
    /// The list registers hold something (or the underflow interrupt is on).
    pub lrs_in_use: AtomicBool,
    /// PV: the `SET_TIMER_OP` deadline in physical counter ticks, 0 for none.
    pub timer_deadline: AtomicU64,
    /// Another vCPU took this one down (`VCPU_OP DOWN`): it leaves at its next exit.
    pub stop: AtomicBool,
    /// It blocked (WFI, `SCHED_OP BLOCK`) and no wake-up has come since: only then does an
    /// interrupt or event for it need the scheduler (see `sched::notify`).
    pub blocked: AtomicBool,
}

pub const NOWHERE: usize = usize::MAX;

impl Vcpu {
    pub fn new(ctx: Context) -> Self {
        Self {
            ctx: Mutex::new(ctx),
            loaded_on: AtomicUsize::new(NOWHERE),
            lrs: Mutex::new([Lr::INVALID; crate::arch::vgic_hw::MAX_LRS]),
            lrs_in_use: AtomicBool::new(false),
            timer_deadline: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
        }
    }
}

pub struct Vm {
    pub id: DomId,
    pub name: String,
    pub kind: Kind,
    pub vcpus: usize,
    pub vcpu: Vec<Vcpu>,
    pub cntvoff: u64,
    pub gic_v3: bool,
    /// The domain's RAM: what its hypercall buffers may be in.
    pub memory: Vec<Region>,
    /// Why it stopped, if it did; [`Vm::running`] mirrors `state == Running` for the exit path.
    pub state: Mutex<DomainState>,
    pub running: AtomicBool,
    pub power: Mutex<PowerTable>,
    pub vgic: Mutex<Vgic>,
    pub vuart: Mutex<Pl011>,
    /// Trapped frames: the emulated distributor, redistributors (v3) and console UART.
    pub dist: Region,
    pub redist: Option<Region>,
    pub uart: Option<Region>,
    pub uart_spi: Option<u32>,
    /// The GIC maintenance interrupt (a PPI), enabled on each CPU that runs a vCPU.
    pub maintenance: Option<u32>,
    /// Paused, dying, what it was built from ([`lifecycle`]).
    pub life: lifecycle::Life,
    /// Which of its vCPUs last ran on each pCPU (the world switch's TLB maintenance).
    pub last_ran: LastRan<MAX_CPUS>,
}

impl Vm {
    #[inline]
    pub fn is_pv(&self) -> bool {
        matches!(self.kind, Kind::Pv(_))
    }

    #[inline]
    pub fn pv(&self) -> Option<&domu::PvDomain> {
        match &self.kind {
            Kind::Pv(p) => Some(p),
            Kind::Dom0 => None,
        }
    }
}

/// The domains, by id. A record is leaked by [`install`] and freed only by a destroyed
/// domain's last step ([`lifecycle`]), once no CPU can hold a reference to it.
static DOMAINS: [AtomicPtr<Vm>; MAX_DOMAINS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_DOMAINS];

/// Per CPU: the domain and vCPU it runs (null: none). Only that CPU writes or reads its slot.
static CURRENT: [(AtomicPtr<Vm>, AtomicUsize); MAX_CPUS] =
    [const { (AtomicPtr::new(core::ptr::null_mut()), AtomicUsize::new(0)) }; MAX_CPUS];

pub fn domain(id: DomId) -> Option<&'static Vm> {
    let p = DOMAINS.get(id as usize)?.load(Ordering::Acquire);
    // SAFETY: non-null entries come from `install`, which leaks a Box; it is freed only after
    // being unpublished and every CPU passing an exit boundary (`lifecycle`), and references
    // are never kept across one.
    (!p.is_null()).then(|| unsafe { &*p })
}

pub fn domains() -> impl Iterator<Item = &'static Vm> {
    (0..MAX_DOMAINS as DomId).filter_map(domain)
}

/// Ids of destroyed domains not yet completely released: not to be given out yet.
static RETIRING: [AtomicBool; MAX_DOMAINS] = [const { AtomicBool::new(false) }; MAX_DOMAINS];
/// Where the search for a free id starts: ids are handed out in turn (as Xen does), so a new
/// domain does not take the id a domain just destroyed had and logs stay unambiguous.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// A free domain id (never 0), the next in turn after the last one given.
pub fn free_domid() -> Option<DomId> {
    let n = MAX_DOMAINS - 1;
    let start = NEXT_ID.load(Ordering::Relaxed);
    let id = (0..n)
        .map(|i| 1 + (start - 1 + i) % n)
        .find(|&d| domain(d as DomId).is_none() && !RETIRING[d].load(Ordering::Acquire))?;
    Some(id as DomId)
}

/// A destroyed domain's id stays taken until its release is complete.
pub(crate) fn set_retiring(id: DomId, on: bool) {
    RETIRING[id as usize].store(on, Ordering::Release);
}

/// Whether domain `id` was destroyed and is not yet completely released (its memory may not
/// be free yet).
pub(crate) fn is_retiring(id: DomId) -> bool {
    RETIRING
        .get(id as usize)
        .is_some_and(|r| r.load(Ordering::Acquire))
}

/// The domain and vCPU this CPU runs. Only called on exits, so a vCPU runs here.
#[inline]
pub fn current() -> (&'static Vm, usize) {
    try_current().expect("an exit without a vCPU")
}

#[inline]
pub fn try_current() -> Option<(&'static Vm, usize)> {
    let (d, v) = &CURRENT[cpu::index()];
    let p = d.load(Ordering::Relaxed);
    // SAFETY: non-null entries are domains from `install` (leaked: they live forever).
    (!p.is_null()).then(|| (unsafe { &*p }, v.load(Ordering::Relaxed)))
}

fn set_current(c: Option<(&'static Vm, usize)>) {
    let (d, v) = &CURRENT[cpu::index()];
    d.store(
        c.map_or(core::ptr::null_mut(), |(vm, _)| {
            (vm as *const Vm).cast_mut()
        }),
        Ordering::Relaxed,
    );
    v.store(c.map_or(0, |(_, i)| i), Ordering::Relaxed);
}

#[inline]
pub fn is_running(vm: &Vm) -> bool {
    vm.running.load(Ordering::Acquire)
}

/// Makes the vCPUs in `k` look at their pending interrupts: a blocked one is woken, one
/// running on another CPU gets an IPI (so its list registers are refilled).
pub fn kick(vm: &'static Vm, k: Kick) {
    for v in k.vcpus() {
        if v < vm.vcpus {
            sched::notify(vm, v);
        }
    }
}

/// A physical interrupt that belongs to a guest: dom0's devices' SPIs and the virtual timer
/// PPI of whichever vCPU runs here.
pub fn on_physical_irq(intid: u32) {
    if intid < 32 {
        // A private interrupt: the vCPU on this CPU's (the virtual timer).
        let Some((vm, v)) = try_current() else {
            // Nobody's timer should be running on an idle CPU; mask it.
            crate::arch::timer::mask_virtual();
            gic::deactivate_after_handling();
            return;
        };
        if vm.is_pv() {
            crate::arch::timer::mask_virtual();
            gic::deactivate_after_handling();
            domu::raise_virq(vm, v, ferrite_abi::shared_info::virq::TIMER);
            return;
        }
        let k = vm.vgic.lock().inject(intid, Some(v));
        kick(vm, k);
        return;
    }
    let Some(vm) = domain(0) else { return };
    let k = vm.vgic.lock().inject(intid, None);
    kick(vm, k);
}

/// Bytes typed on Ferrite's console: to dom0, or to Ferrite's keys ([`keys`]).
pub fn console_input(bytes: &[u8]) {
    keys::input(bytes);
}

/// Bytes for dom0's emulated UART.
fn console_to_dom0(bytes: &[u8]) {
    let Some(vm) = domain(0) else { return };
    let level = vm.vuart.lock().push_rx(bytes);
    if let Some(spi) = vm.uart_spi {
        let k = vm.vgic.lock().set_level(spi, None, level);
        kick(vm, k);
    }
}

/// The console UART's interrupt: hand what was typed to dom0.
pub fn on_console_irq(_intid: u32) {
    let mut buf = [0u8; 64];
    loop {
        let n = crate::console::read_input(&mut buf);
        if n == 0 {
            break;
        }
        console_input(&buf[..n]);
    }
}

/// Makes `vm` known by its id. Fails (dropping it) if the id is taken or out of range.
pub(crate) fn install(vm: Vm) -> Result<&'static Vm, ()> {
    let id = vm.id as usize;
    if id >= MAX_DOMAINS {
        return Err(());
    }
    let p = alloc::boxed::Box::into_raw(alloc::boxed::Box::new(vm));
    match DOMAINS[id].compare_exchange(
        core::ptr::null_mut(),
        p,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            // The next id handed out is after this one (a failed build takes none).
            if id != 0 {
                NEXT_ID.store(1 + id % (MAX_DOMAINS - 1), Ordering::Relaxed);
            }
            // SAFETY: just leaked above; freed only by `free_record` after its destruction.
            Ok(unsafe { &*p })
        }
        Err(_) => {
            // SAFETY: `p` came from Box::into_raw above and was not published.
            drop(unsafe { alloc::boxed::Box::from_raw(p) });
            Err(())
        }
    }
}

/// Takes a destroyed domain out of the table: `domain(id)` finds nothing from now on.
pub(crate) fn uninstall(vm: &'static Vm) {
    let p = (vm as *const Vm).cast_mut();
    let _ = DOMAINS[vm.id as usize].compare_exchange(
        p,
        core::ptr::null_mut(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
}

/// Drops a record [`install`] leaked.
///
/// # Safety
/// `vm` must have been [`uninstall`]ed, and no reference to it may exist or be made again: no
/// vCPU of it is loaded, and every other CPU has passed an exit boundary since.
pub(crate) unsafe fn free_record(vm: &'static Vm) {
    // SAFETY: from the caller; the pointer came from Box::into_raw in `install`.
    drop(unsafe { alloc::boxed::Box::from_raw((vm as *const Vm).cast_mut()) });
}

/// How many domains are still running.
pub fn running_domains() -> usize {
    domains().filter(|d| is_running(d)).count()
}

/// Per CPU: interrupts a vCPU needs that are private to a CPU are on.
static CPU_READY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Before the first vCPU runs on this CPU: the private interrupts vCPUs need.
pub fn prepare_cpu() {
    if CPU_READY[cpu::index()].swap(true, Ordering::Relaxed) {
        return;
    }
    let maintenance = domain(0).and_then(|d| d.maintenance);
    build::enable_cpu_interrupts(maintenance);
    crate::arch::vgic_hw::enable();
}

pub use sched::idle_loop;
