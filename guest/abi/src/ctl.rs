//! The structures of the domain-control calls (`DOMCTL`, dom0 only): creating a domain from
//! an image in dom0's memory, reading a domain's state, the machine's memory, and the canonical
//! form of a saved domain (its pages and vCPUs) that `SAVE_*` produces and `RESTORE_*` takes.

use core::mem::{offset_of, size_of};

/// `DOMCTL CREATE` and `RESTORE_BEGIN`'s argument (48 bytes). Every address is a guest
/// virtual address in dom0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CreateArgs {
    /// The PV kernel (an ELF), or for `RESTORE_BEGIN` the [`SaveHeader`].
    pub image: u64,
    pub image_len: u64,
    /// The configuration: the same `key=value,...` text as Ferrite's `domu=` boot option
    /// (docs/lifecycle.md), UTF-8, not NUL-terminated.
    pub config: u64,
    pub config_len: u64,
    /// Where Ferrite writes why it refused (NUL-terminated, cut to fit); 0 for nowhere.
    pub err: u64,
    pub err_len: u64,
}

const _: () = assert!(size_of::<CreateArgs>() == 48);

/// [`DomInfo::state`].
pub mod state {
    /// Its vCPUs may run (each may still be blocked, waiting for an event).
    pub const RUNNING: u8 = 0;
    /// Paused by dom0 (or created and not yet unpaused).
    pub const PAUSED: u8 = 1;
    /// It shut down (power off, reboot, suspend) and is kept until destroyed.
    pub const SHUTDOWN: u8 = 2;
    /// It crashed and is kept for inspection (`on_crash=preserve`) until destroyed.
    pub const CRASHED: u8 = 3;
    /// Being destroyed: waiting for its vCPUs to leave their CPUs or its frames to be unmapped.
    pub const DYING: u8 = 4;
}

/// [`DomInfo::on_crash`]: what Ferrite does when the domain crashes.
pub mod on_crash {
    /// Release it (the default).
    pub const DESTROY: u32 = 0;
    /// Destroy it and build it again from the same image and configuration.
    pub const RESTART: u32 = 1;
    /// Keep it, stopped, for inspection (`list` shows it crashed) until destroyed.
    pub const PRESERVE: u32 = 2;
}

/// A domain as `DOMCTL GET_INFO` describes it (96 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DomInfo {
    pub id: u16,
    /// A [`state`] value.
    pub state: u8,
    /// 1 for the privileged domain (dom0).
    pub privileged: u8,
    pub vcpus: u32,
    /// Memory it owns now, and the most it may own, in KiB.
    pub mem_kib: u64,
    pub maxmem_kib: u64,
    /// CPU time its vCPUs have run, in nanoseconds.
    pub cpu_ns: u64,
    /// Why it stopped: a `SHUTDOWN_*` reason (valid in states SHUTDOWN and CRASHED).
    pub shutdown_reason: u32,
    /// An [`on_crash`] value.
    pub on_crash: u32,
    /// Times it was restarted by `on_crash=restart` or a reboot.
    pub restarts: u32,
    pub pad: u32,
    /// Its name, NUL-padded UTF-8.
    pub name: [u8; 32],
    pub reserved: [u64; 2],
}

impl DomInfo {
    /// The name as text (up to its first NUL).
    pub fn name(&self) -> &str {
        let n = self.name.iter().position(|&b| b == 0).unwrap_or(32);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }
}

const _: () = assert!(size_of::<DomInfo>() == 96);
const _: () = assert!(offset_of!(DomInfo, mem_kib) == 8);
const _: () = assert!(offset_of!(DomInfo, name) == 48);

/// The machine as `DOMCTL PHYSINFO` describes it (32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PhysInfo {
    /// Frames (4 KiB) Ferrite manages for domains, and how many are free now.
    pub total_frames: u64,
    pub free_frames: u64,
    pub pcpus: u32,
    /// Domains that exist (dom0 included).
    pub domains: u32,
    /// Bytes of Ferrite's own heap in use.
    pub heap_used: u64,
}

const _: () = assert!(size_of::<PhysInfo>() == 32);

/// "FERSAVE2": the first word of a [`SaveHeader`].
pub const SAVE_MAGIC: u64 = u64::from_le_bytes(*b"FERSAVE2");
/// The first word of the format before it (a 112-byte header without the disk): refused, by
/// name.
pub const SAVE_MAGIC_V1: u64 = u64::from_le_bytes(*b"FERSAVE1");

