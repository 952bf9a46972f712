//! `DOMCTL`: dom0's control of the other domains (the dispatcher refuses everyone else with
//! `-EPERM`). Finding a domU's console and disk, listing domains, and their lifecycle: create
//! from an image in dom0's memory, pause, unpause, shutdown requests, destroy, information,
//! the machine's memory, Ferrite's log ring, and save and restore ([`super::save`]).

use super::build_pv::{self as build, Build};
use super::lifecycle::{self, Image, Origin, Refused};
use super::{Vm, domain, sched};
use crate::arch::exceptions::TrapFrame;
use crate::domain::DomainState;
use crate::domain::config::DomuSpec;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use ferrite_abi::call::domctl as dc;
use ferrite_abi::ctl::{CreateArgs, DomInfo, PhysInfo, state};
use ferrite_abi::errno;
use spin::Mutex;

/// The largest image `CREATE` copies (a PV kernel; bigger ones belong on a disk).
const MAX_IMAGE: u64 = 64 << 20;
const MAX_CONFIG: u64 = 4096;

#[inline(never)]
pub fn domctl(vm: &'static Vm, v: usize, frame: &mut TrapFrame) -> i64 {
    let (c, dom) = (frame.x[1], frame.x[2]);
    match c {
        dc::CONSOLE => console(dom, frame),
        dc::NEXT_DOMAIN => {
            let next = super::domains().find(|d| d.id as u64 > dom);
            match next {
                Some(d) => {
                    frame.x[1] = d.vcpus as u64;
                    frame.x[2] = super::is_running(d) as u64;
                    d.id as i64
                }
                None => errno::ENOENT,
            }
        }
        dc::DISK => {
            let Some(target) = target(dom) else {
                return errno::ENOENT;
            };
            match super::devbus::disk(target.id) {
                Some((first, n)) => {
                    frame.x[1] = n;
                    first as i64
                }
                None => errno::ENOENT,
            }
        }
        dc::CREATE => create(vm, v, frame),
        dc::PAUSE | dc::UNPAUSE | dc::DESTROY => {
            let Some(target) = target(dom) else {
                // Unpublished but its memory not yet given back: a destroy is still under
                // way, and a caller that waits for it (to count free memory) must not see it
                // gone yet.
                return if c == dc::DESTROY && retiring(dom) {
                    errno::EBUSY
                } else {
                    errno::ENOENT
                };
            };
            let (name, id) = (target.name.clone(), target.id);
            let r = match c {
                dc::PAUSE => lifecycle::pause(target).map(|()| 0),
                dc::UNPAUSE if super::save::restoring(id) => {
                    log::warn!("dom0: {name} (domain {id}) is being restored: RESTORE_END first");
                    Ok(errno::EINVAL)
                }
                dc::UNPAUSE => lifecycle::unpause(target).map(|()| 0),
                // `target` may be freed once this returns.
                _ => lifecycle::destroy(target).map(|gone| if gone { 0 } else { errno::EBUSY }),
            };
            r.unwrap_or_else(|why| {
                let what = ["", "", "", "", "pause", "unpause", "destroy"][c as usize];
                let why = match why {
                    Refused::Dom0 => "dom0 cannot be",
                    Refused::NotRunning => "it has stopped, so it cannot be",
                };
                log::warn!("dom0: DOMCTL on {name} (domain {id}): {why} {what}d");
                errno::EINVAL
            })
        }
        dc::SHUTDOWN => shutdown(dom, frame.x[3]),
        dc::GET_INFO => {
            let Some(target) = target(dom) else {
                return errno::ENOENT;
            };
            let info = info(target);
            write_pod(vm, frame.x[3], &info)
        }
        dc::PHYSINFO => {
            let (total, free) = crate::boot::frame_counts();
            let info = PhysInfo {
                total_frames: total as u64,
                free_frames: free as u64,
                pcpus: sched::with(|s| s.config().pcpus as u32).unwrap_or(1),
                domains: super::domains().count() as u32,
                heap_used: crate::mm::heap::usage().0 as u64,
            };
            write_pod(vm, frame.x[3], &info)
        }
        dc::DMESG => {
            let (from, va, len) = (frame.x[2], frame.x[3], frame.x[4]);
            let mut buf = [0u8; 1024];
            let n = (len as usize).min(buf.len());
            let (got, next) = crate::console::read_log(from, &mut buf[..n]);
            if !super::ctl::write_dom0(vm, va, &buf[..got]) {
                return errno::EFAULT;
            }
            frame.x[1] = next;
            got as i64
        }
        dc::SAVE_BEGIN
        | dc::SAVE_PAGE
        | dc::SAVE_VCPU
        | dc::RESTORE_BEGIN
        | dc::RESTORE_PAGE
        | dc::RESTORE_VCPU
        | dc::RESTORE_END => super::save::domctl(vm, c, frame),
        _ => errno::ENOSYS,
    }
}

