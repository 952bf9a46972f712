//! Ferrite's scheduler control (`SCHED_CTL`, dom0 only): a wrapper for each command, and the
//! `dom0.sched.*` boot options that use them after `dom0: ready` (docs/dom0.md lists the lines).
//!
//! Every call goes through the PSCI conduit ([`psci::hypercall4`]), like dom0's other
//! hypercalls. Domain ids, values and masks are passed through as the registers carry them:
//! Ferrite checks them (`-ENOENT` for an unknown domain or vCPU, `-EINVAL` for a bad value,
//! `-EFAULT` for a statistics buffer it cannot write through dom0's own translation).

use crate::cmdline::SchedSetting;
use crate::{console, psci, timer};
use core::mem::MaybeUninit;
use ferrite_abi::call::{SCHED_CTL, sched_ctl as cmd};
use ferrite_abi::errno::{self, Errno};
use ferrite_abi::sched::VcpuStats;

pub type Result<T> = core::result::Result<T, Errno>;

/// Domain ids Ferrite may hand out: 0 (dom0) to 63.
pub const LAST_DOMAIN: u64 = 63;

/// A VA in the lower half (inside the 48-bit range dom0's TTBR0 covers: T0SZ = 16) that dom0's
/// identity map leaves unmapped: it maps only RAM and the devices the device tree names, and no
/// board dom0 runs on has either at 128 TiB. Ferrite's stage-1 walk of it faults: `-EFAULT`.
pub const UNMAPPED_VA: u64 = 0x0000_8000_0000_0000;

fn ctl(c: u64, dom: u64, a: u64, b: u64) -> Result<u64> {
    errno::result(psci::hypercall4(SCHED_CTL, c, dom, a, b) as u64)
}

/// `GET_INFO`: the domain's number of vCPUs (`ENOENT` if there is no such domain).
pub fn get_info(dom: u64) -> Result<u64> {
    ctl(cmd::GET_INFO, dom, 0, 0)
}

/// `GET_WEIGHT`.
pub fn get_weight(dom: u64) -> Result<u64> {
    ctl(cmd::GET_WEIGHT, dom, 0, 0)
}

/// `SET_WEIGHT`: 1..=65535, else `EINVAL`.
pub fn set_weight(dom: u64, weight: u64) -> Result<()> {
    ctl(cmd::SET_WEIGHT, dom, weight, 0).map(drop)
}

/// `GET_CAP`: percent of one pCPU, 0 = none.
pub fn get_cap(dom: u64) -> Result<u64> {
    ctl(cmd::GET_CAP, dom, 0, 0)
}

/// `SET_CAP`: 0..=100 × pCPUs, else `EINVAL`.
pub fn set_cap(dom: u64, cap: u64) -> Result<()> {
    ctl(cmd::SET_CAP, dom, cap, 0).map(drop)
}

/// `SET_AFFINITY`: the pCPUs (bit n = pCPU n) vCPU `vcpu` of `dom` may run on. Empty or naming
/// a pCPU that does not exist: `EINVAL`; no such vCPU: `ENOENT`.
pub fn set_affinity(dom: u64, vcpu: u64, mask: u64) -> Result<()> {
    ctl(cmd::SET_AFFINITY, dom, vcpu, mask).map(drop)
}

/// `GET_VCPU_STATS` into a buffer of this function's.
pub fn get_vcpu_stats(dom: u64, vcpu: u64) -> Result<VcpuStats> {
    let mut out = MaybeUninit::<VcpuStats>::uninit();
    // SAFETY: `out` is ours, writable, 64 bytes and aligned for a VcpuStats.
    unsafe { get_vcpu_stats_at(dom, vcpu, out.as_mut_ptr() as u64) }?;
    // SAFETY: the call succeeded, so Ferrite wrote all 64 bytes, and every bit pattern is a
    // valid VcpuStats (integers only).
    Ok(unsafe { out.assume_init() })
}

/// `GET_VCPU_STATS` into whatever dom0 has at virtual address `va`.
///
/// # Safety
/// If `va` is mapped writable, Ferrite writes a [`VcpuStats`] (64 bytes) there: that memory
/// must be free for it. An unmapped `va` is harmless (`EFAULT`).
pub unsafe fn get_vcpu_stats_at(dom: u64, vcpu: u64, va: u64) -> Result<()> {
    ctl(cmd::GET_VCPU_STATS, dom, vcpu, va).map(drop)
}

/// `GET_PCPUS`: the number of pCPUs Ferrite schedules on.
pub fn get_pcpus() -> Result<u64> {
    ctl(cmd::GET_PCPUS, 0, 0, 0)
}

/// Whether Ferrite offers `SCHED_CTL` (feature word 0).
fn available() -> bool {
    use ferrite_abi::call::{FEATURES, features};
    let f = psci::hypercall(FEATURES, 0, 0, 0);
    f >= 0 && (f as u64) & features::SCHED_CTL != 0
}

