//! Function identifiers and argument conventions.
//!
//! A call is `hvc #0` with the function identifier in x0 and arguments in x1..x5; the result
//! comes back in x0 (`>= 0` success, `< 0` a negated [`crate::Errno`]). Batched calls
//! (`MMU_UPDATE`, `MMUEXT_OP`, `MEMORY_OP`) also return the number of entries done in x1. All
//! identifiers are SMCCC 64-bit fast calls in the vendor-specific hypervisor service range
//! (owning entity 6): `0xC600_0000 | n`. Numbers 0xFF00..0xFFFF of that range are SMCCC's
//! general queries (call count, UID, revision).

/// The first identifier of Ferrite's range, and the mask of its function number.
pub const BASE: u32 = 0xC600_0000;
pub const FUNCTION_MASK: u32 = 0x0000_FFFF;

/// Returns `(major << 16) | minor` of the ABI: [`VERSION_MAJOR`], [`VERSION_MINOR`].
pub const VERSION: u32 = BASE;
/// x1 = feature word index (only 0 exists); returns that word of [`features`] bits.
pub const FEATURES: u32 = BASE | 0x01;
/// x1 = [`console::WRITE`], x2 = buffer (guest virtual address), x3 = length; returns the
/// number of bytes written.
pub const CONSOLE_IO: u32 = BASE | 0x02;
/// x1 = command ([`crate::sched`]), x2 = its argument.
pub const SCHED_OP: u32 = BASE | 0x03;
/// x1 = deadline in ticks of the guest's virtual counter (CNTVCT_EL0), 0 = cancel.
pub const SET_TIMER_OP: u32 = BASE | 0x04;
/// x1 = command ([`vcpu`]), x2 = vCPU index, x3.. = command arguments.
pub const VCPU_OP: u32 = BASE | 0x05;
/// Batched: x1 = `[MmuUpdate]` (guest VA), x2 = count, x3 = 0 (continuation), x4 = DOMID_SELF.
pub const MMU_UPDATE: u32 = BASE | 0x06;
/// Batched: x1 = `[MmuextOp]` (guest VA), x2 = count, x3 = 0 (continuation), x4 = DOMID_SELF.
pub const MMUEXT_OP: u32 = BASE | 0x07;
/// Batched: x1 = `[u64]` machine addresses (guest VA), x2 = count, x3 = 0 (continuation),
/// x4 = command ([`memory`]).
pub const MEMORY_OP: u32 = BASE | 0x08;
/// x1 = command ([`event`]). PV domUs only.
pub const EVENT_OP: u32 = BASE | 0x09;
/// The scheduler's control interface, for dom0 only (`-EPERM` for anyone else): x1 = command
/// ([`sched_ctl`]), x2 = domain id, x3, x4 = the command's arguments.
pub const SCHED_CTL: u32 = BASE | 0x0A;
/// Event channels: x1 = command ([`crate::evtchn`]), x2.. its arguments.
pub const EVTCHN_OP: u32 = BASE | 0x0B;
/// Grant tables: x1 = command ([`crate::grant`]), x2.. its arguments.
pub const GNTTAB_OP: u32 = BASE | 0x0C;
/// Domain information for dom0 (`-EPERM` for anyone else): x1 = command ([`domctl`]), x2 =
/// domain id.
pub const DOMCTL: u32 = BASE | 0x0D;
/// The device bus: x1 = command ([`crate::devbus`]), x2.. its arguments.
pub const DEVICE_OP: u32 = BASE | 0x0E;

/// SMCCC general query: the vendor hypervisor service's UID, in x0..x3 (32-bit call).
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
/// SMCCC general query: how many calls the service implements (32-bit call).
pub const VENDOR_HYP_CALL_COUNT: u32 = 0x8600_FF00;
/// SMCCC general query: the service's revision, major in x0, minor in x1 (32-bit call).
pub const VENDOR_HYP_REVISION: u32 = 0x8600_FF03;
/// Ferrite's UID as [`VENDOR_HYP_CALL_UID`] returns it, one 32-bit word per register x0..x3:
/// UUID 5f1e7a9c-3b2d-4e6f-8a10-c0ffee0ab1de.
pub const UID: [u32; 4] = [0x5f1e_7a9c, 0x4e6f_3b2d, 0x10a8_c0ff, 0xdeb1_0aee];

