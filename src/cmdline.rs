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
    /// `dom0_mem=<size>[K|M|G]`: dom0's RAM (default: see docs/dom0.md).
    pub dom0_mem: Option<u64>,
    /// `dom0_vcpus=<n>`: dom0's vCPUs (default and maximum: one per CPU).
    pub dom0_vcpus: Option<usize>,
    /// `bench=sched`: before starting domains, measure the scheduler's decision cost (EL2
    /// instructions, exact under QEMU's `-icount`) with 1, 16 and 256 runnable vCPUs.
    pub bench_sched: bool,
    /// `domu=<settings>` (repeatable): a PV domU to start at boot (see `domain::config`).
    pub domus: Vec<crate::domain::config::DomuSpec>,
    /// `domu=none`: start none of the domUs packed into the image (docs/domains.md).
    pub domus_none: bool,
    /// `sched_credit_tslice_ms=<n>`: the Credit scheduler's time slice (default 30).
    pub tslice_ms: Option<u64>,
    /// `sched_ratelimit_us=<n>`: the Credit scheduler's rate limit (default 1000; 0 = off).
    pub ratelimit_us: Option<u64>,
    /// `vwfi=native|trap`: `native` lets a vCPU's WFI run without trapping while no vCPU waits
    /// for a pCPU anywhere (docs/scheduler.md); `trap` (the default) always traps it.
    pub vwfi_native: bool,
    /// Everything after a lone `--`: dom0's own command line, replacing the built-in one.
    pub dom0_args: Option<String>,
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
            dom0_mem: None,
            dom0_vcpus: None,
            bench_sched: false,
            domus: Vec::new(),
            domus_none: false,
            tslice_ms: None,
            ratelimit_us: None,
            vwfi_native: false,
            dom0_args: None,
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

/// `512M`, `1G`, `65536K`, or bytes.
pub fn parse_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&v[..v.len() - 1], 1 << 20),
        b'G' | b'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|&n| n > 0)
}

pub fn parse(bootargs: &str) -> Options {
    let mut o = Options::default();
    let (ours, theirs) = match bootargs.split_once(" -- ") {
        Some((a, b)) => (a, Some(b.trim())),
        None => match bootargs
            .strip_suffix(" --")
            .or((bootargs.trim() == "--").then_some(""))
        {
            Some(a) => (a, Some("")),
            None => (bootargs, None),
        },
    };
    o.dom0_args = theirs.map(String::from);
    for word in ours.split_ascii_whitespace() {
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
            ("dom0_mem", Some(v)) => match parse_size(v) {
                Some(n) => o.dom0_mem = Some(n),
                None => o
                    .rejected
                    .push((word.to_string(), "dom0_mem takes a size like 512M or 1G")),
            },
            ("dom0_vcpus", Some(v)) => match v.parse::<usize>() {
                Ok(n) if n > 0 => o.dom0_vcpus = Some(n),
                _ => o
                    .rejected
                    .push((word.to_string(), "dom0_vcpus takes a number from 1")),
            },
            ("bench", Some("sched")) => o.bench_sched = true,
            ("domu", Some("none")) => o.domus_none = true,
            ("domu", Some(v)) => match crate::domain::config::DomuSpec::parse(v) {
                Ok(d) => o.domus.push(d),
                Err(e) => o
                    .rejected
                    .push((alloc::format!("{word} ({e})"), "bad domu settings")),
            },
            ("sched_credit_tslice_ms", Some(v)) => match v.parse::<u64>() {
                Ok(n) if (1..=1000).contains(&n) => o.tslice_ms = Some(n),
                _ => o
                    .rejected
                    .push((word.to_string(), "the time slice is 1 to 1000 ms")),
            },
            ("sched_ratelimit_us", Some(v)) => match v.parse::<u64>() {
                Ok(n) if n <= 1_000_000 => o.ratelimit_us = Some(n),
                _ => o
                    .rejected
                    .push((word.to_string(), "the rate limit is 0 to 1000000 us")),
            },
            ("vwfi", Some("native")) => o.vwfi_native = true,
            ("vwfi", Some("trap")) => o.vwfi_native = false,
            ("vwfi", _) => o
                .rejected
                .push((word.to_string(), "vwfi takes native or trap")),
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
    fn dom0_options_and_its_command_line() {
        let o = parse("loglevel=debug dom0_mem=512M dom0_vcpus=2 -- console=ttyAMA0 poweroff");
        assert_eq!(o.dom0_mem, Some(512 << 20));
        assert_eq!(o.dom0_vcpus, Some(2));
        assert_eq!(o.dom0_args.as_deref(), Some("console=ttyAMA0 poweroff"));
        assert!(!o.poweroff, "words after -- are dom0's");
        assert!(o.rejected.is_empty());
        assert_eq!(parse("poweroff --").dom0_args.as_deref(), Some(""));
        assert_eq!(parse("--").dom0_args.as_deref(), Some(""));
        assert_eq!(parse("poweroff").dom0_args, None);
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("65536K"), Some(64 << 20));
        assert_eq!(parse_size("0M"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse("dom0_mem=lots dom0_vcpus=0").rejected.len(), 2);
    }

    #[test]
    fn domus_and_scheduler_options() {
        let o = parse(
            "domu=weight=512,cmd=hog domu=cap=25 sched_credit_tslice_ms=10 sched_ratelimit_us=0",
        );
        assert_eq!(o.domus.len(), 2);
        assert_eq!(o.domus[0].weight, 512);
        assert_eq!(o.domus[0].cmdline, "hog");
        assert_eq!(o.domus[1].cap, 25);
        assert_eq!((o.tslice_ms, o.ratelimit_us), (Some(10), Some(0)));
        assert!(!o.vwfi_native, "WFI traps unless asked");
        assert!(o.rejected.is_empty());
        assert!(parse("vwfi=native").vwfi_native);
        assert!(!parse("vwfi=native vwfi=trap").vwfi_native);
        let o = parse("vwfi=sometimes");
        assert!(!o.vwfi_native);
        assert_eq!(o.rejected[0].1, "vwfi takes native or trap");
        let o = parse("domu=vcpus=99 sched_credit_tslice_ms=0 sched_ratelimit_us=x");
        assert_eq!(o.rejected.len(), 3);
        assert!(o.domus.is_empty());
        let o = parse("domu=none");
        assert!(o.domus_none && o.domus.is_empty() && o.rejected.is_empty());
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
