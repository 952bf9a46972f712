//! The boot command line (`/chosen/bootargs`): Ferrite's own options.
//!
//! Options are space-separated `key` or `key=value` words. Unknown words are kept so the boot
//! log can name them: a typo should be visible, not silently ignored.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use log::LevelFilter;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `loglevel=off|error|warn|info|debug|trace` (default info).
    pub loglevel: LevelFilter,
    /// `poweroff`: switch the machine off once boot is complete (tests, benchmarks).
    pub poweroff: bool,
    /// `reboot`: reset the machine once boot is complete (hardware-in-loop boot loops).
    pub reboot: bool,
    /// `semihosting`: Ferrite may exit QEMU through Arm semihosting, so a panic ends the run with
    /// a failure status and a power-off works on boards without PSCI. Never set on hardware.
    pub semihosting: bool,
    /// `selftest=panic|fault`: fail on purpose after boot, to prove the failure paths (the
    /// panic report, the exception dump, the exit status) on a new board or rig.
    pub selftest: Option<SelfTest>,
    /// Words Ferrite did not recognise, and the reason, for a warning at boot.
    pub rejected: Vec<(String, &'static str)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// A Rust panic.
    Panic,
    /// A data abort in Ferrite (a read of an unmapped address).
    Fault,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            loglevel: LevelFilter::Info,
            poweroff: false,
            reboot: false,
            semihosting: false,
            selftest: None,
            rejected: Vec::new(),
        }
    }
}

fn parse_level(v: &str) -> Option<LevelFilter> {
    Some(match v {
        "off" | "0" => LevelFilter::Off,
        "error" | "1" => LevelFilter::Error,
        "warn" | "2" => LevelFilter::Warn,
        "info" | "3" => LevelFilter::Info,
        "debug" | "4" => LevelFilter::Debug,
        "trace" | "5" => LevelFilter::Trace,
        _ => return None,
    })
}

pub fn parse(bootargs: &str) -> Options {
    let mut o = Options::default();
    for word in bootargs.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        match (key, value) {
            ("loglevel", Some(v)) => match parse_level(v) {
                Some(l) => o.loglevel = l,
                None => o.rejected.push((word.to_string(), "unknown log level")),
            },
            ("poweroff", None) => o.poweroff = true,
            ("reboot", None) => o.reboot = true,
            ("semihosting", None) => o.semihosting = true,
            ("selftest", Some("panic")) => o.selftest = Some(SelfTest::Panic),
            ("selftest", Some("fault")) => o.selftest = Some(SelfTest::Fault),
            ("selftest", _) => o
                .rejected
                .push((word.to_string(), "selftest takes panic or fault")),
            _ => o.rejected.push((word.to_string(), "unknown option")),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        assert_eq!(parse(""), Options::default());
        assert_eq!(parse("   "), Options::default());
    }

    #[test]
    fn known_options() {
        assert!(parse("reboot").reboot);
        assert_eq!(parse("selftest=fault").selftest, Some(SelfTest::Fault));
        assert_eq!(parse("selftest=panic").selftest, Some(SelfTest::Panic));
        assert_eq!(parse("selftest=oops").rejected.len(), 1);
        let o = parse("loglevel=debug  poweroff semihosting");
        assert_eq!(o.loglevel, LevelFilter::Debug);
        assert!(o.poweroff && o.semihosting);
        assert!(o.rejected.is_empty());
        assert_eq!(parse("loglevel=1").loglevel, LevelFilter::Error);
    }

    #[test]
    fn bad_words_are_reported_not_fatal() {
        let o = parse("loglevel=loud poweroff=yes console=ttyAMA0");
        assert_eq!(o.loglevel, LevelFilter::Info);
        assert!(!o.poweroff);
        let words: Vec<_> = o.rejected.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(words, ["loglevel=loud", "poweroff=yes", "console=ttyAMA0"]);
        assert_eq!(o.rejected[0].1, "unknown log level");
    }
}
