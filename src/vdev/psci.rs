//! PSCI as Ferrite offers it to guests (SMC Calling Convention, via HVC or a trapped SMC):
//! decoding a call into an action for the domain code, and the answers the spec requires.

use ferrite_abi::psci::*;
pub use ferrite_abi::psci::{
    ALREADY_ON, INVALID_ADDRESS, INVALID_PARAMETERS, NOT_SUPPORTED, ON_PENDING, SUCCESS,
};

/// PSCI 1.1, as the version call reports it.
pub const VERSION: u64 = 0x0001_0001;

/// What a guest's call asks the domain code to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Answer at once with this value in x0.
    Return(i64),
    CpuOn {
        target: u64,
        entry: u64,
        context: u64,
    },
    CpuOff,
    /// CPU_SUSPEND: a standby is a WFI; Ferrite treats every power state as one.
    Suspend,
    AffinityInfo {
        target: u64,
        level: u64,
    },
    SystemOff,
    SystemReset,
    /// Not a PSCI or SMCCC architecture call: the hypercall layer's to answer.
    NotPsci,
}

/// Decodes a call from x0..x3. 32-bit calls have their arguments truncated, as the SMCCC says.
pub fn decode(x: [u64; 4]) -> Call {
    let f = x[0] as u32;
    let arg = |i: usize, wide: bool| if wide { x[i] } else { x[i] & 0xffff_ffff };
    match f {
        PSCI_VERSION => Call::Return(VERSION as i64),
        SMCCC_VERSION => Call::Return(0x1_0001), // SMCCC 1.1
        SMCCC_ARCH_FEATURES => Call::Return(NOT_SUPPORTED),
        CPU_SUSPEND_32 | CPU_SUSPEND_64 => Call::Suspend,
        CPU_OFF => Call::CpuOff,
        CPU_ON_32 | CPU_ON_64 => {
            let w = f == CPU_ON_64;
            Call::CpuOn {
                target: arg(1, w),
                entry: arg(2, w),
                context: arg(3, w),
            }
        }
        AFFINITY_INFO_32 | AFFINITY_INFO_64 => {
            let w = f == AFFINITY_INFO_64;
            Call::AffinityInfo {
                target: arg(1, w),
                level: arg(2, w),
            }
        }
        MIGRATE_INFO_TYPE => Call::Return(2), // Trusted OS not present: no migration needed
        SYSTEM_OFF => Call::SystemOff,
        SYSTEM_RESET => Call::SystemReset,
        PSCI_FEATURES => Call::Return(features(x[1] as u32)),
        0x8400_0000..=0x8400_001f | 0xc400_0000..=0xc400_001f => Call::Return(NOT_SUPPORTED),
        _ => Call::NotPsci,
    }
}

fn features(f: u32) -> i64 {
    match f {
        PSCI_VERSION | CPU_OFF | CPU_ON_32 | CPU_ON_64 | AFFINITY_INFO_32 | AFFINITY_INFO_64
        | MIGRATE_INFO_TYPE | SYSTEM_OFF | SYSTEM_RESET | PSCI_FEATURES | SMCCC_VERSION => SUCCESS,
        // Original power-state format, no OS-initiated mode.
        CPU_SUSPEND_32 | CPU_SUSPEND_64 => 0,
        _ => NOT_SUPPORTED,
    }
}

/// AFFINITY_INFO answers.
pub const AFF_ON: i64 = 0;
pub const AFF_OFF: i64 = 1;
pub const AFF_ON_PENDING: i64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_features() {
        assert_eq!(decode([0x8400_0000, 0, 0, 0]), Call::Return(0x10001));
        assert_eq!(
            decode([0x8400_000a, 0xc400_0003, 0, 0]),
            Call::Return(SUCCESS)
        );
        assert_eq!(
            decode([0x8400_000a, 0x8400_0012, 0, 0]),
            Call::Return(NOT_SUPPORTED)
        );
        assert_eq!(decode([0x8000_0000, 0, 0, 0]), Call::Return(0x10001));
    }

    #[test]
    fn cpu_on_widths() {
        let big = 0x1_4000_0000u64;
        assert_eq!(
            decode([0xc400_0003, 3, big, 7]),
            Call::CpuOn {
                target: 3,
                entry: big,
                context: 7
            }
        );
        // The 32-bit call sees only the low halves.
        assert_eq!(
            decode([0x8400_0003, 0xffff_0000_0000_0003, big, 7]),
            Call::CpuOn {
                target: 3,
                entry: 0x4000_0000,
                context: 7
            }
        );
    }

    #[test]
    fn unknown_psci_is_not_supported_and_others_pass_through() {
        assert_eq!(decode([0x8400_0015, 0, 0, 0]), Call::Return(NOT_SUPPORTED));
        assert_eq!(decode([0xc600_0000, 0, 0, 0]), Call::NotPsci);
        assert_eq!(decode([0x8400_0008, 0, 0, 0]), Call::SystemOff);
        assert_eq!(decode([0x8400_0009, 0, 0, 0]), Call::SystemReset);
        assert_eq!(decode([0x8400_0002, 0, 0, 0]), Call::CpuOff);
    }
}