/// The ABI version this crate describes.
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 0;
/// [`VERSION`]'s answer for this crate.
pub const fn version_word() -> u64 {
    ((VERSION_MAJOR as u64) << 16) | VERSION_MINOR as u64
}

/// SMCCC's answer to an identifier outside Ferrite's range that nothing implements.
pub const SMCCC_NOT_SUPPORTED: i64 = -1;

/// "The calling domain", for the domain argument of the MMU calls.
pub const DOMID_SELF: u16 = 0x7FF0;

/// The number of calls [`VENDOR_HYP_CALL_COUNT`] reports.
pub const CALL_COUNT: u32 = 15;

/// Whether `x0` is in Ferrite's range (anything in it that is not a call is `-ENOSYS`).
pub const fn is_ferrite_call(x0: u64) -> bool {
    x0 >> 32 == 0 && (x0 as u32) & !FUNCTION_MASK == BASE && (x0 as u32) & 0xFF00 != 0xFF00
}

/// Bits of feature word 0, as [`FEATURES`] returns it.
pub mod features {
    /// PV MMU: `MMU_UPDATE` and `MMUEXT_OP` with validated direct paging.
    pub const PV_MMU: u64 = 1 << 0;
    /// Block descriptors (2 MiB at level 2, 1 GiB at level 1) are accepted.
    pub const BLOCK_MAPPINGS: u64 = 1 << 1;
    /// The contiguous hint is accepted at levels 2 and 3 (see docs/abi.md for its rules).
    pub const CONTIGUOUS_HINT: u64 = 1 << 2;
    /// `MEMORY_OP` increase/decrease reservation (ballooning).
    pub const BALLOON: u64 = 1 << 3;
    /// `CONSOLE_IO`.
    pub const CONSOLE: u64 = 1 << 4;
    /// `SCHED_OP`, `SET_TIMER_OP`, `VCPU_OP`.
    pub const SCHED: u64 = 1 << 5;
    /// 16-bit ASIDs may be passed to `NEW_TTBR0` and the INVLPG operations (else 8-bit).
    pub const ASID16: u64 = 1 << 6;
    /// `EVENT_OP` and upcalls through the shared-info page.
    pub const EVENTS: u64 = 1 << 7;
    /// `SCHED_CTL` (dom0).
    pub const SCHED_CTL: u64 = 1 << 8;
    /// `EVTCHN_OP`: event channels.
    pub const EVTCHN: u64 = 1 << 9;
    /// `GNTTAB_OP`: grant tables (grant copy).
    pub const GNTTAB: u64 = 1 << 10;
    /// `DOMCTL` (dom0).
    pub const DOMCTL: u64 = 1 << 11;
    /// `DEVICE_OP`: the device bus.
    pub const DEVBUS: u64 = 1 << 12;
}

