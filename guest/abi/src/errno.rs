//! Error codes: Linux's errno numbers, returned negated in x0 (so every failure is a negative
//! `i64` and every success is `>= 0`).

/// The errors Ferrite's calls return, with Linux's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum Errno {
    /// The caller may not do this: a frame it does not own, a foreign domain.
    Perm = 1,
    /// No such object (a vCPU, an event channel).
    NoEnt = 2,
    /// Out of memory: the reservation could not grow.
    NoMem = 12,
    /// A guest address Ferrite could not read or write.
    Fault = 14,
    /// The object is in use with another type or is still referenced.
    Busy = 16,
    /// The object already exists or is already in that state (a vCPU already up).
    Exist = 17,
    /// A malformed argument: reserved bits, bad alignment, unknown sub-command value.
    Inval = 22,
    /// A per-domain limit is reached (event-channel ports, grant entries, copy batch).
    NoSpc = 28,
    /// Unknown hypercall or sub-command.
    NoSys = 38,
}

pub const EPERM: i64 = -(Errno::Perm as i64);
pub const ENOENT: i64 = -(Errno::NoEnt as i64);
pub const ENOMEM: i64 = -(Errno::NoMem as i64);
pub const EFAULT: i64 = -(Errno::Fault as i64);
pub const EBUSY: i64 = -(Errno::Busy as i64);
pub const EEXIST: i64 = -(Errno::Exist as i64);
pub const EINVAL: i64 = -(Errno::Inval as i64);
pub const ENOSPC: i64 = -(Errno::NoSpc as i64);
pub const ENOSYS: i64 = -(Errno::NoSys as i64);

impl Errno {
    /// The value in x0: the negated errno.
    pub const fn to_ret(self) -> i64 {
        -(self as i64)
    }

    /// The error a negative x0 stands for, if it is one of Ferrite's.
    pub const fn from_ret(ret: i64) -> Option<Self> {
        Some(match ret {
            EPERM => Self::Perm,
            ENOENT => Self::NoEnt,
            ENOMEM => Self::NoMem,
            EFAULT => Self::Fault,
            EBUSY => Self::Busy,
            EEXIST => Self::Exist,
            EINVAL => Self::Inval,
            ENOSPC => Self::NoSpc,
            ENOSYS => Self::NoSys,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Perm => "EPERM",
            Self::NoEnt => "ENOENT",
            Self::NoMem => "ENOMEM",
            Self::Fault => "EFAULT",
            Self::Busy => "EBUSY",
            Self::Exist => "EEXIST",
            Self::Inval => "EINVAL",
            Self::NoSpc => "ENOSPC",
            Self::NoSys => "ENOSYS",
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Splits a call's x0 into success (the non-negative value) or the error.
pub fn result(ret: u64) -> Result<u64, Errno> {
    let r = ret as i64;
    if r >= 0 {
        Ok(ret)
    } else {
        Err(Errno::from_ret(r).unwrap_or(Errno::NoSys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_numbers_round_trip() {
        assert_eq!(EPERM, -1);
        assert_eq!(EFAULT, -14);
        assert_eq!(EBUSY, -16);
        assert_eq!(EINVAL, -22);
        assert_eq!(ENOSYS, -38);
        for e in [
            Errno::Perm,
            Errno::NoEnt,
            Errno::NoMem,
            Errno::Fault,
            Errno::Busy,
            Errno::Exist,
            Errno::Inval,
            Errno::NoSpc,
            Errno::NoSys,
        ] {
            assert_eq!(Errno::from_ret(e.to_ret()), Some(e));
            assert!(e.to_ret() < 0);
        }
        assert_eq!(Errno::from_ret(-5), None);
    }

    #[test]
    fn results() {
        assert_eq!(result(3), Ok(3));
        assert_eq!(result(EINVAL as u64), Err(Errno::Inval));
        // SMCCC's "unknown function" (-1) reads as EPERM's number; outside Ferrite's range it
        // is the SMCCC answer, which docs/abi.md explains.
        assert_eq!(result(u64::MAX), Err(Errno::Perm));
    }
}