/// A setting's outcome: "ok", or "refused (<ERRNO>)".
struct Verdict(Result<()>);

impl core::fmt::Display for Verdict {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(()) => f.write_str("ok"),
            Err(e) => write!(f, "refused ({})", e.name()),
        }
    }
}

/// The `dom0.sched.*` options: the settings in order, then the report. `under_ferrite`: the
/// device tree's `/hypervisor` node is Ferrite's (elsewhere the calls mean nothing).
pub fn boot_options(settings: &[SchedSetting], report_ms: Option<u64>, under_ferrite: bool) {
    if settings.is_empty() && report_ms.is_none() {
        return;
    }
    if !under_ferrite {
        println!("dom0: sched: not under Ferrite: dom0.sched options ignored");
        return;
    }
    if !available() {
        println!("dom0: sched: Ferrite offers no SCHED_CTL: dom0.sched options ignored");
        return;
    }
    for &s in settings {
        match s {
            SchedSetting::Weight { dom, weight } => println!(
                "dom0: sched: dom{dom} weight {weight}: {}",
                Verdict(set_weight(dom, weight))
            ),
            SchedSetting::Cap { dom, cap } => println!(
                "dom0: sched: dom{dom} cap {cap}: {}",
                Verdict(set_cap(dom, cap))
            ),
            SchedSetting::Pin { dom, vcpu, mask } => println!(
                "dom0: sched: dom{dom} vcpu{vcpu} pin {mask:#x}: {}",
                Verdict(set_affinity(dom, vcpu, mask))
            ),
        }
    }
    if let Some(ms) = report_ms {
        report(ms);
    }
}

/// Sleeps `ms` (in WFI, so dom0's vCPU leaves its pCPU to the domUs), checks the error paths
/// once, then prints one line per vCPU of every domain, dom0 first.
fn report(ms: u64) {
    println!("dom0: sched: report in {ms} ms");
    console::flush();
    let start = timer::counter();
    // The back ends keep serving the domUs meanwhile (WFI wakes on their events).
    let deadline = timer::deadline_us(ms.saturating_mul(1000));
    while timer::counter() < deadline {
        if crate::gic::take_work() {
            crate::consback::service(false);
            crate::blkback::service(false);
            crate::netback::service(false);
        }
        crate::cpu::wfi();
    }
    let slept = timer::ticks_to_us(timer::counter() - start) / 1000;
    match get_pcpus() {
        Ok(p) => println!("dom0: sched: {p} pcpus, slept {slept} ms"),
        Err(e) => println!("dom0: sched: FAILED: GET_PCPUS: {}", e.name()),
    }

    expect("GET_INFO dom 99", get_info(99).map(drop), Errno::NoEnt);
    expect("SET_WEIGHT 0 weight 0", set_weight(0, 0), Errno::Inval);
    // SAFETY: UNMAPPED_VA is not mapped in dom0's stage 1, so nothing can be written there.
    let bad = unsafe { get_vcpu_stats_at(0, 0, UNMAPPED_VA) };
    expect("stats to a bad buffer", bad, Errno::Fault);

    for dom in 0..=LAST_DOMAIN {
        let vcpus = match get_info(dom) {
            Ok(n) => n,
            Err(Errno::NoEnt) => continue,
            Err(e) => {
                println!("dom0: sched: FAILED: GET_INFO dom {dom}: {}", e.name());
                continue;
            }
        };
        let (weight, cap) = match (get_weight(dom), get_cap(dom)) {
            (Ok(w), Ok(c)) => (w, c),
            (Err(e), _) | (_, Err(e)) => {
                println!(
                    "dom0: sched: FAILED: GET_WEIGHT/GET_CAP dom {dom}: {}",
                    e.name()
                );
                continue;
            }
        };
        for v in 0..vcpus {
            match get_vcpu_stats(dom, v) {
                Ok(s) => println!(
                    "dom0: sched: dom{dom} vcpu{v} weight {weight} cap {cap} running_ns {} \
                     runnable_ns {} blocked_ns {} runs {} migrations {} pcpu {} prio {}",
                    s.running_ns,
                    s.runnable_ns,
                    s.blocked_ns,
                    s.runs,
                    s.migrations,
                    s.pcpu,
                    s.priority
                ),
                Err(e) => println!(
                    "dom0: sched: FAILED: GET_VCPU_STATS dom {dom} vcpu {v}: {}",
                    e.name()
                ),
            }
        }
    }
    println!("dom0: sched: report done");
}

/// Prints `dom0: sched: <what>: <ERRNO or ok>`, and a FAILED line when it is not `want`.
fn expect(what: &str, got: Result<()>, want: Errno) {
    let name = match got {
        Ok(()) => "ok",
        Err(e) => e.name(),
    };
    println!("dom0: sched: {what}: {name}");
    if got != Err(want) {
        println!("dom0: sched: FAILED: {what} should be {}", want.name());
    }
}