/// `DOMCTL` commands (x1); x2 = the domain id. Unknown domain: `-ENOENT`.
pub mod domctl {
    /// The domain's console back end, set up by the domain builder: x0 = the domU's event
    /// channel port (unbound, for dom0 to bind to), x1 = the grant reference of its console
    /// ring page (granted to dom0 read-write). `-ENOENT` if the domain has none (dom0).
    pub const CONSOLE: u64 = 0;
    /// x0 = the next domain id after x2 that exists (x2 = 0 starts the walk), `-ENOENT` at the
    /// end; x1 = its number of vCPUs, x2 = 1 if it is running.
    pub const NEXT_DOMAIN: u64 = 1;
    /// The domain's virtual disk in dom0's disk (its `domu=` setting `disk=`): x0 = first
    /// sector, x1 = number of sectors (512 bytes). `-ENOENT` if it has none.
    pub const DISK: u64 = 2;
    /// Build a new domain, paused, from an image and a configuration in dom0's memory: x2 =
    /// guest VA of a [`crate::ctl::CreateArgs`]. Returns the new domain's id. On failure the
    /// reason is also written, NUL-terminated, into the args' error buffer.
    pub const CREATE: u64 = 3;
    /// Stop the domain's vCPUs; its memory and devices stay. Returns 0 (also if it was paused).
    pub const PAUSE: u64 = 4;
    /// Let a paused (or newly created) domain's vCPUs run. Returns 0.
    pub const UNPAUSE: u64 = 5;
    /// Release everything the domain holds: its vCPUs, frames, grants, maps, event channels
    /// and devices; its id becomes free. `-EBUSY` if a vCPU could not be stopped in time
    /// (call again).
    pub const DESTROY: u64 = 6;
    /// Ask the domain to shut down: x3 = [`crate::sched::SHUTDOWN_POWEROFF`] or
    /// [`crate::sched::SHUTDOWN_REBOOT`]. The guest sees [`crate::shared_info::virq::CONTROL`]
    /// and [`crate::SharedInfo::shutdown_request`] and answers with `SCHED_OP SHUTDOWN`.
    pub const SHUTDOWN: u64 = 7;
    /// x3 = guest VA of a [`crate::ctl::DomInfo`] Ferrite fills.
    pub const GET_INFO: u64 = 8;
    /// x3 = guest VA of a [`crate::ctl::PhysInfo`] Ferrite fills (x2 is ignored).
    pub const PHYSINFO: u64 = 9;
    /// Ferrite's log ring: x2 = the sequence number to start at (0: the oldest kept), x3 =
    /// guest VA of a buffer, x4 = its length. Returns the bytes copied; x1 = the sequence
    /// number after them (pass it back to go on).
    pub const DMESG: u64 = 10;
    /// Start saving a paused domain: x3 = guest VA of a [`crate::ctl::SaveHeader`] Ferrite
    /// fills. `-EINVAL` if it runs, `-EOPNOTSUPP`-like `-ENOSYS` for a domain that cannot be
    /// saved (dom0, or one holding frames outside its initial allocation).
    pub const SAVE_BEGIN: u64 = 11;
    /// x3 = a pseudo-physical frame number below the header's `nr_pages`, x4 = guest VA of a
    /// 4 KiB buffer: Ferrite copies the frame there in canonical form (page-table entries
    /// rewritten from machine to pseudo-physical addresses). Returns the frame's
    /// [`crate::ctl::page_type`].
    pub const SAVE_PAGE: u64 = 12;
    /// x3 = vCPU index, x4 = guest VA of a [`crate::ctl::VcpuState`] Ferrite fills.
    pub const SAVE_VCPU: u64 = 13;
    /// Start restoring: x2 = guest VA of a [`crate::ctl::CreateArgs`] whose image is a
    /// [`crate::ctl::SaveHeader`] (`image_len` = its size). Returns the new (paused) domain's
    /// id, with `nr_pages` fresh frames for the pages that follow.
    pub const RESTORE_BEGIN: u64 = 14;
    /// x3 = pseudo-physical frame number, x4 = guest VA of the 4 KiB page as `SAVE_PAGE` gave
    /// it, x5 = its page type.
    pub const RESTORE_PAGE: u64 = 15;
    /// x3 = vCPU index, x4 = guest VA of its [`crate::ctl::VcpuState`].
    pub const RESTORE_VCPU: u64 = 16;
    /// Every page and vCPU is in: Ferrite validates and pins the page tables exactly as for a
    /// new domain. The domain stays paused; any refusal destroys it.
    pub const RESTORE_END: u64 = 17;
}

/// `CONSOLE_IO` commands.
pub mod console {
    /// Write x3 bytes from the buffer at guest VA x2 to Ferrite's console.
    pub const WRITE: u64 = 0;
}

