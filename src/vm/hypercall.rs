//! Ferrite's own calls (guest/abi, docs/abi.md): decoding `hvc #0` from any domain and
//! answering it, with the domain's rights checked here: the PV calls for PV domUs,
//! `SCHED_CTL` for dom0. Guest memory is reached only through `arch::guest_mem`'s checked
//! accessors. Anything unknown: `-ENOSYS` in Ferrite's range, SMCCC's "unknown" outside it.

use super::{Vm, domu};
use crate::arch::exceptions::TrapFrame;
use ferrite_abi::{call, errno, features};

/// Handles the call in `frame` (x0 = function, in Ferrite's range: `call::is_ferrite_call`)
/// and writes its results into `frame`. Inlined
/// into the exit path (the calls' bodies are not): a null call is a jump table away.
#[inline(always)]
pub fn dispatch(vm: &'static Vm, v: usize, frame: &mut TrapFrame) {
    let f = frame.x[0] as u32;
    let pv = vm.is_pv();
    let ret = match f {
        call::VERSION => call::version_word() as i64,
        call::FEATURES if frame.x[1] == 0 => feature_word(vm) as i64,
        call::FEATURES => errno::EINVAL,
        call::CONSOLE_IO => console_io(vm, v, frame),
        call::SCHED_CTL if !pv => super::ctl::sched_ctl(vm, v, frame),
        call::SCHED_CTL => {
            log::warn!("{}: vcpu{v}: SCHED_CTL refused: dom0 only", vm.name);
            errno::EPERM
        }
        call::SCHED_OP if pv => domu::sched_op(vm, v, frame),
        call::SET_TIMER_OP if pv => domu::set_timer(vm, v, frame.x[1]),
        call::VCPU_OP if pv => domu::vcpu_op(vm, v, frame),
        call::EVTCHN_OP => super::events::evtchn_op(vm, v, frame),
        call::GNTTAB_OP => super::grant::gnttab_op(vm, v, frame),
        call::DEVICE_OP => super::devbus::device_op(vm, v, frame),
        call::DOMCTL if !pv => match super::domctl::domctl(vm, v, frame) {
            // Rewound to continue (a `CREATE` in slices): the registers stay the call's.
            super::domctl::CONTINUE => return,
            r => r,
        },
        call::DOMCTL => {
            log::warn!("{}: vcpu{v}: DOMCTL refused: dom0 only", vm.name);
            errno::EPERM
        }
        call::EVENT_OP if pv => match frame.x[1] {
            // The line is re-evaluated on the way back, as after any call.
            call::event::ACK => 0,
            _ => errno::ENOSYS,
        },
        call::MMU_UPDATE | call::MMUEXT_OP | call::MEMORY_OP if pv => {
            // Sets x0 and x1 itself (batched calls), or rewinds to continue later.
            super::pvmm::batched(vm, v, frame);
            return;
        }
        _ => unknown(vm, v, f),
    };
    frame.x[0] = ret as u64;
}

/// A call outside Ferrite's range that is not PSCI: the SMCCC vendor-hypervisor queries, or
/// SMCCC's "unknown".
#[inline(never)]
pub fn other(vm: &Vm, v: usize, frame: &mut TrapFrame) {
    let f = frame.x[0] as u32;
    let ret = match f {
        _ if frame.x[0] >> 32 != 0 => unknown(vm, v, f),
        call::VENDOR_HYP_CALL_UID => {
            frame.x[1] = call::UID[1] as u64;
            frame.x[2] = call::UID[2] as u64;
            frame.x[3] = call::UID[3] as u64;
            call::UID[0] as i64
        }
        call::VENDOR_HYP_CALL_COUNT => call::CALL_COUNT as i64,
        call::VENDOR_HYP_REVISION => {
            frame.x[1] = call::VERSION_MINOR as u64;
            call::VERSION_MAJOR as i64
        }
        _ => unknown(vm, v, f),
    };
    frame.x[0] = ret as u64;
}

#[inline(never)]
fn unknown(vm: &Vm, v: usize, f: u32) -> i64 {
    if call::is_ferrite_call(f as u64) {
        log::debug!("{}: vcpu{v}: hypercall {f:#x} not available", vm.name);
        errno::ENOSYS
    } else {
        log::debug!("{}: vcpu{v}: unknown call {f:#x}", vm.name);
        call::SMCCC_NOT_SUPPORTED
    }
}

/// Feature word 0 for `vm`.
fn feature_word(vm: &Vm) -> u64 {
    if vm.is_pv() {
        let asid16 = if domu::asid16() { features::ASID16 } else { 0 };
        features::PV_MMU
            | features::BLOCK_MAPPINGS
            | features::CONTIGUOUS_HINT
            | features::BALLOON
            | features::CONSOLE
            | features::SCHED
            | features::EVENTS
            | features::EVTCHN
            | features::GNTTAB
            | features::DEVBUS
            | asid16
    } else {
        features::CONSOLE
            | features::SCHED_CTL
            | features::EVTCHN
            | features::GNTTAB
            | features::DOMCTL
            | features::DEVBUS
    }
}

/// CONSOLE_IO WRITE: the guest's bytes, from its own memory, on Ferrite's console.
#[inline(never)]
fn console_io(vm: &Vm, v: usize, frame: &TrapFrame) -> i64 {
    /// At most this much per call: a guest cannot hold a CPU in Ferrite for long.
    const MAX: usize = 4096;
    let (cmd, va, len) = (frame.x[1], frame.x[2], frame.x[3] as usize);
    if cmd != call::console::WRITE {
        return errno::ENOSYS;
    }
    let len = len.min(MAX);
    let mut buf = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len());
        let at = va.wrapping_add(done as u64);
        // A PV domain's memory is its frame list (it may have ballooned), dom0's its banks.
        let ok = if vm.is_pv() {
            super::pvmm::read_guest(vm, at, &mut buf[..n])
        } else {
            crate::arch::guest_mem::read(at, &mut buf[..n], &vm.memory)
        };
        if !ok {
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
        write_console(vm, &buf[..n]);
        done += n;
    }
    done as i64
}

/// A guest's console output goes out as it wrote it, under the console lock so it does not
/// interleave with Ferrite's log (PV guests prefix their own lines; see docs/pv-guest.md).
fn write_console(vm: &Vm, bytes: &[u8]) {
    crate::console::write_guest_line(bytes);
    vm.life.console_written(bytes);
    if vm.is_pv() {
        super::events::console_written();
    }
}
