//! The domain-control hypercalls (`DOMCTL`, [`ferrite_abi::call::domctl`]) as functions
//! returning `Result<_, Errno>`. Every buffer is dom0's own memory, passed by its virtual
//! address (dom0's map is the identity, and Ferrite translates it through stage 1 and 2).

use crate::psci;
use alloc::string::String;
use alloc::vec::Vec;
use ferrite_abi::call::{DOMCTL, domctl as cmd};
use ferrite_abi::ctl::{CreateArgs, DomInfo, PhysInfo, SaveHeader, VcpuState};
use ferrite_abi::errno::{self, Errno};

pub type Result<T> = core::result::Result<T, Errno>;

fn ret(r: i64) -> Result<u64> {
    errno::result(r as u64)
}

fn call(c: u64, dom: u64, a: u64) -> Result<u64> {
    ret(psci::hypercall(DOMCTL, c, dom, a))
}

/// The domain after `prev` that exists (0 starts the walk), or `None` at the end.
pub fn next_domain(prev: u64) -> Option<u64> {
    let r = psci::hypercall(DOMCTL, cmd::NEXT_DOMAIN, prev, 0);
    (r >= 0).then_some(r as u64)
}

/// Every domain id: 0 (dom0) first, then the walk.
pub fn domain_ids() -> Vec<u64> {
    let mut ids = alloc::vec![0];
    let mut d = 0;
    while let Some(n) = next_domain(d) {
        if n <= d {
            break; // a walk that does not advance would never end
        }
        ids.push(n);
        d = n;
    }
    ids
}

pub fn get_info(dom: u64) -> Result<DomInfo> {
    let mut info = DomInfo::default();
    call(cmd::GET_INFO, dom, &mut info as *mut DomInfo as u64)?;
    Ok(info)
}

pub fn physinfo() -> Result<PhysInfo> {
    let mut p = PhysInfo::default();
    call(cmd::PHYSINFO, 0, &mut p as *mut PhysInfo as u64)?;
    Ok(p)
}

/// Builds a domain from `image` (an ELF) and `config` (`domu=` text); it starts paused.
/// On refusal, the errno and Ferrite's reason (may be empty).
pub fn create(image: &[u8], config: &str) -> core::result::Result<u64, (Errno, String)> {
    create_call(cmd::CREATE, image, config)
}

fn create_call(c: u64, image: &[u8], config: &str) -> core::result::Result<u64, (Errno, String)> {
    let mut err = [0u8; 160];
    let args = CreateArgs {
        image: image.as_ptr() as u64,
        image_len: image.len() as u64,
        config: config.as_ptr() as u64,
        config_len: config.len() as u64,
        err: err.as_mut_ptr() as u64,
        err_len: err.len() as u64,
    };
    let r = psci::hypercall(DOMCTL, c, &args as *const CreateArgs as u64, 0);
    if r >= 0 {
        return Ok(r as u64);
    }
    let n = err.iter().position(|&b| b == 0).unwrap_or(err.len());
    let why = String::from_utf8_lossy(&err[..n]).into_owned();
    Err((Errno::from_ret(r).unwrap_or(Errno::NoSys), why))
}

pub fn pause(dom: u64) -> Result<()> {
    call(cmd::PAUSE, dom, 0).map(drop)
}

pub fn unpause(dom: u64) -> Result<()> {
    call(cmd::UNPAUSE, dom, 0).map(drop)
}

pub fn destroy(dom: u64) -> Result<()> {
    call(cmd::DESTROY, dom, 0).map(drop)
}

/// Asks the domain to shut down (`SHUTDOWN_POWEROFF` or `SHUTDOWN_REBOOT`).
pub fn shutdown(dom: u64, reason: u64) -> Result<()> {
    call(cmd::SHUTDOWN, dom, reason).map(drop)
}

/// Copies Ferrite's log from sequence number `seq` into `buf`: (bytes, next sequence number).
pub fn dmesg(seq: u64, buf: &mut [u8]) -> Result<(usize, u64)> {
    let mut next = 0;
    let r = psci::hypercall4_x1(
        DOMCTL,
        cmd::DMESG,
        seq,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        &mut next,
    );
    ret(r).map(|n| (n as usize, next))
}

/// Ferrite answers `EBUSY` until the paused domain's vCPUs have left their CPUs (at their next
/// exit, which `PAUSE`'s IPI makes soon but not immediate): asked again, up to 2 s.
pub fn save_begin(dom: u64) -> Result<SaveHeader> {
    let mut h = SaveHeader::default();
    let deadline = crate::timer::deadline_us(2_000_000);
    loop {
        match call(cmd::SAVE_BEGIN, dom, &mut h as *mut SaveHeader as u64) {
            Err(Errno::Busy) if crate::timer::counter() < deadline => super::idle(),
            r => return r.map(|_| h),
        }
    }
}

/// Copies pseudo-physical frame `pfn` into `page`; returns its page type.
pub fn save_page(dom: u64, pfn: u64, page: &mut [u8; 4096]) -> Result<u64> {
    ret(psci::hypercall4(
        DOMCTL,
        cmd::SAVE_PAGE,
        dom,
        pfn,
        page.as_mut_ptr() as u64,
    ))
}

pub fn save_vcpu(dom: u64, vcpu: u64) -> Result<VcpuState> {
    let mut v = VcpuState::default();
    ret(psci::hypercall4(
        DOMCTL,
        cmd::SAVE_VCPU,
        dom,
        vcpu,
        &mut v as *mut VcpuState as u64,
    ))?;
    Ok(v)
}

/// Starts a restore from a header; returns the new (paused) domain's id.
pub fn restore_begin(h: &SaveHeader) -> core::result::Result<u64, (Errno, String)> {
    // SAFETY: a SaveHeader is plain integers; viewing it as bytes reads only initialised memory.
    let bytes = unsafe {
        core::slice::from_raw_parts(h as *const SaveHeader as *const u8, size_of::<SaveHeader>())
    };
    create_call(cmd::RESTORE_BEGIN, bytes, "")
}

pub fn restore_page(dom: u64, pfn: u64, page: &[u8; 4096], ty: u64) -> Result<()> {
    ret(psci::hypercall5(
        DOMCTL,
        cmd::RESTORE_PAGE,
        dom,
        pfn,
        page.as_ptr() as u64,
        ty,
    ))
    .map(drop)
}

pub fn restore_vcpu(dom: u64, vcpu: u64, v: &VcpuState) -> Result<()> {
    ret(psci::hypercall4(
        DOMCTL,
        cmd::RESTORE_VCPU,
        dom,
        vcpu,
        v as *const VcpuState as u64,
    ))
    .map(drop)
}

pub fn restore_end(dom: u64) -> Result<()> {
    call(cmd::RESTORE_END, dom, 0).map(drop)
}