/// What `SAVE_BEGIN` reports and a save file starts with (128 bytes). The file goes on with
/// `nr_vcpus` [`VcpuState`]s, then `nr_pages` records of an 8-byte page type and 4096 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SaveHeader {
    pub magic: u64,
    pub nr_pages: u64,
    pub nr_vcpus: u32,
    pub pad: u32,
    /// The domain's maximum memory in pages (its balloon limit).
    pub max_pages: u64,
    /// Its virtual counter (CNTVCT_EL0) when it was saved: the restored domain's goes on from
    /// there.
    pub virtual_count: u64,
    /// Pseudo-physical frames of its shared-info, start-info and console-ring pages.
    pub shared_info_pfn: u64,
    pub start_info_pfn: u64,
    pub console_pfn: u64,
    /// Its console event channel port (re-bound on restore).
    pub console_port: u32,
    pub weight: u32,
    pub cap: u32,
    pub on_crash: u32,
    /// Its name, NUL-padded.
    pub name: [u8; 32],
    /// Its virtual disk (`disk=`): a region of dom0's disk, in bytes; `disk_size` 0 for none.
    /// A restore claims it again, unless its configuration gives another.
    pub disk_offset: u64,
    pub disk_size: u64,
}

impl Default for SaveHeader {
    fn default() -> Self {
        Self {
            magic: SAVE_MAGIC,
            nr_pages: 0,
            nr_vcpus: 0,
            pad: 0,
            max_pages: 0,
            virtual_count: 0,
            shared_info_pfn: 0,
            start_info_pfn: 0,
            console_pfn: 0,
            console_port: 0,
            weight: 0,
            cap: 0,
            on_crash: 0,
            name: [0; 32],
            disk_offset: 0,
            disk_size: 0,
        }
    }
}

const _: () = assert!(size_of::<SaveHeader>() == 128);

impl SaveHeader {
    /// Why a header read from a file is not one this format can restore: `None` if its magic
    /// is [`SAVE_MAGIC`]. Every toolstack and Ferrite refuse with these words.
    pub fn format_error(&self) -> Option<&'static str> {
        match self.magic {
            SAVE_MAGIC => None,
            SAVE_MAGIC_V1 => Some(
                "a save file of an older format (FERSAVE1, without the disk): this Ferrite \
                 restores FERSAVE2",
            ),
            _ => Some("not a Ferrite save file (bad magic)"),
        }
    }
}

/// A saved page's type, as `SAVE_PAGE` returns it.
pub mod page_type {
    /// Data: copied as it is.
    pub const DATA: u64 = 0;
    /// A page table at level 0..=3 (`TABLE_L0 + level`): its valid entries' output addresses
    /// are pseudo-physical (frame number × 4096), pinned as a root if [`PINNED`] is set.
    pub const TABLE_L0: u64 = 1;
    pub const TABLE_L3: u64 = 4;
    /// Or'ed into a table's type: it was pinned (a root the guest loaded or pinned).
    pub const PINNED: u64 = 1 << 8;
}

/// A vCPU in canonical form (944 bytes): translation bases hold pseudo-physical addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuState {
    /// 1 if the vCPU is up.
    pub up: u64,
    /// x0..x30.
    pub x: [u64; 31],
    pub pc: u64,
    pub pstate: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    /// TTBR0/1_EL1 with the base as a pseudo-physical address (ASID kept).
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub sctlr: u64,
    pub tcr: u64,
    pub mair: u64,
    pub vbar: u64,
    pub tpidr_el0: u64,
    pub tpidr_el1: u64,
    pub tpidrro_el0: u64,
    pub contextidr: u64,
    pub cntkctl: u64,
    /// The `SET_TIMER_OP` deadline in the guest's virtual counter (0: none), and the
    /// virtual counter's value when it was saved (the restored domain's counter goes on from it).
    pub timer_deadline: u64,
    pub virtual_count: u64,
    pub fpsr: u64,
    pub fpcr: u64,
    pub v: [u128; 32],
}

const _: () = assert!(size_of::<VcpuState>() == 944);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_header_of_another_format_is_refused_by_name() {
        let h = SaveHeader::default();
        assert_eq!(h.format_error(), None, "a new header is this format");
        let old = SaveHeader {
            magic: SAVE_MAGIC_V1,
            ..h
        };
        assert!(old.format_error().unwrap().contains("FERSAVE1"));
        let foreign = SaveHeader { magic: 0, ..h };
        assert_eq!(
            foreign.format_error(),
            Some("not a Ferrite save file (bad magic)")
        );
    }
}
