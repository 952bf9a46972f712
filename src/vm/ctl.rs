//! `SCHED_CTL`: dom0 reads and sets the scheduler's per-domain parameters (weight, cap), each
//! vCPU's hard affinity, and reads per-vCPU statistics. Only dom0 may (the dispatcher refuses
//! the others with `-EPERM`); a domain that does not exist is `-ENOENT`.

use super::{Vm, sched};
use crate::arch::exceptions::TrapFrame;
use crate::sched::{Priority, SchedError, VcpuId};
use ferrite_abi::call::sched_ctl as cmd;
use ferrite_abi::errno;
use ferrite_abi::sched::VcpuStats;

fn err(e: SchedError) -> i64 {
    match e {
        SchedError::NoSuchDomain(_) | SchedError::NoSuchVcpu(_) => errno::ENOENT,
        _ => errno::EINVAL,
    }
}

#[inline(never)]
pub fn sched_ctl(vm: &'static Vm, v: usize, frame: &TrapFrame) -> i64 {
    let (c, dom, a, b) = (frame.x[1], frame.x[2], frame.x[3], frame.x[4]);
    let Some(target) = u16::try_from(dom).ok().and_then(super::domain) else {
        return errno::ENOENT;
    };
    let d = target.id;
    let now = sched::now();
    let r: Result<i64, SchedError> = match c {
        cmd::GET_INFO => Ok(target.vcpus as i64),
        cmd::GET_PCPUS => Ok(sched::with(|s| s.config().pcpus as i64).unwrap_or(0)),
        cmd::GET_WEIGHT => sched::with(|s| s.weight(d).map(|w| w as i64))
            .flatten()
            .ok_or(SchedError::NoSuchDomain(d)),
        cmd::GET_CAP => sched::with(|s| s.cap(d).map(|w| w as i64))
            .flatten()
            .ok_or(SchedError::NoSuchDomain(d)),
        cmd::SET_WEIGHT => {
            let w = u32::try_from(a).unwrap_or(0);
            sched::with(|s| s.set_weight(d, w))
                .unwrap_or(Err(SchedError::NoSuchDomain(d)))
                .map(|()| 0)
        }
        cmd::SET_CAP => {
            let cap = u32::try_from(a).unwrap_or(u32::MAX);
            let kick = sched::with(|s| s.set_cap(d, cap, now));
            kick.unwrap_or(Err(SchedError::NoSuchDomain(d))).map(|k| {
                sched::kick_mask(k);
                0
            })
        }
        cmd::SET_AFFINITY => {
            let id = VcpuId::new(d, u16::try_from(a).unwrap_or(u16::MAX));
            sched::with(|s| s.set_affinity(id, b, now))
                .unwrap_or(Err(SchedError::NoSuchVcpu(id)))
                .map(|k| {
                    sched::kick_mask(k);
                    0
                })
        }
        cmd::GET_VCPU_STATS => {
            let id = VcpuId::new(d, u16::try_from(a).unwrap_or(u16::MAX));
            match sched::with(|s| s.stats(id, now)).flatten() {
                None => Err(SchedError::NoSuchVcpu(id)),
                Some(st) => {
                    let out = VcpuStats {
                        running_ns: st.running_ns,
                        runnable_ns: st.runnable_ns,
                        blocked_ns: st.blocked_ns,
                        lifetime_ns: st.lifetime_ns,
                        runs: st.runs,
                        migrations: st.migrations,
                        credit_ns: st.credit_ns,
                        pcpu: st.pcpu as u32,
                        priority: match st.priority {
                            Priority::Idle => 0,
                            Priority::Over => 1,
                            Priority::Under => 2,
                            Priority::Boost => 3,
                        },
                    };
                    // SAFETY: VcpuStats is plain old data without padding (64 bytes of
                    // integers), so viewing it as bytes is sound.
                    let bytes = unsafe {
                        core::slice::from_raw_parts(
                            (&out as *const VcpuStats).cast::<u8>(),
                            size_of::<VcpuStats>(),
                        )
                    };
                    if write_dom0(vm, b, bytes) {
                        Ok(0)
                    } else {
                        return errno::EFAULT;
                    }
                }
            }
        }
        _ => return errno::ENOSYS,
    };
    r.unwrap_or_else(|e| {
        log::debug!("{}: vcpu{v}: SCHED_CTL {c} on domain {dom}: {e:?}", vm.name);
        err(e)
    })
}

/// Writes into dom0's own RAM at its VA `va` (stage 1 and 2 translated, checked).
pub(super) fn write_dom0(vm: &Vm, va: u64, data: &[u8]) -> bool {
    // SAFETY: a slice is readable for its length, and Ferrite's own memory is not dom0's.
    unsafe { write_dom0_from(vm, va, data.as_ptr(), data.len()) }
}

/// [`write_dom0`] from `len` bytes at `src`: a domU's frame, copied without a buffer between.
///
/// # Safety
/// `src..src + len` must be RAM in Ferrite's identity map, readable for the whole call, and
/// not dom0's.
pub(super) unsafe fn write_dom0_from(vm: &Vm, va: u64, src: *const u8, len: usize) -> bool {
    let into_dom0 = |r: crate::mm::region::Region, copy: &dyn Fn()| {
        let ok = vm.memory.iter().any(|m| m.contains_region(&r));
        if ok {
            copy();
        }
        ok
    };
    // SAFETY: the caller's contract; `into_dom0` accepts only dom0's RAM, which `src` is not.
    unsafe { crate::arch::guest_mem::write_from(va, src, len, into_dom0) }
}
