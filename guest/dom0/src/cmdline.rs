//! dom0's boot options, from `/chosen/bootargs` (documented in docs/dom0.md).

use log::LevelFilter;

/// QEMU virt's platform-bus window: nothing is there unless dynamic sysbus devices are added,
/// and Ferrite does not pass it to dom0. Reading it is the default `dom0.fault=unmapped` probe.
pub const DEFAULT_FAULT_ADDRESS: u64 = 0x0c00_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Read this address (mapped as a device page in dom0's own stage 1, so the fault comes from
    /// whatever lies below: an external abort on bare QEMU, a stage-2 fault under Ferrite).
    Unmapped(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub loglevel: LevelFilter,
    pub poweroff: bool,
    pub fault: Option<Fault>,
}

/// Parses the options; each word dom0 does not know is passed to `unknown`.
pub fn parse<'a>(args: &'a str, mut unknown: impl FnMut(&'a str)) -> Options {
    let mut o = Options {
        loglevel: LevelFilter::Info,
        poweroff: false,
        fault: None,
    };
    for word in args.split_ascii_whitespace() {
        match word.split_once('=') {
            None if word == "poweroff" => o.poweroff = true,
            Some(("loglevel", v)) => match level(v) {
                Some(l) => o.loglevel = l,
                None => unknown(word),
            },
            Some(("dom0.fault", v)) => match fault(v) {
                Some(f) => o.fault = Some(f),
                None => unknown(word),
            },
            _ => unknown(word),
        }
    }
    o
}

fn level(v: &str) -> Option<LevelFilter> {
    Some(match v {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

/// `unmapped` or `unmapped@0xADDRESS` (any other board's hole).
fn fault(v: &str) -> Option<Fault> {
    match v.split_once('@') {
        None if v == "unmapped" => Some(Fault::Unmapped(DEFAULT_FAULT_ADDRESS)),
        Some(("unmapped", a)) => {
            let a = a.strip_prefix("0x").unwrap_or(a);
            u64::from_str_radix(a, 16).ok().map(Fault::Unmapped)
        }
        _ => None,
    }
}