fn target(dom: u64) -> Option<&'static Vm> {
    u16::try_from(dom).ok().and_then(domain)
}

fn retiring(dom: u64) -> bool {
    u16::try_from(dom).is_ok_and(super::is_retiring)
}

fn console(dom: u64, frame: &mut TrapFrame) -> i64 {
    let Some(target) = target(dom) else {
        return errno::ENOENT;
    };
    let page = super::grant::console_page(target.id);
    let Some(port) = (page != 0)
        .then(|| target.pv().map(|_| super::events::console_port(target.id)))
        .flatten()
        .flatten()
    else {
        return errno::ENOENT;
    };
    frame.x[1] = ferrite_abi::grant::GREF_CONSOLE as u64;
    port as i64
}

/// Writes a plain-old-data structure into dom0's memory at `va`.
pub(super) fn write_pod<T: Copy>(vm: &Vm, va: u64, v: &T) -> i64 {
    // SAFETY: only used with the ABI's `#[repr(C)]` structures of integers without padding
    // (their sizes are checked in the ABI crate), so every byte is initialised.
    let bytes =
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) };
    if super::ctl::write_dom0(vm, va, bytes) {
        0
    } else {
        errno::EFAULT
    }
}

/// Reads a plain-old-data structure from dom0's memory at `va`.
pub(super) fn read_pod<T: Copy + Default>(vm: &Vm, va: u64) -> Option<T> {
    let mut v = T::default();
    // SAFETY: as in `write_pod`: an ABI structure of integers, any bit pattern is valid.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut((&mut v as *mut T).cast::<u8>(), size_of::<T>()) };
    crate::arch::guest_mem::read(va, bytes, &vm.memory).then_some(v)
}

/// Copies `len` bytes of dom0's memory at `va` into a new vector (None: no heap for it, or not
/// dom0's memory).
pub(super) fn read_bytes(vm: &Vm, va: u64, len: u64) -> Result<Vec<u8>, &'static str> {
    let mut v = Vec::new();
    v.try_reserve_exact(len as usize)
        .map_err(|_| "Ferrite has no heap for a copy that big")?;
    v.resize(len as usize, 0);
    if !crate::arch::guest_mem::read(va, &mut v, &vm.memory) {
        return Err("the buffer is not dom0's memory");
    }
    Ok(v)
}

/// Writes `msg` NUL-terminated (cut to fit) where `CreateArgs::err` says, and logs it under
/// the call that refused (`create`, `restore`).
pub(super) fn say(vm: &Vm, call: &str, a: &CreateArgs, msg: &str) {
    log::warn!("dom0: {call}: {msg}");
    if a.err == 0 || a.err_len == 0 {
        return;
    }
    let n = msg.len().min(a.err_len as usize - 1);
    let mut out = Vec::with_capacity(n + 1);
    out.extend_from_slice(&msg.as_bytes()[..n]);
    out.push(0);
    let _ = super::ctl::write_dom0(vm, a.err, &out);
}

