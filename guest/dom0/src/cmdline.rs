//! dom0's boot options, from `/chosen/bootargs` (documented in docs/dom0.md).

use alloc::string::String;
use alloc::vec::Vec;
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

/// One `dom0.sched.*` setting, sent to Ferrite's `SCHED_CTL` as given: the values are not
/// range-checked here, so that Ferrite's own refusal (`-EINVAL`, `-ENOENT`) is what dom0 reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedSetting {
    /// `dom0.sched.weight=<dom>:<weight>`
    Weight { dom: u64, weight: u64 },
    /// `dom0.sched.cap=<dom>:<cap>`
    Cap { dom: u64, cap: u64 },
    /// `dom0.sched.pin=<dom>:<vcpu>:<mask>`
    Pin { dom: u64, vcpu: u64, mask: u64 },
}

/// `dom0.shell=`: whether the toolstack's shell reads the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    /// Never: what is typed is ignored.
    Off,
    /// Silent until the first key typed (the default: output stays as it was for tests).
    On,
    /// Prints its prompt at once.
    Run,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub loglevel: LevelFilter,
    pub poweroff: bool,
    pub fault: Option<Fault>,
    /// The `dom0.sched.weight|cap|pin` settings, in the order given.
    pub sched: Vec<SchedSetting>,
    /// `dom0.sched.report=<ms>`: sleep that long, then print the scheduler table.
    pub sched_report_ms: Option<u64>,
    /// `dom0.bench.blk=<MiB>[:<KiB per request>[:<requests in flight>]]`: read that much of
    /// the disk directly and print the rate.
    pub bench_blk: Option<BenchBlk>,
    /// `dom0.blk.selftest`: the boot check of the disk also writes (sectors 1-3 and the last,
    /// with a signature) and reads back. Without it the check only reads: the disk may hold a
    /// partition table there, or domUs' disks.
    pub blk_selftest: bool,
    /// `dom0.shell=off|on|run`.
    pub shell: Shell,
    /// `dom0.exec=<cmd>;<cmd>...`: toolstack commands run after `dom0: ready` (quote the value
    /// when a command has spaces: `dom0.exec="create name=a,cmd=hog;list"`).
    pub exec: Option<String>,
    /// `dom0.savearea=<offset>:<size>`: where on dom0's disk the toolstack keeps saved domains
    /// (`save <dom> disk:<name>`), in bytes (K, M, G suffixes; multiples of 512).
    pub savearea: Option<(u64, u64)>,
}

