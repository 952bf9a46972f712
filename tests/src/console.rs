//! Parsing Ferrite's console: log lines, the boot-status line, the memory map, panics.
//!
//! The format (see the system tests' crate docs):
//!
//! ```text
//! [    0.012345] cpu0 INFO  memory: 0x40000000-0x7fffffff (1024 MiB)
//! [    0.012400] cpu0 INFO  reserved: 0x40080000-0x4017ffff ferrite image
//! [    0.012500] cpu0 INFO  frames: 1020 MiB free of 1024 MiB
//! [    0.100000] cpu2 INFO  cpu2 online (mpidr 0x2)
//! ferrite: ready: 4 cpus, 1020 MiB free
//! ferrite: PANIC on cpu1 at src/mm/frames.rs:42: out of frames
//! ```
//!
//! Message parsers accept the message either inside a log line or as a bare line, so they do not
//! depend on which of the two the firmware uses.

use std::collections::BTreeSet;
use std::fmt;

/// A log line: `[    0.012345] cpu0 INFO  message`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Seconds since boot (generic timer).
    pub time: f64,
    pub cpu: u32,
    pub level: Level,
    pub message: String,
}

/// A log level, as printed (padded to 5 characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "ERROR" => Level::Error,
            "WARN" => Level::Warn,
            "INFO" => Level::Info,
            "DEBUG" => Level::Debug,
            "TRACE" => Level::Trace,
            _ => return None,
        })
    }
}

/// Parses `[    0.012345] cpu0 INFO  message`; `None` for any other line.
pub fn parse_log_line(line: &str) -> Option<LogLine> {
    let rest = line.trim_end_matches(['\r', '\n']).strip_prefix('[')?;
    let (time, rest) = rest.split_once(']')?;
    let time: f64 = time.trim().parse().ok()?;
    let rest = rest.strip_prefix(' ')?.trim_start();
    let (cpu, rest) = rest.split_once(' ')?;
    let cpu: u32 = cpu.strip_prefix("cpu")?.parse().ok()?;
    let rest = rest.trim_start();
    let (level, message) = match rest.split_once(' ') {
        Some((level, message)) => (level, message.trim_start()),
        None => (rest, ""),
    };
    let level = Level::parse(level)?;
    Some(LogLine {
        time,
        cpu,
        level,
        message: message.to_string(),
    })
}

/// The message of a line: the log message for a log line, else the whole line.
pub fn message_of(line: &str) -> String {
    match parse_log_line(line) {
        Some(log) => log.message,
        None => line.trim_end_matches(['\r', '\n']).to_string(),
    }
}

/// `ferrite: ready: {n} cpus, {m} MiB free`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    pub cpus: u32,
    pub free_mib: u64,
}

pub const READY: &str = "ferrite: ready:";
pub const PANIC: &str = "ferrite: PANIC";
pub const POWER_OFF: &str = "ferrite: power off";
pub const UNEXPECTED_EXCEPTION: &str = "ferrite: unexpected exception";

/// Lines after which Ferrite does not go on: a panic, or a fatal error before the console's
/// logger is up (`ferrite: fatal: ...`, `ferrite: halted`).
pub const TERMINAL: [&str; 3] = [PANIC, "ferrite: fatal", "ferrite: halted"];

/// Whether `line` says Ferrite stopped (see [`TERMINAL`]).
pub fn is_terminal(line: &str) -> bool {
    TERMINAL.iter().any(|t| line.contains(t))
}

/// Parses the boot-status line (anywhere in `line`).
pub fn parse_ready(line: &str) -> Option<Ready> {
    let rest = &line[line.find(READY)? + READY.len()..];
    let (cpus, rest) = rest.trim_start().split_once(' ')?;
    let rest = rest.strip_prefix("cpus,")?.trim_start();
    let (free, rest) = rest.split_once(' ')?;
    if !rest.trim_end().starts_with("MiB free") {
        return None;
    }
    Some(Ready {
        cpus: cpus.parse().ok()?,
        free_mib: free.parse().ok()?,
    })
}