/// Reads and checks `CREATE`'s configuration.
pub(super) fn read_config(vm: &Vm, a: &CreateArgs) -> Result<DomuSpec, (i64, String)> {
    if a.config_len > MAX_CONFIG {
        return Err((
            errno::EINVAL,
            format!("the configuration is over {MAX_CONFIG} bytes"),
        ));
    }
    let text = read_bytes(vm, a.config, a.config_len).map_err(|e| (errno::EFAULT, e.into()))?;
    let text = core::str::from_utf8(&text).map_err(|_| {
        (
            errno::EINVAL,
            String::from("the configuration is not UTF-8"),
        )
    })?;
    DomuSpec::parse(text.trim()).map_err(|e| (errno::EINVAL, e))
}

/// What [`domctl`] returns when it rewound the call to continue it: the dispatcher leaves the
/// registers alone, and the vCPU runs the `hvc` again.
pub const CONTINUE: i64 = i64::MIN;

/// A `CREATE` under way, by the dom0 vCPU that made it: the address of its arguments (the
/// call, run again, names the same) and the build.
static BUILDS: Mutex<Vec<(usize, u64, Build)>> = Mutex::new(Vec::new());

/// `CREATE`: a slice of the build per call ([`Build::step`]). While it is not done, the call
/// is rewound, so dom0's vCPU takes its interrupts and the scheduler may run other vCPUs on
/// this pCPU; run again, it goes on where it stopped. To dom0 it is one call.
fn create(vm: &'static Vm, v: usize, frame: &mut TrapFrame) -> i64 {
    let args = frame.x[2];
    let under_way = {
        let mut b = BUILDS.lock();
        let i = b.iter().position(|(bv, _, _)| *bv == v);
        i.map(|i| b.swap_remove(i))
    };
    let mut build = match under_way {
        Some((_, a, b)) if a == args => b,
        other => {
            // Another call from this vCPU: the earlier one was abandoned (its `hvc` is not run
            // again), and dropping its build gives its frames back.
            if let Some((_, _, b)) = other {
                log::warn!(
                    "dom0: vcpu{v}: create of domain {} abandoned for another call",
                    b.id()
                );
            }
            match start_create(vm, args) {
                Ok(b) => b,
                Err(code) => return code,
            }
        }
    };
    let slice = build::SLICE_US * crate::arch::timer::frequency() / 1_000_000;
    match build.step(Some(crate::arch::timer::counter() + slice)) {
        Ok(Some(d)) => {
            crate::println!("ferrite: dom0 created domain {} ({}), paused", d.id, d.name);
            d.id as i64
        }
        Ok(None) => {
            BUILDS.lock().push((v, args, build));
            frame.elr -= 4;
            CONTINUE
        }
        Err(e) => {
            // Dropping the build gives back what it took.
            drop(build);
            if let Some(a) = read_pod::<CreateArgs>(vm, args) {
                say(vm, "create", &a, &e);
            }
            build_errno(&e)
        }
    }
}

/// A failed build's errno: `ENOMEM` when memory ran out (its message says "free memory"),
/// `EINVAL` for anything about the image or configuration.
fn build_errno(why: &str) -> i64 {
    if why.contains("free memory") {
        errno::ENOMEM
    } else {
        errno::EINVAL
    }
}

