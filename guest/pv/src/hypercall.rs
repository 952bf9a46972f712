//! Ferrite's hypercalls: the raw `hvc #0` and one typed wrapper per call.
//!
//! Convention (docs/abi.md, "Calling convention"): function id in x0, arguments in x1..x5,
//! result in x0 (`< 0`: a negated errno), batched calls also return the entries done in x1;
//! x0..x3 are clobbered. Buffers are passed by virtual address in the caller's current
//! translation regime; descriptor and table addresses are machine addresses.
//!
//! Calls that change the domain's translation (`MMU_UPDATE`, `MMUEXT_OP`) or start code
//! (`VCPU_OP UP`) are `unsafe`: Rust cannot check that they leave the memory it uses mapped.

use ferrite_abi::call::{self, console, event, memory, sched_ctl, vcpu};
use ferrite_abi::errno::{self, Errno};
use ferrite_abi::mmu::{MmuUpdate, MmuextOp};
use ferrite_abi::sched;

/// `DOMID_SELF`, as the x4 argument of the MMU calls.
pub const DOMID_SELF: u64 = call::DOMID_SELF as u64;

/// The raw call: x0..x5 in, (x0, x1) out.
///
/// # Safety
/// Ferrite may read and write guest memory the arguments name, change the domain's
/// translation, start or stop vCPUs, or stop the domain: the caller answers for what the call
/// does to memory Rust code relies on.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub unsafe fn raw(x0: u64, x1: u64, x2: u64, x3: u64, x4: u64, x5: u64) -> (u64, u64) {
    let (r0, r1);
    // SAFETY: `hvc #0` is Ferrite's calling convention: it clobbers x0..x3 only (declared) and
    // may access memory (no `nomem`); the caller's contract covers what the call does.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") x0 => r0,
            inout("x1") x1 => r1,
            inout("x2") x2 => _,
            inout("x3") x3 => _,
            in("x4") x4,
            in("x5") x5,
            options(nostack),
        );
    }
    (r0, r1)
}

/// Off aarch64 (host tests) there is no hypervisor: every call answers `-ENOSYS`.
///
/// # Safety
/// None needed here; `unsafe` to match the aarch64 signature.
#[cfg(not(target_arch = "aarch64"))]
pub unsafe fn raw(_x0: u64, _x1: u64, _x2: u64, _x3: u64, _x4: u64, _x5: u64) -> (u64, u64) {
    (errno::ENOSYS as u64, 0)
}

/// A call with only x0..x3 meaningful that cannot touch memory Rust relies on.
fn simple(f: u32, x1: u64, x2: u64) -> Result<u64, Errno> {
    // SAFETY: only used for calls that read no buffer, change no mapping and start no code.
    let (r0, _) = unsafe { raw(f as u64, x1, x2, 0, 0, 0) };
    errno::result(r0)
}

/// What a batched call answers: x0 as a result, x1 = entries done (all of them on success;
/// on failure, the index of the entry that failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchResult {
    pub result: Result<u64, Errno>,
    pub done: usize,
}

