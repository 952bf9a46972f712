//! vCPU timers kept by Ferrite: a PV vCPU's `SET_TIMER_OP` deadline, and the virtual timer of a
//! vCPU that is off its CPU (its CNTV cannot fire while another vCPU's is loaded). Each pCPU
//! keeps the timers armed on it, at most one per vCPU and kind, and the pCPU's CNTHP fires at
//! the earliest (see `sched::reprogram`).

use crate::arch::boot::MAX_CPUS;
use crate::domain::DomId;
use alloc::vec::Vec;
use spin::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `SET_TIMER_OP`.
    OneShot,
    /// The saved virtual timer of a vCPU that is not loaded.
    VirtualTimer,
}

#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Physical counter ticks.
    pub deadline: u64,
    pub dom: DomId,
    pub vcpu: u16,
    pub kind: Kind,
}

static TIMERS: [Mutex<Vec<Entry>>; MAX_CPUS] = [const { Mutex::new(Vec::new()) }; MAX_CPUS];

fn same(a: &Entry, b: &Entry) -> bool {
    a.dom == b.dom && a.vcpu == b.vcpu && a.kind == b.kind
}

/// Arms `e` on pCPU `cpu`, replacing that vCPU's timer of the same kind there.
pub fn arm(cpu: usize, e: Entry) {
    let masked = crate::arch::cpu::irqs_masked();
    crate::arch::cpu::irq_disable();
    {
        let mut t = TIMERS[cpu].lock();
        match t.iter_mut().find(|x| same(x, &e)) {
            Some(x) => *x = e,
            None => t.push(e),
        }
    }
    if !masked {
        crate::arch::cpu::irq_enable();
    }
}

/// Cancels a vCPU's timer of `kind` on every pCPU.
pub fn cancel(dom: DomId, vcpu: u16, kind: Kind) {
    for t in &TIMERS {
        t.lock()
            .retain(|x| !(x.dom == dom && x.vcpu == vcpu && x.kind == kind));
    }
}

/// The earliest deadline armed on `cpu` (u64::MAX if none).
pub fn next(cpu: usize) -> u64 {
    TIMERS[cpu]
        .lock()
        .iter()
        .map(|e| e.deadline)
        .min()
        .unwrap_or(u64::MAX)
}

/// Fires the timers of `cpu` due at counter value `now`.
pub fn expire(cpu: usize, now: u64) {
    let mut due = Vec::new();
    TIMERS[cpu].lock().retain(|e| {
        if e.deadline <= now {
            due.push(*e);
            false
        } else {
            true
        }
    });
    for e in due {
        fire(e);
    }
}

fn fire(e: Entry) {
    let Some(vm) = super::domain(e.dom) else {
        return;
    };
    let v = e.vcpu as usize;
    if v >= vm.vcpus {
        return;
    }
    match e.kind {
        Kind::OneShot => {
            let vc = &vm.vcpu[v];
            // Only the deadline still set fires (a later SET_TIMER_OP replaced or cancelled it).
            if vc
                .timer_deadline
                .compare_exchange(
                    e.deadline,
                    0,
                    core::sync::atomic::Ordering::AcqRel,
                    core::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
            {
                super::domu::raise_virq(vm, v, ferrite_abi::shared_info::virq::TIMER);
            }
        }
        Kind::VirtualTimer => {
            if vm.vcpu[v]
                .loaded_on
                .load(core::sync::atomic::Ordering::Acquire)
                != super::NOWHERE
            {
                // Back on a CPU: its own timer hardware fires now.
                return;
            }
            if vm.is_pv() {
                // As if it had fired while running: masked, and an event.
                vm.vcpu[v].ctx.lock().el1.cntv_ctl |= 2;
                super::domu::raise_virq(vm, v, ferrite_abi::shared_info::virq::TIMER);
            } else {
                // dom0: wake it; once loaded, its timer's interrupt arrives through the GIC.
                super::sched::notify(vm, v);
            }
        }
    }
}