/// Reads `CREATE`'s arguments, configuration and image, and starts the build.
fn start_create(vm: &'static Vm, args: u64) -> Result<Build, i64> {
    let Some(a) = read_pod::<CreateArgs>(vm, args) else {
        return Err(errno::EFAULT);
    };
    let r = (|| -> Result<Build, (i64, String)> {
        let spec = read_config(vm, &a)?;
        if a.image_len == 0 || a.image_len > MAX_IMAGE {
            return Err((
                errno::EINVAL,
                format!("an image is 1 byte to {} MiB", MAX_IMAGE >> 20),
            ));
        }
        let image = read_bytes(vm, a.image, a.image_len).map_err(|e| {
            let code = if e.starts_with("Ferrite has no heap") {
                errno::ENOMEM
            } else {
                errno::EFAULT
            };
            (code, String::from(e))
        })?;
        let id = super::free_domid()
            .ok_or_else(|| (errno::ENOSPC, String::from("no free domain id")))?;
        let cpus = sched::with(|s| s.config().pcpus).unwrap_or(1);
        let origin = Origin {
            spec,
            image: Image::Copied(Arc::new(image)),
        };
        Build::new(id, origin, cpus, vm.gic_v3, true).map_err(|e| (build_errno(&e), e))
    })();
    r.map_err(|(code, msg)| {
        say(vm, "create", &a, &msg);
        code
    })
}

/// Asks a PV domU to power off or reboot: it sees `virq::CONTROL` and answers itself.
fn shutdown(dom: u64, reason: u64) -> i64 {
    use ferrite_abi::sched::{SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};
    let Some(target) = target(dom) else {
        return errno::ENOENT;
    };
    if reason != SHUTDOWN_POWEROFF && reason != SHUTDOWN_REBOOT {
        return errno::EINVAL;
    }
    if target.pv().is_none() || !super::is_running(target) {
        log::warn!(
            "dom0: shutdown of {} (domain {}): it is dom0 or has stopped",
            target.name,
            target.id
        );
        return errno::EINVAL;
    }
    let Some(si) = super::events::shared_info(target) else {
        return errno::EINVAL;
    };
    si.shutdown_request.store(reason + 1, Ordering::Release);
    super::domu::raise_virq(target, 0, ferrite_abi::shared_info::virq::CONTROL);
    log::info!(
        "{}: domain {} asked to {}",
        target.name,
        target.id,
        if reason == SHUTDOWN_REBOOT {
            "reboot"
        } else {
            "power off"
        }
    );
    0
}

/// `GET_INFO`'s answer for `vm`.
pub fn info(vm: &Vm) -> DomInfo {
    use ferrite_abi::sched as s;
    let mut i = DomInfo {
        id: vm.id,
        privileged: (vm.id == 0) as u8,
        vcpus: vm.vcpus as u32,
        ..DomInfo::default()
    };
    let (st, reason) = match &*vm.state.lock() {
        _ if vm.life.dying.load(Ordering::Acquire) => (state::DYING, 0),
        DomainState::Running if lifecycle::is_paused(vm) => (state::PAUSED, 0),
        DomainState::Running => (state::RUNNING, 0),
        DomainState::PoweredOff => (state::SHUTDOWN, s::SHUTDOWN_POWEROFF),
        DomainState::Rebooting => (state::SHUTDOWN, s::SHUTDOWN_REBOOT),
        DomainState::Crashed(_) => (state::CRASHED, s::SHUTDOWN_CRASH),
    };
    i.state = st;
    i.shutdown_reason = reason as u32;
    match vm.pv() {
        Some(pv) => {
            i.mem_kib = pv.frames.lock().nr_frames() as u64 * 4;
            i.maxmem_kib = pv.max_pages * 4;
        }
        None => {
            i.mem_kib = vm.memory.iter().map(|r| r.size).sum::<u64>() / 1024;
            i.maxmem_kib = i.mem_kib;
        }
    }
    let now = sched::now();
    i.cpu_ns = sched::with(|c| {
        (0..vm.vcpus)
            .filter_map(|v| c.stats(sched::id(vm, v), now))
            .map(|st| st.running_ns)
            .sum()
    })
    .unwrap_or(0);
    if let Some(o) = &vm.life.origin {
        i.on_crash = o.spec.on_crash.abi();
    }
    i.restarts = vm.life.restarts.load(Ordering::Relaxed);
    let n = vm.name.len().min(31);
    i.name[..n].copy_from_slice(&vm.name.as_bytes()[..n]);
    i
}
