//! Decoding ESR_EL2 into words a person can act on.

use core::fmt;

pub struct Syndrome(pub u64);

fn class_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE",
        0x07 => "SVE/SIMD/FP access",
        0x0e => "illegal execution state",
        0x11 | 0x15 => "SVC",
        0x12 | 0x16 => "HVC",
        0x13 | 0x17 => "SMC",
        0x18 => "MSR/MRS/system instruction",
        0x19 => "SVE access",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort at the same EL",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort at the same EL",
        0x26 => "SP alignment fault",
        0x2c => "floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "BRK instruction",
        _ => "reserved or unhandled class",
    }
}

fn fault_status(fsc: u64) -> &'static str {
    match fsc {
        0b000000..=0b000011 => "address size fault",
        0b000100..=0b000111 => "translation fault",
        0b001001..=0b001011 => "access flag fault",
        0b001101..=0b001111 => "permission fault",
        0b010000 => "synchronous external abort",
        0b100001 => "alignment fault",
        0b110000 => "TLB conflict abort",
        _ => "other fault",
    }
}

impl fmt::Display for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ec = (self.0 >> 26) & 0x3f;
        let iss = self.0 & 0x1ff_ffff;
        write!(f, "EC {ec:#04x} ({})", class_name(ec))?;
        if matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) {
            let fsc = iss & 0x3f;
            write!(f, ", {} at level {}", fault_status(fsc), fsc & 3)?;
            if ec >= 0x24 {
                write!(
                    f,
                    ", {}",
                    if iss & (1 << 6) != 0 { "write" } else { "read" }
                )?;
                if iss & (1 << 24) != 0 {
                    write!(
                        f,
                        ", {} bytes via x{}",
                        1 << ((iss >> 22) & 3),
                        (iss >> 16) & 31
                    )?;
                }
            }
        } else {
            write!(f, ", ISS {iss:#x}")?;
        }
        Ok(())
    }
}