/// Splits the boot arguments at whitespace outside double quotes; the quotes go.
pub fn split_words(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in args.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if any {
                    out.push(core::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Parses the options; each word dom0 does not know is passed to `unknown`.
pub fn parse(args: &str, mut unknown: impl FnMut(String)) -> Options {
    let mut o = Options {
        loglevel: LevelFilter::Info,
        poweroff: false,
        fault: None,
        sched: Vec::new(),
        sched_report_ms: None,
        bench_blk: None,
        blk_selftest: false,
        shell: Shell::On,
        exec: None,
        savearea: None,
    };
    for owned in split_words(args) {
        let word = owned.as_str();
        let mut unknown = |w: &str| unknown(w.into());
        match word.split_once('=') {
            None if word == "poweroff" => o.poweroff = true,
            None if word == "dom0.blk.selftest" => o.blk_selftest = true,
            Some(("loglevel", v)) => match level(v) {
                Some(l) => o.loglevel = l,
                None => unknown(word),
            },
            Some(("dom0.fault", v)) => match fault(v) {
                Some(f) => o.fault = Some(f),
                None => unknown(word),
            },
            Some((key @ ("dom0.sched.weight" | "dom0.sched.cap" | "dom0.sched.pin"), v)) => {
                match sched_setting(key, v) {
                    Some(s) => o.sched.push(s),
                    None => unknown(word),
                }
            }
            Some(("dom0.sched.report", v)) => match number(v) {
                Some(ms) => o.sched_report_ms = Some(ms),
                None => unknown(word),
            },
            Some(("dom0.bench.blk", v)) => match bench_blk(v) {
                Some(b) => o.bench_blk = Some(b),
                None => unknown(word),
            },
            Some(("dom0.shell", v)) => match v {
                "off" => o.shell = Shell::Off,
                "on" => o.shell = Shell::On,
                "run" => o.shell = Shell::Run,
                _ => unknown(word),
            },
            Some(("dom0.exec", v)) => o.exec = Some(v.into()),
            Some(("dom0.savearea", v)) => {
                match v.split_once(':').map(|(a, b)| (size(a), size(b))) {
                    Some((Some(off), Some(len)))
                        if off % 512 == 0 && len % 512 == 0 && len >= 1 << 20 =>
                    {
                        o.savearea = Some((off, len))
                    }
                    _ => unknown(word),
                }
            }
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

/// A number: decimal, or hexadecimal after `0x`.
/// A byte count with an optional K, M or G suffix.
fn size(v: &str) -> Option<u64> {
    let (n, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    number(n)?.checked_mul(1 << shift)
}

fn number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// `dom0.bench.blk`'s shape: as many MiB, in requests of `kib` KiB (whole pages, at most an
/// indirect blkif request's 256 KiB), `depth` of them in flight (at most 32, a ring's worth).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchBlk {
    pub mib: u64,
    pub kib: u64,
    pub depth: u64,
}

/// `<MiB>[:<KiB>[:<depth>]]`; 32 KiB and 32 in flight unless given.
fn bench_blk(v: &str) -> Option<BenchBlk> {
    let mut f = v.split(':');
    let mib = number(f.next()?)?;
    let kib = f.next().map_or(Some(32), number)?;
    let depth = f.next().map_or(Some(32), number)?;
    let max_kib = (ferrite_abi::blkif::MAX_INDIRECT_SEGMENTS * 4) as u64;
    let good = f.next().is_none()
        && mib > 0
        && kib > 0
        && kib % 4 == 0
        && kib <= max_kib
        && (1..=32).contains(&depth);
    good.then_some(BenchBlk { mib, kib, depth })
}

/// `<dom>:<weight>`, `<dom>:<cap>` or `<dom>:<vcpu>:<mask>`, each number decimal or `0x` hex.
fn sched_setting(key: &str, v: &str) -> Option<SchedSetting> {
    let mut fields = v.split(':').map(number);
    let mut next = || fields.next().flatten();
    let s = match key {
        "dom0.sched.weight" => SchedSetting::Weight {
            dom: next()?,
            weight: next()?,
        },
        "dom0.sched.cap" => SchedSetting::Cap {
            dom: next()?,
            cap: next()?,
        },
        "dom0.sched.pin" => SchedSetting::Pin {
            dom: next()?,
            vcpu: next()?,
            mask: next()?,
        },
        _ => return None,
    };
    // Nothing may follow the last field (a missing field or a bad number is already None).
    fields.next().is_none().then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_area() {
        let (o, unknown) = parse_all("dom0.savearea=16M:32M");
        assert_eq!(o.savearea, Some((16 << 20, 32 << 20)));
        assert!(unknown.is_empty());
        for bad in [
            "dom0.savearea=16M",
            "dom0.savearea=100:32M",
            "dom0.savearea=0:4K",
        ] {
            let (o, unknown) = parse_all(bad);
            assert_eq!(o.savearea, None, "{bad}");
            assert_eq!(unknown, [bad]);
        }
    }

    fn parse_all(args: &str) -> (Options, Vec<String>) {
        let mut unknown = Vec::new();
        let o = parse(args, |w| unknown.push(w));
        (o, unknown)
    }

    #[test]
    fn defaults() {
        let (o, unknown) = parse_all("");
        assert_eq!(o.loglevel, LevelFilter::Info);
        assert!(!o.poweroff);
        assert_eq!(o.fault, None);
        assert!(o.sched.is_empty());
        assert_eq!(o.sched_report_ms, None);
        assert!(!o.blk_selftest, "the disk is written only when asked");
        assert!(unknown.is_empty());
    }

    #[test]
    fn existing_options() {
        let (o, unknown) =
            parse_all("loglevel=debug poweroff dom0.fault=unmapped@0x9000000 dom0.blk.selftest");
        assert_eq!(o.loglevel, LevelFilter::Debug);
        assert!(o.poweroff);
        assert!(o.blk_selftest);
        assert_eq!(o.fault, Some(Fault::Unmapped(0x900_0000)));
        assert!(unknown.is_empty());
        let (o, _) = parse_all("dom0.fault=unmapped");
        assert_eq!(o.fault, Some(Fault::Unmapped(DEFAULT_FAULT_ADDRESS)));
        let (_, unknown) = parse_all("loglevel=loud dom0.fault=mapped quiet");
        assert_eq!(unknown, ["loglevel=loud", "dom0.fault=mapped", "quiet"]);
    }

    #[test]
    fn sched_settings_in_order() {
        let (o, unknown) = parse_all(
            "dom0.sched.weight=1:512 dom0.sched.pin=2:0:0x2 dom0.sched.cap=1:50 \
             dom0.sched.pin=0:1:3 dom0.sched.weight=0x1:0x100",
        );
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(
            o.sched,
            [
                SchedSetting::Weight {
                    dom: 1,
                    weight: 512
                },
                SchedSetting::Pin {
                    dom: 2,
                    vcpu: 0,
                    mask: 2
                },
                SchedSetting::Cap { dom: 1, cap: 50 },
                SchedSetting::Pin {
                    dom: 0,
                    vcpu: 1,
                    mask: 3
                },
                SchedSetting::Weight {
                    dom: 1,
                    weight: 256
                },
            ]
        );
    }

    #[test]
    fn sched_values_are_not_range_checked() {
        // Ferrite refuses these (EINVAL, ENOENT); dom0 passes them on to show it.
        let (o, unknown) =
            parse_all("dom0.sched.weight=0:0 dom0.sched.cap=99:100000 dom0.sched.pin=1:7:0");
        assert!(unknown.is_empty());
        assert_eq!(
            o.sched,
            [
                SchedSetting::Weight { dom: 0, weight: 0 },
                SchedSetting::Cap {
                    dom: 99,
                    cap: 100_000
                },
                SchedSetting::Pin {
                    dom: 1,
                    vcpu: 7,
                    mask: 0
                },
            ]
        );
    }

    #[test]
    fn malformed_sched_settings_are_unknown() {
        let bad = [
            "dom0.sched.weight=1",
            "dom0.sched.weight=1:",
            "dom0.sched.weight=:256",
            "dom0.sched.weight=1:256:3",
            "dom0.sched.weight=one:256",
            "dom0.sched.weight=-1:256",
            "dom0.sched.cap=1",
            "dom0.sched.cap=1:0xg",
            "dom0.sched.pin=1:0",
            "dom0.sched.pin=1:0:0x3:4",
            "dom0.sched.pin=1:0:0b11",
            "dom0.sched.weight",
            "dom0.sched.report",
            "dom0.sched.report=",
            "dom0.sched.report=1s",
            "dom0.sched.report=-5",
            "dom0.sched.nice=1:2",
        ];
        for word in bad {
            let (o, unknown) = parse_all(word);
            assert_eq!(unknown, [word], "{word}");
            assert!(o.sched.is_empty(), "{word}");
            assert_eq!(o.sched_report_ms, None, "{word}");
        }
    }

    #[test]
    fn report_with_poweroff() {
        let (o, unknown) = parse_all("dom0.sched.report=200 poweroff");
        assert!(unknown.is_empty());
        assert_eq!(o.sched_report_ms, Some(200));
        assert!(o.poweroff);
        // The last one counts; hex works too.
        let (o, _) = parse_all("dom0.sched.report=200 dom0.sched.report=0x10");
        assert_eq!(o.sched_report_ms, Some(16));
    }

    #[test]
    fn shell_and_exec() {
        let (o, unknown) = parse_all("");
        assert_eq!((o.shell, o.exec), (Shell::On, None));
        assert!(unknown.is_empty());
        let (o, unknown) = parse_all(
            "poweroff dom0.shell=run dom0.exec=\"create name=a,cmd=hog 5; list\" loglevel=warn",
        );
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(o.shell, Shell::Run);
        assert_eq!(o.exec.as_deref(), Some("create name=a,cmd=hog 5; list"));
        assert!(o.poweroff);
        assert_eq!(o.loglevel, LevelFilter::Warn);
        let (o, _) = parse_all("dom0.exec=list;info dom0.shell=off");
        assert_eq!(o.exec.as_deref(), Some("list;info"));
        assert_eq!(o.shell, Shell::Off);
        let (_, unknown) = parse_all("dom0.shell=maybe");
        assert_eq!(unknown, ["dom0.shell=maybe"]);
        assert_eq!(split_words(" a  \"b c\"d  "), ["a", "b cd"]);
    }

    #[test]
    fn bench_blk_shapes() {
        let b = |mib, kib, depth| Some(BenchBlk { mib, kib, depth });
        assert_eq!(bench_blk("224"), b(224, 32, 32));
        assert_eq!(bench_blk("224:256"), b(224, 256, 32));
        assert_eq!(bench_blk("224:256:8"), b(224, 256, 8));
        for bad in [
            "0",
            "",
            "224:0",
            "224:6",
            "224:260",
            "224:32:0",
            "224:32:33",
            "1:4:1:1",
            "x",
        ] {
            assert_eq!(bench_blk(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("42"), Some(42));
        assert_eq!(number("0x2a"), Some(42));
        assert_eq!(number("0X2A"), Some(42));
        assert_eq!(number("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(number("18446744073709551616"), None);
        assert_eq!(number("0x"), None);
        assert_eq!(number(""), None);
    }
}