/// An inclusive physical address range, as printed: `0x40000000-0x7fffffff`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end_inclusive: u64) -> Range {
        Range {
            start,
            end: end_inclusive,
        }
    }

    /// The range `[base, base + size)`.
    pub const fn from_base_size(base: u64, size: u64) -> Range {
        Range {
            start: base,
            end: base + size - 1,
        }
    }

    pub fn size(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn contains(&self, other: &Range) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// Parses `0xSTART-0xEND` (inclusive end).
    pub fn parse(s: &str) -> Option<Range> {
        let (a, b) = s.split_once('-')?;
        let range = Range {
            start: parse_hex(a)?,
            end: parse_hex(b)?,
        };
        (range.start <= range.end).then_some(range)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

impl fmt::Debug for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Sorts `ranges` and merges the overlapping and adjacent ones: the addresses they cover.
pub fn coalesce(ranges: &[Range]) -> Vec<Range> {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let mut out: Vec<Range> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u64::from_str_radix(&digits.replace('_', ""), 16).ok()
}

/// `memory: 0x40000000-0x7fffffff (1024 MiB)`: one RAM bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBank {
    pub range: Range,
    /// The size as printed.
    pub mib: u64,
}

pub fn parse_memory(line: &str) -> Option<MemoryBank> {
    let msg = message_of(line);
    let rest = msg.strip_prefix("memory:")?.trim_start();
    let (range, rest) = rest.split_once(' ')?;
    let mib = rest.trim().strip_prefix('(')?.strip_suffix("MiB)")?.trim();
    Some(MemoryBank {
        range: Range::parse(range)?,
        mib: mib.parse().ok()?,
    })
}

/// `reserved: <region> [(<size>)] <what>`, e.g.
/// `reserved: 0x48000000-0x480fffff (1 MiB) device tree`. `range` is `Some` when the region is
/// `0xA-0xB`; `size` is the parenthesised size, if printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub region: String,
    pub range: Option<Range>,
    pub size: Option<String>,
    pub what: String,
}

pub fn parse_reserved(line: &str) -> Option<Reserved> {
    let msg = message_of(line);
    let rest = msg.strip_prefix("reserved:")?.trim();
    let (region, what) = match rest.split_once(' ') {
        Some((region, what)) => (region, what.trim()),
        None => (rest, ""),
    };
    if region.is_empty() {
        return None;
    }
    let (size, what) = match what.strip_prefix('(').and_then(|w| w.split_once(')')) {
        Some((size, what)) => (Some(size.to_string()), what.trim()),
        None => (None, what),
    };
    Some(Reserved {
        region: region.to_string(),
        range: Range::parse(region),
        size,
        what: what.to_string(),
    })
}

/// `frames: <N> MiB free of <M> MiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frames {
    pub free_mib: u64,
    pub total_mib: u64,
}

pub fn parse_frames(line: &str) -> Option<Frames> {
    let msg = message_of(line);
    let rest = msg.strip_prefix("frames:")?.trim();
    let (free, rest) = rest.split_once(" MiB free of ")?;
    let total = rest.trim().strip_suffix("MiB")?.trim();
    Some(Frames {
        free_mib: free.trim().parse().ok()?,
        total_mib: total.parse().ok()?,
    })
}

/// `ferrite: PANIC on cpu{N} at {file}:{line}: {message}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panic {
    pub cpu: u32,
    pub file: String,
    pub line: u32,
    pub message: String,
}

pub fn parse_panic(line: &str) -> Option<Panic> {
    let rest = &line[line.find(PANIC)? + PANIC.len()..];
    let rest = rest
        .trim_end_matches(['\r', '\n'])
        .strip_prefix(" on cpu")?;
    let (cpu, rest) = rest.split_once(" at ")?;
    // `{file}:{line}: {message}`; the file name itself has no ": ".
    let (location, message) = rest.split_once(": ").unwrap_or((rest, ""));
    let (file, line_no) = location.rsplit_once(':')?;
    Some(Panic {
        cpu: cpu.parse().ok()?,
        file: file.to_string(),
        line: line_no.parse().ok()?,
        message: message.to_string(),
    })
}

/// `cpu{N} online` in a message: the CPU number.
pub fn parse_cpu_online(line: &str) -> Option<u32> {
    let msg = message_of(line);
    let mut words = msg.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if let Some(n) = word.strip_prefix("cpu").and_then(|n| n.parse().ok())
            && words.peek() == Some(&"online")
        {
            return Some(n);
        }
    }
    None
}

