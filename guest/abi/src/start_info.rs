//! The start-info page: what Ferrite's domain builder tells a PV domU at its first
//! instruction (x0 holds the page's virtual address), in one fixed layout.

use core::mem::{offset_of, size_of};

/// "FERRITE" + version digit, little-endian: the bytes `FeRrItE1` at offset 0.
pub const MAGIC: u64 = u64::from_le_bytes(*b"FeRrItE1");
/// This layout's version.
pub const VERSION: u32 = 1;
/// Length of the command line, NUL included.
pub const CMDLINE_LEN: usize = 1024;

/// `StartInfo::flags`.
pub mod flags {
    /// The domain is privileged (dom0).
    pub const PRIVILEGED: u32 = 1 << 0;
    /// The domain is the initial domain.
    pub const INITDOMAIN: u32 = 1 << 1;
    /// A boot module (initrd) is present at `mod_start`.
    pub const MODULE: u32 = 1 << 2;
}

/// The start-info page's contents. Every address a guest dereferences at start is a virtual
/// address in the initial mapping; `*_ma` fields are machine addresses.
///
/// Layout (byte offsets, all little-endian): see the `offset_of!` assertions below and
/// docs/abi.md; 1184 bytes in total, inside one 4 KiB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct StartInfo {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Frames the domain owns at start.
    pub nr_pages: u64,
    /// VA of the frame list: `nr_pages` u64 machine addresses, indexed by pseudo-physical frame
    /// number (pfn). The guest owns it from then on.
    pub frame_list: u64,
    /// Machine address of the shared-info page (Ferrite writes it; the guest maps it).
    pub shared_info_ma: u64,
    /// VA at which pfn 0 is mapped: the initial mapping is `virt_base + pfn * 4096`.
    pub virt_base: u64,
    /// VA of the initial level-0 table (mapped read-only) and its machine address.
    pub pt_base: u64,
    pub pt_base_ma: u64,
    /// Frames of initial page tables (pfns `pt_first_pfn..pt_first_pfn + nr_pt_frames`).
    pub nr_pt_frames: u64,
    pub pt_first_pfn: u64,
    /// The first pfn the builder did not use: everything from it on is free memory.
    pub first_free_pfn: u64,
    /// VA and length of the boot module (initrd), when [`flags::MODULE`] is set.
    pub mod_start: u64,
    pub mod_len: u64,
    /// The console's event channel (0: none yet; output goes through `CONSOLE_IO`).
    pub console_evtchn: u32,
    /// The domain's id.
    pub domid: u32,
    /// Number of vCPUs (vCPU 0 runs first; the others wait for `VCPU_OP` UP).
    pub nr_vcpus: u32,
    pub pad: u32,
    /// Frequency of the virtual counter in Hz (CNTFRQ_EL0, for `SET_TIMER_OP` deadlines).
    pub counter_hz: u64,
    /// The command line, NUL-terminated.
    pub cmd_line: [u8; CMDLINE_LEN],
    /// VA of the shared-info page in the initial mapping (writable; see
    /// [`crate::shared_info`]).
    pub shared_info: u64,
    /// VA of the console ring page in the initial mapping (writable; see
    /// [`crate::console_ring`]) and its machine address; 0 if the domain has none.
    pub console_ring: u64,
    pub console_ring_ma: u64,
    /// How many times the domain has been restored from a save file: 0 for a domain built
    /// afresh; Ferrite adds 1 at each restore, and raises
    /// [`crate::shared_info::virq::RESTORED`] on vCPU 0. A guest that finds it changed sets up
    /// again what a save does not carry (its grant table, event channels but the console's,
    /// device-bus entries) and reconnects its frontends.
    pub restores: u64,
}

