//! Bringing up the other CPUs (PSCI CPU_ON or the spin-table), and talking to them with IPIs.

use super::boot::{MAX_CPUS, SECONDARY_BOOT, STACK_SIZE, SecondaryBoot, secondary_entry_address};
use super::{cpu, gic, mmu, psci, timer};
use crate::dt::{CpuInfo, EnableMethod};
use alloc::alloc::{Layout, alloc};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static IPIS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CPU_COUNT: AtomicUsize = AtomicUsize::new(1);
static STOP: AtomicBool = AtomicBool::new(false);
static STACK_TOPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The top of CPU `i`'s EL2 stack (where a vCPU's trap frame lives while it runs).
pub fn stack_top(i: usize) -> u64 {
    match i {
        0 => super::boot::boot_stack_top(),
        _ => STACK_TOPS[i].load(Ordering::Acquire),
    }
}

pub fn cpu_count() -> usize {
    CPU_COUNT.load(Ordering::Relaxed)
}

pub fn online(i: usize) -> bool {
    ONLINE[i].load(Ordering::Acquire)
}

pub fn ipis(i: usize) -> u64 {
    IPIS[i].load(Ordering::Acquire)
}

pub fn mark_online(i: usize) {
    ONLINE[i].store(true, Ordering::Release);
    cpu::sev();
}

/// The IPI handler: count it, and stop if the system is going down.
pub fn handle_ipi(_intid: u32) {
    IPIS[cpu::index()].fetch_add(1, Ordering::AcqRel);
    cpu::sev();
    if STOP.load(Ordering::Acquire) {
        cpu::park();
    }
}

/// Stops every other CPU (panic, power-off): they park at their next interrupt.
pub fn stop_others() {
    STOP.store(true, Ordering::Release);
    let me = cpu::index();
    for i in (0..cpu_count()).filter(|&i| i != me && online(i)) {
        gic::send_ipi(i);
    }
}

/// Waits up to `us` microseconds for `done`.
pub fn wait_for(us: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = timer::uptime_us() + us;
    while !done() {
        if timer::uptime_us() > deadline {
            return false;
        }
        cpu::wfe(); // woken by `sev` from the CPU that changes the state, or the event stream
    }
    true
}

/// Starts every CPU in `cpus` other than this one. Returns the number online, this one included.
/// The CPU indices follow the device tree's order, with the boot CPU as 0.
pub fn start_secondaries(cpus: &[CpuInfo]) -> usize {
    let me = cpu::mpidr();
    let others: alloc::vec::Vec<&CpuInfo> = cpus.iter().filter(|c| c.mpidr != me).collect();
    if others.len() + 1 > MAX_CPUS {
        log::warn!(
            "smp: {} cpus in the device tree; bringing up the first {MAX_CPUS}",
            others.len() + 1
        );
    }
    CPU_COUNT.store((others.len() + 1).min(MAX_CPUS), Ordering::Release);
    let entry = secondary_entry_address();
    let mut up = 1;
    for (n, c) in others.iter().take(MAX_CPUS - 1).enumerate() {
        let index = n + 1;
        // SAFETY: a fresh, never-freed allocation: the CPU's stack for the life of the system.
        let stack = unsafe { alloc(Layout::from_size_align(STACK_SIZE, 16).unwrap()) };
        if stack.is_null() {
            log::error!("smp: no memory for cpu{index}'s stack");
            break;
        }
        STACK_TOPS[index].store(stack as u64 + STACK_SIZE as u64, Ordering::Release);
        let slot = SecondaryBoot {
            mpidr: c.mpidr,
            stack_top: stack as u64 + STACK_SIZE as u64,
            index: index as u64,
        };
        // SAFETY: the slot is read only by the CPU started below, after this write is cleaned
        // to the point of coherency (it starts with its caches off).
        unsafe {
            let table = &mut *SECONDARY_BOOT.get();
            table[index] = slot;
            let p = &raw const table[index] as u64;
            mmu::clean_dcache(p, p + core::mem::size_of::<SecondaryBoot>() as u64);
            let regs = super::boot::MMU_REGS.get() as u64;
            mmu::clean_dcache(regs, regs + 32);
        }
        let started = match &c.enable {
            EnableMethod::Psci => match psci::cpu_on(c.mpidr, entry, index as u64) {
                Ok(()) => true,
                Err(e) => {
                    log::error!(
                        "smp: PSCI CPU_ON for cpu{index} (mpidr {:#x}) failed: {}",
                        c.mpidr,
                        psci::error_name(e)
                    );
                    false
                }
            },
            EnableMethod::SpinTable { release_addr } => {
                release(*release_addr, entry);
                true
            }
            EnableMethod::Other(m) => {
                log::error!(
                    "smp: cpu mpidr {:#x}: enable-method \"{m}\" is not supported",
                    c.mpidr
                );
                false
            }
        };
        if started && wait_for(1_000_000, || online(index)) {
            up += 1;
        } else if started {
            log::error!(
                "smp: cpu{index} (mpidr {:#x}) did not come online within 1 s",
                c.mpidr
            );
        }
    }
    up
}

/// The spin-table: the CPU waits in firmware, reading its release address until it is not zero.
fn release(addr: u64, entry: u64) {
    // SAFETY: the release address is RAM the firmware reserved for exactly this handshake; it is
    // mapped (all RAM is) and read by a CPU with its caches off, hence the clean.
    unsafe { core::ptr::write_volatile(addr as *mut u64, entry) };
    mmu::clean_dcache(addr, addr + 8);
    cpu::sev();
}
