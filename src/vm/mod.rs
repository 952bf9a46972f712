//! Running domains on the machine: the runtime state of each domain (its vGIC, virtual UART,
//! vCPU power states, stage 2), which vCPU each CPU runs, and the idle loop that picks vCPUs
//! up. Building dom0 is in [`build`], handling what a running vCPU asks for in [`exit`].
//!
//! Until the Credit scheduler arrives, dom0's vCPU `i` runs on CPU `i`, and only there.

pub mod build;
pub mod exit;
pub mod modules;
pub mod stats;

use crate::arch::boot::MAX_CPUS;
use crate::arch::{cpu, gic, vcpu};
use crate::domain::DomainState;
use crate::domain::power::PowerTable;
use crate::mm::region::Region;
use crate::vdev::pl011::Pl011;
use crate::vgic::{Kick, Vgic};
use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::{Mutex, Once};

pub struct Vm {
    pub id: crate::domain::DomId,
    pub name: String,
    pub vcpus: usize,
    pub vttbr: u64,
    pub cntvoff: u64,
    pub gic_v3: bool,
    /// The domain's RAM: what its hypercall buffers may be in.
    pub memory: alloc::vec::Vec<Region>,
    pub state: Mutex<DomainState>,
    pub power: Mutex<PowerTable>,
    pub vgic: Mutex<Vgic>,
    pub vuart: Mutex<Pl011>,
    /// Trapped frames: the emulated distributor, redistributors (v3) and console UART.
    pub dist: Region,
    pub redist: Option<Region>,
    pub uart: Option<Region>,
    pub uart_spi: Option<u32>,
    /// Where dom0's first vCPU starts, and its x0 (the device tree).
    pub entry: u64,
    pub dtb: u64,
    /// The GIC maintenance interrupt (a PPI), enabled on each CPU that runs a vCPU.
    pub maintenance: Option<u32>,
}

static DOM0: Once<Vm> = Once::new();

/// Per CPU: a vCPU of dom0 runs (or is blocked) here.
static RUNNING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU: CPU_ON asked this CPU to start its vCPU.
static START: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The domain and vCPU this CPU runs. Only called on exits, so a vCPU runs here.
pub fn current() -> (&'static Vm, usize) {
    (DOM0.get().expect("an exit without a domain"), cpu::index())
}

pub fn is_running(vm: &Vm) -> bool {
    *vm.state.lock() == DomainState::Running
}

/// Makes the vCPUs in `k` look at their pending interrupts: an IPI to each CPU that runs one
/// of them (waking it from WFI, or forcing an exit so its list registers are refilled).
pub fn kick(k: Kick) {
    let me = cpu::index();
    for v in k.vcpus() {
        if v != me && v < MAX_CPUS && RUNNING[v].load(Ordering::Acquire) {
            gic::send_ipi(v);
        }
    }
}

/// A physical interrupt that belongs to dom0: its devices' SPIs and the virtual timer PPI.
pub fn on_physical_irq(intid: u32) {
    let Some(vm) = DOM0.get() else { return };
    let target = (intid < 32).then(cpu::index);
    let k = vm.vgic.lock().inject(intid, target);
    kick(k);
}

/// Bytes typed on Ferrite's console: they go to dom0's emulated UART (a later issue adds the
/// switch between Ferrite, dom0 and each domU).
pub fn console_input(bytes: &[u8]) {
    let Some(vm) = DOM0.get() else { return };
    let level = vm.vuart.lock().push_rx(bytes);
    if let Some(spi) = vm.uart_spi {
        let k = vm.vgic.lock().set_level(spi, None, level);
        kick(k);
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

/// A start request from CPU_ON, for the CPU that runs vCPU `v`.
pub fn request_start(v: usize) {
    START[v].store(true, Ordering::Release);
    gic::send_ipi(v);
}

/// The vCPU on this CPU stopped (CPU_OFF, or its domain is gone).
pub fn stop_here() -> ! {
    RUNNING[cpu::index()].store(false, Ordering::Release);
    idle_loop()
}

/// What a CPU does when it has no vCPU: wait for interrupts and for a vCPU to start.
pub fn idle_loop() -> ! {
    let me = cpu::index();
    loop {
        cpu::irq_disable();
        if START[me].swap(false, Ordering::AcqRel)
            && let Some(vm) = DOM0.get()
        {
            {
                let start = vm.power.lock().take_start(me);
                if let (Some((entry, context)), true) = (start, is_running(vm)) {
                    run(vm, me, entry, context);
                }
            }
        }
        // WFI wakes on a pending interrupt even while masked; it is taken once unmasked.
        cpu::wfi();
        cpu::irq_enable();
    }
}

/// Enters vCPU `v` of `vm` on this CPU.
pub fn run(vm: &'static Vm, v: usize, pc: u64, x0: u64) -> ! {
    RUNNING[v].store(true, Ordering::Release);
    build::enable_cpu_interrupts(vm.maintenance);
    crate::arch::vgic_hw::enable();
    log::debug!("{}: vcpu{v} starts at {pc:#x}", vm.name);
    vcpu::enter(
        &vcpu::Start {
            pc,
            x0,
            vmpidr: v as u64,
            vttbr: vm.vttbr,
            cntvoff: vm.cntvoff,
        },
        crate::arch::smp::stack_top(v),
    )
}

pub(crate) fn install(vm: Vm) -> &'static Vm {
    DOM0.call_once(|| vm)
}
