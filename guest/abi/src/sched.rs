//! `SCHED_OP` commands and shutdown reasons.

use core::mem::{offset_of, size_of};

/// Give the CPU to another vCPU; returns 0 when this one runs again.
pub const YIELD: u64 = 0;
/// Sleep until an event is pending for this vCPU (or its timer fires); returns 0.
pub const BLOCK: u64 = 1;
/// Stop the domain: x2 = a `SHUTDOWN_*` reason. Does not return (unless the reason is
/// [`SHUTDOWN_SUSPEND`] and the domain is resumed, then it returns 0).
pub const SHUTDOWN: u64 = 2;
/// Sleep until one of the event channels in the [`SchedPoll`] at guest VA x2 is pending, or
/// its timeout passes; returns 0.
pub const POLL: u64 = 3;

/// Shutdown reasons (Xen's numbers).
pub const SHUTDOWN_POWEROFF: u64 = 0;
pub const SHUTDOWN_REBOOT: u64 = 1;
pub const SHUTDOWN_SUSPEND: u64 = 2;
pub const SHUTDOWN_CRASH: u64 = 3;
pub const SHUTDOWN_WATCHDOG: u64 = 4;

/// A reason Ferrite knows, or None for a value it refuses (`-EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    PowerOff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
}

impl ShutdownReason {
    pub const fn from_raw(r: u64) -> Option<Self> {
        Some(match r {
            SHUTDOWN_POWEROFF => Self::PowerOff,
            SHUTDOWN_REBOOT => Self::Reboot,
            SHUTDOWN_SUSPEND => Self::Suspend,
            SHUTDOWN_CRASH => Self::Crash,
            SHUTDOWN_WATCHDOG => Self::Watchdog,
            _ => return None,
        })
    }

    pub const fn raw(self) -> u64 {
        match self {
            Self::PowerOff => SHUTDOWN_POWEROFF,
            Self::Reboot => SHUTDOWN_REBOOT,
            Self::Suspend => SHUTDOWN_SUSPEND,
            Self::Crash => SHUTDOWN_CRASH,
            Self::Watchdog => SHUTDOWN_WATCHDOG,
        }
    }
}

/// `POLL`'s argument. Layout: 24 bytes, `ports` at 0, `nr_ports` at 8, `pad` at 12 (0),
/// `timeout` at 16.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SchedPoll {
    /// Guest VA of an array of `u32` event-channel ports.
    pub ports: u64,
    pub nr_ports: u32,
    pub pad: u32,
    /// Deadline in virtual-counter ticks (CNTVCT_EL0); 0 = none.
    pub timeout: u64,
}

const _: () = assert!(size_of::<SchedPoll>() == 24);
const _: () = assert!(offset_of!(SchedPoll, nr_ports) == 8);
const _: () = assert!(offset_of!(SchedPoll, timeout) == 16);

/// Per-vCPU scheduler statistics, as `SCHED_CTL GET_VCPU_STATS` writes them (64 bytes). Times
/// are in nanoseconds of the machine's counter since the vCPU was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuStats {
    /// Time spent running on a pCPU.
    pub running_ns: u64,
    /// Time spent runnable, waiting in a run queue.
    pub runnable_ns: u64,
    /// Time spent blocked (WFI, `BLOCK`, down).
    pub blocked_ns: u64,
    /// Time since the vCPU was created.
    pub lifetime_ns: u64,
    /// Times it was put on a pCPU.
    pub runs: u64,
    /// Times it moved to another pCPU.
    pub migrations: u64,
    /// Its credit now (may be negative).
    pub credit_ns: i64,
    /// The pCPU it is on (or last ran on).
    pub pcpu: u32,
    /// 0 idle, 1 over, 2 under, 3 boost.
    pub priority: u32,
}

const _: () = assert!(size_of::<VcpuStats>() == 64);

/// The text form of a CPU mask (`SCHED_CTL SET_AFFINITY`'s x4), as toolstacks read and print
/// it: `0-1,3` or `all`. Returns the mask of the `pcpus` CPUs, or None for a malformed list,
/// an empty one, or one naming a CPU at or above `pcpus`.
pub fn parse_cpu_list(list: &str, pcpus: u64) -> Option<u64> {
    let all = if pcpus >= 64 {
        u64::MAX
    } else {
        (1u64 << pcpus) - 1
    };
    if list == "all" {
        return (all != 0).then_some(all);
    }
    let mut mask = 0u64;
    for part in list.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
            None => {
                let a = part.parse::<u64>().ok()?;
                (a, a)
            }
        };
        if a > b || b >= pcpus.min(64) {
            return None;
        }
        for c in a..=b {
            mask |= 1 << c;
        }
    }
    (mask != 0).then_some(mask)
}

/// Prints a CPU mask as a list (`0-1,3`), [`parse_cpu_list`]'s inverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuList(pub u64);

impl core::fmt::Display for CpuList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mask = self.0;
        let mut c = 0u32;
        let mut first = true;
        while c < 64 {
            if mask & (1 << c) == 0 {
                c += 1;
                continue;
            }
            let start = c;
            while c < 64 && mask & (1 << c) != 0 {
                c += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if c - 1 == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{}", c - 1)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(parse_cpu_list("all", 4), Some(0xf));
        assert_eq!(parse_cpu_list("0-1,3", 4), Some(0b1011));
        assert_eq!(parse_cpu_list("2", 4), Some(4));
        for bad in ["4", "1-0", "", "x", "0-64"] {
            assert_eq!(parse_cpu_list(bad, 4), None, "{bad}");
        }
        assert_eq!(parse_cpu_list("63", 64), Some(1 << 63));
        assert_eq!(CpuList(0b1011).to_string(), "0-1,3");
        assert_eq!(CpuList(0xf).to_string(), "0-3");
        assert_eq!(CpuList(u64::MAX).to_string(), "0-63");
        assert_eq!(CpuList(0).to_string(), "");
    }

    #[test]
    fn reasons_round_trip() {
        for r in 0..5 {
            assert_eq!(ShutdownReason::from_raw(r).unwrap().raw(), r);
        }
        assert_eq!(ShutdownReason::from_raw(5), None);
    }
}