const _: () = assert!(offset_of!(StartInfo, magic) == 0);
const _: () = assert!(offset_of!(StartInfo, version) == 8);
const _: () = assert!(offset_of!(StartInfo, flags) == 12);
const _: () = assert!(offset_of!(StartInfo, nr_pages) == 16);
const _: () = assert!(offset_of!(StartInfo, frame_list) == 24);
const _: () = assert!(offset_of!(StartInfo, shared_info_ma) == 32);
const _: () = assert!(offset_of!(StartInfo, virt_base) == 40);
const _: () = assert!(offset_of!(StartInfo, pt_base) == 48);
const _: () = assert!(offset_of!(StartInfo, pt_base_ma) == 56);
const _: () = assert!(offset_of!(StartInfo, nr_pt_frames) == 64);
const _: () = assert!(offset_of!(StartInfo, pt_first_pfn) == 72);
const _: () = assert!(offset_of!(StartInfo, first_free_pfn) == 80);
const _: () = assert!(offset_of!(StartInfo, mod_start) == 88);
const _: () = assert!(offset_of!(StartInfo, mod_len) == 96);
const _: () = assert!(offset_of!(StartInfo, console_evtchn) == 104);
const _: () = assert!(offset_of!(StartInfo, domid) == 108);
const _: () = assert!(offset_of!(StartInfo, nr_vcpus) == 112);
const _: () = assert!(offset_of!(StartInfo, counter_hz) == 120);
const _: () = assert!(offset_of!(StartInfo, cmd_line) == 128);
const _: () = assert!(offset_of!(StartInfo, shared_info) == 1152);
const _: () = assert!(offset_of!(StartInfo, console_ring) == 1160);
const _: () = assert!(offset_of!(StartInfo, console_ring_ma) == 1168);
const _: () = assert!(offset_of!(StartInfo, restores) == 1176);
const _: () = assert!(size_of::<StartInfo>() == 1184);
const _: () = assert!(size_of::<StartInfo>() <= 4096);

impl StartInfo {
    /// An empty page with the magic and version set, for the builder to fill.
    pub const fn new() -> Self {
        Self {
            magic: MAGIC,
            version: VERSION,
            flags: 0,
            nr_pages: 0,
            frame_list: 0,
            shared_info_ma: 0,
            virt_base: 0,
            pt_base: 0,
            pt_base_ma: 0,
            nr_pt_frames: 0,
            pt_first_pfn: 0,
            first_free_pfn: 0,
            mod_start: 0,
            mod_len: 0,
            console_evtchn: 0,
            domid: 0,
            nr_vcpus: 0,
            pad: 0,
            counter_hz: 0,
            cmd_line: [0; CMDLINE_LEN],
            shared_info: 0,
            console_ring: 0,
            console_ring_ma: 0,
            restores: 0,
        }
    }

    /// Whether a guest should trust this page: the magic and a version it understands.
    pub const fn is_valid(&self) -> bool {
        self.magic == MAGIC && self.version == VERSION
    }

    /// Sets the command line, truncated to fit with its NUL; returns whether it fitted.
    pub fn set_cmd_line(&mut self, s: &str) -> bool {
        let n = s.len().min(CMDLINE_LEN - 1);
        self.cmd_line = [0; CMDLINE_LEN];
        self.cmd_line[..n].copy_from_slice(&s.as_bytes()[..n]);
        n == s.len()
    }

    /// The command line up to its NUL, if it is UTF-8.
    pub fn cmd_line(&self) -> Option<&str> {
        let n = self
            .cmd_line
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(CMDLINE_LEN);
        core::str::from_utf8(&self.cmd_line[..n]).ok()
    }

    /// The VA of pseudo-physical frame `pfn` in the initial mapping.
    pub const fn pfn_to_va(&self, pfn: u64) -> u64 {
        self.virt_base + pfn * 4096
    }
}

impl Default for StartInfo {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        let mut si = StartInfo::new();
        assert!(si.is_valid());
        assert_eq!(si.cmd_line(), Some(""));
        assert!(si.set_cmd_line("console=hvc0 quiet"));
        assert_eq!(si.cmd_line(), Some("console=hvc0 quiet"));
        let long = [b'x'; 2000];
        assert!(!si.set_cmd_line(core::str::from_utf8(&long).unwrap()));
        assert_eq!(si.cmd_line().unwrap().len(), CMDLINE_LEN - 1);
        assert_eq!(si.cmd_line[CMDLINE_LEN - 1], 0);
    }

    #[test]
    fn magic_bytes_and_addresses() {
        assert_eq!(&MAGIC.to_le_bytes(), b"FeRrItE1");
        let si = StartInfo {
            virt_base: 0xffff_0000_0000_0000,
            ..StartInfo::new()
        };
        assert_eq!(si.pfn_to_va(3), 0xffff_0000_0000_3000);
        assert!(!StartInfo { version: 2, ..si }.is_valid());
    }
}