/// `gic: v3 ...`: the GIC version.
pub fn parse_gic_version(line: &str) -> Option<u32> {
    let msg = message_of(line);
    let rest = msg.strip_prefix("gic:")?.trim_start();
    let version = rest.strip_prefix('v')?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The `latency` test domU's report, `domU<N>: latency: n=<n> max=<us>us avg=<us>us`: its
/// worst wake-up lateness in µs.
pub fn parse_latency_max_us(line: &str) -> Option<u64> {
    let rest = line.split("latency: n=").nth(1)?.split(" max=").nth(1)?;
    rest.split("us").next()?.trim().parse().ok()
}

/// A whole console transcript, with the parsers above applied over all its lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    pub fn new(lines: Vec<String>) -> Transcript {
        Transcript { lines }
    }

    /// Splits text into lines (`\n` or `\r\n`).
    pub fn from_text(text: &str) -> Transcript {
        Transcript {
            lines: text
                .lines()
                .map(|l| l.trim_end_matches('\r').to_string())
                .collect(),
        }
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The whole transcript, one `\n` after each line.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines.iter().any(|l| l.contains(needle))
    }

    /// The first line containing `needle`.
    pub fn find(&self, needle: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.contains(needle))
            .map(String::as_str)
    }

    pub fn log_lines(&self) -> Vec<LogLine> {
        self.lines
            .iter()
            .filter_map(|l| parse_log_line(l))
            .collect()
    }

    /// The first boot-status line.
    pub fn ready(&self) -> Option<Ready> {
        self.lines.iter().find_map(|l| parse_ready(l))
    }

    pub fn memory_banks(&self) -> Vec<MemoryBank> {
        self.lines.iter().filter_map(|l| parse_memory(l)).collect()
    }

    pub fn reserved(&self) -> Vec<Reserved> {
        self.lines
            .iter()
            .filter_map(|l| parse_reserved(l))
            .collect()
    }

    pub fn frames(&self) -> Option<Frames> {
        self.lines.iter().find_map(|l| parse_frames(l))
    }

    /// The first panic line, parsed; see also [`Transcript::has_panic`].
    pub fn panic(&self) -> Option<Panic> {
        self.lines.iter().find_map(|l| parse_panic(l))
    }

    /// Whether any line contains `ferrite: PANIC` (parsable or not).
    pub fn has_panic(&self) -> bool {
        self.contains(PANIC)
    }

    /// The CPUs that reported `cpuN online`.
    pub fn online_cpus(&self) -> BTreeSet<u32> {
        self.lines
            .iter()
            .filter_map(|l| parse_cpu_online(l))
            .collect()
    }

    pub fn gic_version(&self) -> Option<u32> {
        self.lines.iter().find_map(|l| parse_gic_version(l))
    }

    /// Log messages (of log lines) starting with `prefix`, e.g. `"timer:"`.
    pub fn messages_starting(&self, prefix: &str) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .map(|l| l.message)
            .filter(|m| m.starts_with(prefix))
            .collect()
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_report() {
        assert_eq!(
            parse_latency_max_us("domU1: latency: n=1000 max=3806us avg=21us"),
            Some(3806)
        );
        assert_eq!(
            parse_latency_max_us("domU1: latency: FAIL: no upcall"),
            None
        );
    }

    #[test]
    fn log_line() {
        let l = parse_log_line("[    0.012345] cpu0 INFO  message here").unwrap();
        assert_eq!(l.time, 0.012345);
        assert_eq!(l.cpu, 0);
        assert_eq!(l.level, Level::Info);
        assert_eq!(l.message, "message here");

        let l = parse_log_line("[ 0.1] cpu2 INFO  cpu2 online (mpidr 0x2)\r").unwrap();
        assert_eq!((l.cpu, l.level), (2, Level::Info));
        assert_eq!(l.message, "cpu2 online (mpidr 0x2)");

        let l = parse_log_line("[  123.000001] cpu15 DEBUG x").unwrap();
        assert_eq!(
            (l.time, l.cpu, l.level, l.message.as_str()),
            (123.000001, 15, Level::Debug, "x")
        );
        let l = parse_log_line("[    1.000000] cpu1 WARN  ").unwrap();
        assert_eq!((l.level, l.message.as_str()), (Level::Warn, ""));
        assert_eq!(
            parse_log_line("[    1.0] cpu1 ERROR e").unwrap().level,
            Level::Error
        );
        assert_eq!(
            parse_log_line("[    1.0] cpu1 TRACE t").unwrap().level,
            Level::Trace
        );
    }

    #[test]
    fn not_log_lines() {
        for line in [
            "",
            "ferrite: ready: 4 cpus, 1020 MiB free",
            "[    0.1] cpuX INFO  m",
            "[    0.1] cpu0 NOTE  m",
            "[ abc] cpu0 INFO  m",
            "[    0.1]cpu0 INFO  m",
            "[    0.1 cpu0 INFO  m",
        ] {
            assert_eq!(parse_log_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn ready() {
        assert_eq!(
            parse_ready("ferrite: ready: 4 cpus, 1020 MiB free"),
            Some(Ready {
                cpus: 4,
                free_mib: 1020
            })
        );
        assert_eq!(
            parse_ready("[    0.5] cpu0 INFO  ferrite: ready: 1 cpus, 7 MiB free\r"),
            Some(Ready {
                cpus: 1,
                free_mib: 7
            })
        );
        assert_eq!(parse_ready("ferrite: ready: four cpus, 1 MiB free"), None);
        assert_eq!(parse_ready("ferrite: ready: 4 cpus, 1 GiB free"), None);
        assert_eq!(parse_ready("ferrite: booting"), None);
    }

    #[test]
    fn memory() {
        let bank =
            parse_memory("[    0.01] cpu0 INFO  memory: 0x40000000-0x7fffffff (1024 MiB)").unwrap();
        assert_eq!(bank.range, Range::new(0x4000_0000, 0x7fff_ffff));
        assert_eq!(bank.range.size(), 1 << 30);
        assert_eq!(bank.mib, 1024);
        let bank = parse_memory("memory: 0x40000000-0x17fffffff (5120 MiB)").unwrap();
        assert_eq!(bank.range.end, 0x1_7fff_ffff);
        assert_eq!(parse_memory("memory: 0x40000000 (1024 MiB)"), None);
        assert_eq!(parse_memory("memory: 0x7fffffff-0x40000000 (1 MiB)"), None);
        assert_eq!(parse_memory("[    0.01] cpu0 INFO  no memory: here"), None);
    }

    #[test]
    fn reserved_and_frames() {
        let r = parse_reserved("[    0.01] cpu0 DEBUG reserved: 0x48000000-0x480fffff device tree")
            .unwrap();
        assert_eq!(r.range, Some(Range::new(0x4800_0000, 0x480f_ffff)));
        assert_eq!(r.what, "device tree");
        assert_eq!(r.size, None);
        let r = parse_reserved(
            "[ 0.01] cpu0 INFO  reserved: 0x40080000-0x404b4fff (4308 KiB) ferrite image",
        )
        .unwrap();
        assert_eq!(r.range, Some(Range::new(0x4008_0000, 0x404b_4fff)));
        assert_eq!(
            (r.size.as_deref(), r.what.as_str()),
            (Some("4308 KiB"), "ferrite image")
        );
        let r = parse_reserved("reserved: spin-table").unwrap();
        assert_eq!(
            (r.region.as_str(), r.range, r.what.as_str()),
            ("spin-table", None, "")
        );
        assert_eq!(parse_reserved("reserved:"), None);

        assert_eq!(
            parse_frames("[    0.02] cpu0 INFO  frames: 1020 MiB free of 1024 MiB"),
            Some(Frames {
                free_mib: 1020,
                total_mib: 1024
            })
        );
        assert_eq!(parse_frames("frames: lots"), None);
    }

    #[test]
    fn panic() {
        let p = parse_panic("ferrite: PANIC on cpu1 at src/mm/frames.rs:42: out of frames: 3 left")
            .unwrap();
        assert_eq!(p.cpu, 1);
        assert_eq!(p.file, "src/mm/frames.rs");
        assert_eq!(p.line, 42);
        assert_eq!(p.message, "out of frames: 3 left");
        let p = parse_panic("ferrite: PANIC on cpu0 at src/main.rs:7: ").unwrap();
        assert_eq!((p.line, p.message.as_str()), (7, ""));
        assert_eq!(parse_panic("ferrite: PANIC somewhere"), None);
        assert_eq!(parse_panic("ferrite: ready: 4 cpus, 1 MiB free"), None);
    }

    #[test]
    fn cpu_online_and_gic() {
        assert_eq!(
            parse_cpu_online("[ 0.1] cpu2 INFO  cpu2 online (mpidr 0x2)"),
            Some(2)
        );
        assert_eq!(parse_cpu_online("[ 0.1] cpu0 INFO  cpu3 online"), Some(3));
        assert_eq!(
            parse_cpu_online("[ 0.1] cpu0 INFO  bringing cpu3 online"),
            Some(3)
        );
        assert_eq!(parse_cpu_online("[ 0.1] cpu0 INFO  cpu3 offline"), None);
        assert_eq!(parse_cpu_online("[ 0.1] cpu3 INFO  online"), None);

        assert_eq!(
            parse_gic_version("[ 0.1] cpu0 INFO  gic: v3 dist 0x8000000"),
            Some(3)
        );
        assert_eq!(parse_gic_version("gic: v2, 4 list registers"), Some(2));
        assert_eq!(parse_gic_version("gic: version 2"), None);
        assert_eq!(parse_gic_version("gic: v2 cortex-a15-gic"), Some(2));
        assert_eq!(parse_gic_version("timer: 62500000 Hz"), None);
    }

    #[test]
    fn transcript() {
        let t = Transcript::from_text(
            "Ferrite 0.1.0\r\n\
             [    0.000100] cpu0 INFO  memory: 0x40000000-0x5fffffff (512 MiB)\r\n\
             [    0.000200] cpu0 INFO  memory: 0x60000000-0xbfffffff (1536 MiB)\r\n\
             [    0.000300] cpu0 DEBUG reserved: 0x40080000-0x400fffff ferrite\r\n\
             [    0.000400] cpu0 INFO  frames: 2040 MiB free of 2048 MiB\r\n\
             [    0.000500] cpu0 INFO  gic: v3 at 0x8000000\r\n\
             [    0.000600] cpu0 INFO  timer: 62500000 Hz\r\n\
             [    0.001000] cpu0 INFO  cpu0 online (mpidr 0x0)\r\n\
             [    0.002000] cpu1 INFO  cpu1 online (mpidr 0x1)\r\n\
             ferrite: ready: 2 cpus, 2040 MiB free\r\n",
        );
        assert_eq!(t.lines().len(), 10);
        assert_eq!(t.memory_banks().len(), 2);
        assert_eq!(
            t.memory_banks()[1].range,
            Range::from_base_size(0x6000_0000, 0x6000_0000)
        );
        assert_eq!(
            t.reserved()[0].range,
            Some(Range::new(0x4008_0000, 0x400f_ffff))
        );
        assert_eq!(
            t.frames(),
            Some(Frames {
                free_mib: 2040,
                total_mib: 2048
            })
        );
        assert_eq!(
            t.ready(),
            Some(Ready {
                cpus: 2,
                free_mib: 2040
            })
        );
        assert_eq!(t.online_cpus(), BTreeSet::from([0, 1]));
        assert_eq!(t.gic_version(), Some(3));
        assert_eq!(
            t.messages_starting("timer:"),
            vec!["timer: 62500000 Hz".to_string()]
        );
        assert!(!t.has_panic());
        assert_eq!(t.panic(), None);
        assert_eq!(t.log_lines().len(), 8);
        assert!(t.text().starts_with("Ferrite 0.1.0\n[    0.000100]"));
        assert_eq!(
            t.find("ready:"),
            Some("ferrite: ready: 2 cpus, 2040 MiB free")
        );
    }

    #[test]
    fn terminal_lines() {
        assert!(is_terminal("ferrite: PANIC on cpu0 at a.rs:1: x"));
        assert!(is_terminal(
            "ferrite: fatal: the device tree at 0x48000000 is malformed"
        ));
        assert!(is_terminal("ferrite: halted"));
        assert!(!is_terminal("ferrite: ready: 4 cpus, 1020 MiB free"));
        assert!(!is_terminal("[    0.1] cpu0 INFO  ferrite: power off"));
    }

    #[test]
    fn coalescing() {
        let a = Range::new(0x4000_0000, 0x5fff_ffff);
        let b = Range::new(0x6000_0000, 0xbfff_ffff);
        let c = Range::new(0x1_0000_0000, 0x1_0fff_ffff);
        assert_eq!(coalesce(&[b, a]), [Range::new(0x4000_0000, 0xbfff_ffff)]);
        assert_eq!(coalesce(&[c, a]), [a, c]);
        assert_eq!(
            coalesce(&[a, Range::new(0x5000_0000, 0x6fff_ffff)]),
            [Range::new(0x4000_0000, 0x6fff_ffff)]
        );
        assert_eq!(coalesce(&[]), []);
        assert_eq!(format!("{:?}", [a]), "[0x40000000-0x5fffffff]");
    }

    #[test]
    fn ranges() {
        assert!(Range::new(0, 0xfff).contains(&Range::new(0x10, 0x20)));
        assert!(!Range::new(0x10, 0xfff).contains(&Range::new(0, 0x20)));
        assert_eq!(
            Range::parse("0x0-0xfff"),
            Some(Range::from_base_size(0, 0x1000))
        );
        assert_eq!(
            Range::parse("0x1_0000-0x1_ffff").map(|r| r.size()),
            Some(0x1_0000)
        );
        assert_eq!(Range::parse("4096-8191"), None);
        assert_eq!(
            Range::new(0x4000_0000, 0x7fff_ffff).to_string(),
            "0x40000000-0x7fffffff"
        );
    }
}