/// `VCPU_OP` commands (x2 = the target vCPU's index in the domain).
pub mod vcpu {
    /// Start a vCPU that is down: it begins at x3 (guest VA) with x0 = x4, the caller's
    /// translation bases and system registers, interrupts masked. `-EEXIST` if it is up.
    pub const UP: u64 = 0;
    /// Stop a vCPU (itself or another); `-EBUSY` for the domain's last running vCPU.
    pub const DOWN: u64 = 1;
    /// Returns 1 if the vCPU is up, 0 if down.
    pub const IS_UP: u64 = 2;
}

/// `EVENT_OP` commands (x1).
pub mod event {
    /// The guest has handled its upcall (cleared `upcall_pending`): Ferrite re-evaluates the
    /// virtual IRQ line. Returns 0.
    pub const ACK: u64 = 0;
}

/// `SCHED_CTL` commands (x1); x2 = the domain id. Unknown domain: `-ENOENT`.
pub mod sched_ctl {
    /// Returns the domain's number of vCPUs.
    pub const GET_INFO: u64 = 0;
    /// Returns the domain's weight.
    pub const GET_WEIGHT: u64 = 1;
    /// x3 = weight, 1..=65535 (`-EINVAL` otherwise).
    pub const SET_WEIGHT: u64 = 2;
    /// Returns the domain's cap (percent of one pCPU; 0 = none).
    pub const GET_CAP: u64 = 3;
    /// x3 = cap, 0..=100 × pCPUs (`-EINVAL` otherwise).
    pub const SET_CAP: u64 = 4;
    /// x3 = vCPU index, x4 = mask of pCPUs it may run on (non-empty, existing pCPUs only).
    pub const SET_AFFINITY: u64 = 5;
    /// x3 = vCPU index, x4 = guest VA of a [`crate::sched::VcpuStats`] Ferrite fills.
    pub const GET_VCPU_STATS: u64 = 6;
    /// Returns the number of pCPUs the scheduler runs on.
    pub const GET_PCPUS: u64 = 7;
}

/// `MEMORY_OP` commands (x4).
pub mod memory {
    /// Ferrite gives the domain x2 new zeroed frames and writes their machine addresses into
    /// the list; `-ENOMEM` (with x1 = frames given) when it cannot give them all.
    pub const INCREASE_RESERVATION: u64 = 0;
    /// The domain gives back the x2 frames whose machine addresses are in the list; each must
    /// be unused (no mapping, no type, not pinned): the first that is not stops the call.
    pub const DECREASE_RESERVATION: u64 = 1;
    /// Returns the number of frames the domain owns in x0 (x1 and x2 must be 0).
    pub const CURRENT_RESERVATION: u64 = 2;
    /// Returns the most frames the domain may own in x0 (x1 and x2 must be 0).
    pub const MAXIMUM_RESERVATION: u64 = 3;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_smccc_fast_64_bit_vendor_hyp() {
        for f in [
            VERSION,
            FEATURES,
            CONSOLE_IO,
            SCHED_OP,
            SET_TIMER_OP,
            VCPU_OP,
            MMU_UPDATE,
            MMUEXT_OP,
            MEMORY_OP,
            EVENT_OP,
            SCHED_CTL,
            EVTCHN_OP,
            GNTTAB_OP,
            DOMCTL,
            DEVICE_OP,
        ] {
            assert_eq!(f >> 31, 1, "fast call");
            assert_eq!((f >> 30) & 1, 1, "SMC64/HVC64 convention");
            assert_eq!((f >> 24) & 0x3f, 6, "vendor-specific hypervisor service");
            assert!(is_ferrite_call(f as u64));
        }
        assert!(!is_ferrite_call(0xC600_FF01));
        assert!(!is_ferrite_call(0x8400_0000));
        assert!(!is_ferrite_call(0x1_C600_0000));
        assert_eq!(version_word(), 0x1_0000);
    }
}