impl BatchResult {
    pub const fn from_regs(x0: u64, x1: u64) -> Self {
        let r = x0 as i64;
        let result = if r >= 0 {
            Ok(x0)
        } else {
            match Errno::from_ret(r) {
                Some(e) => Err(e),
                None => Err(Errno::NoSys),
            }
        };
        Self {
            result,
            done: x1 as usize,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// `VERSION`: `(major << 16) | minor`.
pub fn version() -> u64 {
    simple(call::VERSION, 0, 0).unwrap_or(0)
}

/// `FEATURES`: feature word `word` (only 0 exists).
pub fn features(word: u64) -> Result<u64, Errno> {
    simple(call::FEATURES, word, 0)
}

/// `CONSOLE_IO WRITE` of `bytes`; returns how many Ferrite took (it may cap one call).
pub fn console_write(bytes: &[u8]) -> Result<usize, Errno> {
    // SAFETY: Ferrite only reads the buffer, which the slice keeps alive and mapped.
    let (r0, _) = unsafe {
        raw(
            call::CONSOLE_IO as u64,
            console::WRITE,
            bytes.as_ptr() as u64,
            bytes.len() as u64,
            0,
            0,
        )
    };
    errno::result(r0).map(|n| n as usize)
}

/// `SCHED_OP YIELD`.
pub fn sched_yield() -> Result<(), Errno> {
    simple(call::SCHED_OP, sched::YIELD, 0).map(drop)
}

/// `SCHED_OP BLOCK`: returns when an event is pending for this vCPU or its timer fired (at
/// once if something is already pending).
pub fn sched_block() -> Result<(), Errno> {
    simple(call::SCHED_OP, sched::BLOCK, 0).map(drop)
}

/// `SCHED_OP SHUTDOWN` with a reason (`ferrite_abi::sched::SHUTDOWN_*`). Returns only if it
/// was refused (or a suspended domain was resumed: `Ok`).
pub fn shutdown(reason: u64) -> Result<(), Errno> {
    simple(call::SCHED_OP, sched::SHUTDOWN, reason).map(drop)
}

/// `SET_TIMER_OP`: one-shot timer at `deadline` (CNTVCT ticks); 0 cancels.
pub fn set_timer(deadline: u64) -> Result<(), Errno> {
    simple(call::SET_TIMER_OP, deadline, 0).map(drop)
}

/// `VCPU_OP UP`: starts vCPU `index` at `entry` (a VA in the caller's translation) with
/// x0 = `arg`, the caller's bases and translation registers, DAIF masked.
///
/// # Safety
/// `entry` must be code that can run on a fresh vCPU with that argument (its own stack etc.).
pub unsafe fn vcpu_up(index: u64, entry: u64, arg: u64) -> Result<(), Errno> {
    // SAFETY: the caller vouches for the entry point.
    let (r0, _) = unsafe { raw(call::VCPU_OP as u64, vcpu::UP, index, entry, arg, 0) };
    errno::result(r0).map(drop)
}

/// `VCPU_OP DOWN`: stops vCPU `index` (which may be the caller).
pub fn vcpu_down(index: u64) -> Result<(), Errno> {
    simple(call::VCPU_OP, vcpu::DOWN, index).map(drop)
}

/// `VCPU_OP IS_UP`.
pub fn vcpu_is_up(index: u64) -> Result<bool, Errno> {
    simple(call::VCPU_OP, vcpu::IS_UP, index).map(|r| r != 0)
}

/// `MMU_UPDATE` of `reqs` for domain `domid` (x4; [`DOMID_SELF`] for the caller).
///
/// # Safety
/// The updates must not unmap, or make read-only, memory Rust code still uses writably, nor
/// map anything in a way that aliases Rust objects unsoundly.
pub unsafe fn mmu_update(reqs: &[MmuUpdate], domid: u64) -> BatchResult {
    // SAFETY: Ferrite reads the array (kept alive by the slice); the caller answers for the
    // updates themselves.
    let (r0, r1) = unsafe {
        raw(
            call::MMU_UPDATE as u64,
            reqs.as_ptr() as u64,
            reqs.len() as u64,
            0,
            domid,
            0,
        )
    };
    BatchResult::from_regs(r0, r1)
}

/// `MMUEXT_OP` of `ops` for domain `domid`.
///
/// # Safety
/// As [`mmu_update`]: new bases and unpins must not take away memory Rust code uses.
pub unsafe fn mmuext_op(ops: &[MmuextOp], domid: u64) -> BatchResult {
    // SAFETY: Ferrite reads the array; the caller answers for the operations.
    let (r0, r1) = unsafe {
        raw(
            call::MMUEXT_OP as u64,
            ops.as_ptr() as u64,
            ops.len() as u64,
            0,
            domid,
            0,
        )
    };
    BatchResult::from_regs(r0, r1)
}

/// `MEMORY_OP INCREASE_RESERVATION`: up to `list.len()` new frames, their machine addresses
/// written into `list`; `done` says how many (all valid even on `ENOMEM`).
pub fn increase_reservation(list: &mut [u64]) -> BatchResult {
    // SAFETY: Ferrite writes at most `list.len()` u64s into the slice, which is writable and
    // ours; new frames are not mapped anywhere, so nothing else changes.
    let (r0, r1) = unsafe {
        raw(
            call::MEMORY_OP as u64,
            list.as_mut_ptr() as u64,
            list.len() as u64,
            0,
            memory::INCREASE_RESERVATION,
            0,
        )
    };
    BatchResult::from_regs(r0, r1)
}

/// `MEMORY_OP DECREASE_RESERVATION`: gives back the frames at the listed machine addresses.
/// Ferrite refuses any frame that is still mapped, a table, pinned or the shared-info page,
/// so this cannot take away memory the guest can reach.
pub fn decrease_reservation(list: &[u64]) -> BatchResult {
    // SAFETY: Ferrite reads the list; it gives back only frames nothing maps.
    let (r0, r1) = unsafe {
        raw(
            call::MEMORY_OP as u64,
            list.as_ptr() as u64,
            list.len() as u64,
            0,
            memory::DECREASE_RESERVATION,
            0,
        )
    };
    BatchResult::from_regs(r0, r1)
}

/// `MEMORY_OP CURRENT_RESERVATION`: frames owned now.
pub fn current_reservation() -> Result<u64, Errno> {
    // SAFETY: no buffer (x1 = x2 = 0), no effect.
    let (r0, _) = unsafe {
        raw(
            call::MEMORY_OP as u64,
            0,
            0,
            0,
            memory::CURRENT_RESERVATION,
            0,
        )
    };
    errno::result(r0)
}

/// `MEMORY_OP MAXIMUM_RESERVATION`: the most frames the domain may own.
pub fn maximum_reservation() -> Result<u64, Errno> {
    // SAFETY: no buffer (x1 = x2 = 0), no effect.
    let (r0, _) = unsafe {
        raw(
            call::MEMORY_OP as u64,
            0,
            0,
            0,
            memory::MAXIMUM_RESERVATION,
            0,
        )
    };
    errno::result(r0)
}

/// `EVENT_OP ACK`: the upcall was handled; Ferrite re-evaluates the virtual IRQ line.
pub fn event_ack() -> Result<(), Errno> {
    simple(call::EVENT_OP, event::ACK, 0).map(drop)
}

/// `SCHED_CTL` (dom0 only; `-EPERM` for anyone else): command `cmd` on domain `domid`.
pub fn sched_ctl(cmd: u64, domid: u64, a3: u64, a4: u64) -> Result<u64, Errno> {
    if cmd == sched_ctl::GET_VCPU_STATS {
        // Ferrite writes through the VA in x4: use `vcpu_stats`.
        return Err(Errno::Inval);
    }
    // SAFETY: no command but GET_VCPU_STATS (refused above) touches guest memory.
    let (r0, _) = unsafe { raw(call::SCHED_CTL as u64, cmd, domid, a3, a4, 0) };
    errno::result(r0)
}

/// `SCHED_CTL GET_VCPU_STATS` of vCPU `vcpu` of domain `domid`.
pub fn vcpu_stats(domid: u64, vcpu: u64) -> Result<sched::VcpuStats, Errno> {
    let mut s = sched::VcpuStats::default();
    // SAFETY: Ferrite writes one VcpuStats into `s`, which is ours and writable.
    let (r0, _) = unsafe {
        raw(
            call::SCHED_CTL as u64,
            sched_ctl::GET_VCPU_STATS,
            domid,
            vcpu,
            &raw mut s as u64,
            0,
        )
    };
    errno::result(r0).map(|_| s)
}

/// `EVTCHN_OP` `cmd` with x2 = `a`, x3 = `b` (`ferrite_abi::evtchn`): the port, 0, or the
/// status kind.
pub fn evtchn_op(cmd: u64, a: u64, b: u64) -> Result<u64, Errno> {
    // SAFETY: event-channel calls read no buffer, change no mapping and start no code.
    let (r0, _) = unsafe { raw(call::EVTCHN_OP as u64, cmd, a, b, 0, 0) };
    errno::result(r0)
}

/// `EVTCHN_OP SEND` on `port`.
pub fn evtchn_send(port: u32) -> Result<(), Errno> {
    evtchn_op(ferrite_abi::evtchn::SEND, port as u64, 0).map(drop)
}

/// `GNTTAB_OP` `cmd` with x2 = `a`, x3 = `b` (`ferrite_abi::grant`).
///
/// # Safety
/// `COPY` writes guest memory the ops name (their destinations and status fields).
pub unsafe fn gnttab_op(cmd: u64, a: u64, b: u64) -> Result<u64, Errno> {
    // SAFETY: the caller's contract.
    let (r0, _) = unsafe { raw(call::GNTTAB_OP as u64, cmd, a, b, 0, 0) };
    errno::result(r0)
}

/// `GNTTAB_OP COPY` of `ops`: how many Ferrite did; each op's `status` says how it went.
pub fn grant_copy(ops: &mut [ferrite_abi::grant::GrantCopy]) -> Result<u64, Errno> {
    // SAFETY: the ops' local sides are the caller's to name; Rust sees the array as borrowed
    // mutably, and destinations written through a VA are the caller's responsibility.
    unsafe {
        gnttab_op(
            ferrite_abi::grant::COPY,
            ops.as_mut_ptr() as u64,
            ops.len() as u64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_results() {
        let ok = BatchResult::from_regs(0, 7);
        assert_eq!(ok.result, Ok(0));
        assert_eq!(ok.done, 7);
        let e = BatchResult::from_regs(errno::EBUSY as u64, 3);
        assert_eq!(e.result, Err(Errno::Busy));
        assert_eq!(e.done, 3);
        assert!(!e.is_ok());
        assert_eq!(
            BatchResult::from_regs(-99i64 as u64, 0).result,
            Err(Errno::NoSys)
        );
    }

    #[test]
    fn host_has_no_hypervisor() {
        assert_eq!(features(0), Err(Errno::NoSys));
        assert_eq!(console_write(b"x"), Err(Errno::NoSys));
        assert_eq!(version(), 0);
    }
}
