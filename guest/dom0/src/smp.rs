//! Bringing up the other vCPUs with PSCI CPU_ON, and what each does once it is up.

use crate::entry::{MAX_CPUS, MMU_REGS, STACK_SIZE, STACK_TOPS, secondary_entry_address};
use crate::{cpu, mmu, psci, timer};
use alloc::alloc::{Layout, alloc};
use core::sync::atomic::{AtomicBool, Ordering};

static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

pub fn online(i: usize) -> bool {
    ONLINE[i].load(Ordering::Acquire)
}

pub fn mark_online(i: usize) {
    ONLINE[i].store(true, Ordering::Release);
    cpu::sev();
}

/// Waits up to `us` microseconds for `done`, sleeping in `wfe` (woken by `sev` from the vCPU
/// that changes the state, or by the event stream [`cpu_init`] turns on).
pub fn wait_for(us: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = timer::deadline_us(us);
    while !done() {
        if timer::counter() > deadline {
            return false;
        }
        cpu::wfe();
    }
    true
}

/// Per-vCPU set-up: an event stream from the virtual counter (bit 9: every 1024 ticks, 16 us
/// at 62.5 MHz) bounds every `wfe`, so waits sleep instead of spinning and still see deadlines.
pub fn cpu_init(index: usize) {
    use aarch64_cpu::registers::CNTKCTL_EL1;
    use tock_registers::interfaces::ReadWriteable;
    cpu::set_index(index);
    CNTKCTL_EL1.modify(CNTKCTL_EL1::EVNTI.val(9) + CNTKCTL_EL1::EVNTEN::SET);
}

/// Starts every vCPU in `cpus` (MPIDRs, device-tree order) other than this one; vCPU indices
/// follow that order with this one as 0. Returns how many are online, this one included.
pub fn start_secondaries(cpus: &[u64]) -> usize {
    let me = cpu::mpidr();
    let entry = secondary_entry_address();
    let mut up = 1;
    let others = cpus.iter().filter(|&&m| m != me);
    for (n, &mpidr) in others.take(MAX_CPUS - 1).enumerate() {
        let index = n + 1;
        // SAFETY: a fresh allocation that is never freed: the vCPU's stack for dom0's life.
        let stack = unsafe { alloc(Layout::from_size_align(STACK_SIZE, 16).unwrap()) };
        if stack.is_null() {
            println!("dom0: smp: no memory for vcpu{index}'s stack");
            break;
        }
        // SAFETY: the slot is read only by the vCPU started below, which starts with its MMU
        // and caches off: hence the clean to the point of coherency before CPU_ON.
        unsafe {
            let tops = &mut *STACK_TOPS.get();
            tops[index] = stack as u64 + STACK_SIZE as u64;
            let p = &raw const tops[index] as u64;
            mmu::clean_dcache(p, p + 8);
            let regs = MMU_REGS.get() as u64;
            mmu::clean_dcache(regs, regs + 32);
        }
        match psci::cpu_on(mpidr, entry, index as u64) {
            Ok(()) => {
                if wait_for(1_000_000, || online(index)) {
                    up += 1;
                } else {
                    println!(
                        "dom0: smp: vcpu{index} (mpidr {mpidr:#x}) did not come online in 1 s"
                    );
                }
            }
            Err(e) => println!(
                "dom0: smp: PSCI CPU_ON for vcpu{index} (mpidr {mpidr:#x}) failed: {}",
                psci::error_name(e)
            ),
        }
    }
    up
}
