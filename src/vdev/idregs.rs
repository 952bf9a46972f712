//! What guests see of the CPU's ID registers (trapped with HCR_EL2.TID3): the real values with
//! the features Ferrite does not virtualise taken out, so a guest never enables something its
//! vCPU cannot keep (SVE/SME state is not switched, there is no virtual MTE, AMU, MPAM, SPE,
//! trace or nested virtualisation).

/// `(CRm, op2)` of an ID register in the op0=3, op1=0, CRn=0 space.
pub type IdReg = (u8, u8);

pub const ID_AA64PFR0: IdReg = (4, 0);
pub const ID_AA64PFR1: IdReg = (4, 1);
pub const ID_AA64ZFR0: IdReg = (4, 4);
pub const ID_AA64SMFR0: IdReg = (4, 5);
pub const ID_AA64DFR0: IdReg = (5, 0);
pub const ID_AA64MMFR1: IdReg = (7, 1);
pub const ID_AA64MMFR2: IdReg = (7, 2);

fn clear(v: u64, fields: &[u32]) -> u64 {
    fields.iter().fold(v, |v, &lsb| v & !(0xf << lsb))
}

/// The value a guest reads. `gic_v3_sysregs`: whether the guest's GIC is a v3 (its CPU
/// interface is then the system-register one).
pub fn sanitise(reg: IdReg, real: u64, gic_v3_sysregs: bool) -> u64 {
    match reg {
        ID_AA64PFR0 => {
            // RAS 28, SVE 32, SEL2 36, MPAM 40, AMU 44, RME 52.
            let v = clear(real, &[28, 32, 36, 40, 44, 52]);
            let gic = if gic_v3_sysregs { 1 } else { 0 };
            (v & !(0xf << 24)) | (gic << 24)
        }
        // MTE 8, SME 24, NMI 36, MPAM_frac 16, RAS_frac 12.
        ID_AA64PFR1 => clear(real, &[8, 12, 16, 24, 36]),
        ID_AA64ZFR0 | ID_AA64SMFR0 => 0,
        // TraceVer 4, PMSVer 32, TraceFilt 40, TraceBuffer 44, BRBE 52.
        ID_AA64DFR0 => clear(real, &[4, 32, 40, 44, 52]),
        // VH 8 (no nested virtualisation).
        ID_AA64MMFR1 => clear(real, &[8]),
        // NV 24.
        ID_AA64MMFR2 => clear(real, &[24]),
        _ => real,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_what_is_not_virtualised() {
        let all = u64::MAX;
        let pfr0 = sanitise(ID_AA64PFR0, all, true);
        assert_eq!((pfr0 >> 32) & 0xf, 0, "SVE");
        assert_eq!((pfr0 >> 44) & 0xf, 0, "AMU");
        assert_eq!((pfr0 >> 24) & 0xf, 1, "GICv3 system registers");
        assert_eq!((pfr0 >> 24) & 0xf, 1);
        assert_eq!((sanitise(ID_AA64PFR0, all, false) >> 24) & 0xf, 0);
        assert_eq!(pfr0 & 0xffff, 0xffff, "EL0-EL3 and FP/AdvSIMD fields kept");
        assert_eq!((sanitise(ID_AA64PFR1, all, true) >> 8) & 0xf, 0, "MTE");
        assert_eq!(sanitise(ID_AA64ZFR0, all, true), 0);
        assert_eq!((sanitise(ID_AA64DFR0, all, true) >> 32) & 0xf, 0, "SPE");
        assert_eq!(
            (sanitise(ID_AA64DFR0, all, true) >> 8) & 0xf,
            0xf,
            "PMUVer kept"
        );
        assert_eq!((sanitise(ID_AA64MMFR1, all, true) >> 8) & 0xf, 0, "VHE");
        assert_eq!(sanitise((6, 0), 0x1234, true), 0x1234, "ISAR0 untouched");
    }
}
