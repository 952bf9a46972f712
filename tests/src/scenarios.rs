//! The hardware-in-loop scenarios: checks of Ferrite, dom0 and PV domUs written against a
//! [`Target`], so that they run unchanged on QEMU (stdio or a pty) and on a board on a serial
//! line ([`crate::board::SerialBoard`]). `hil` (tests/src/bin/hil.rs) runs them and prints a
//! table; tests/tests/hil.rs runs them on QEMU through a pty and on a QEMU-backed stand-in board.
//!
//! They check what tests/tests/boot.rs, dom0.rs and domu.rs check, with what every target can
//! give: no semihosting (a board has no debugger to end the run), no `poweroff` (the Pi 4 has
//! no PSCI to switch itself off), no assumption on the number of CPUs, the memory or the timer
//! (the firmware decides), no virtio devices. Each scenario waits for its lines, checks them and
//! then stops the target (QEMU killed, the board powered off).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::console::{READY, Transcript};
use crate::error::{Error, ErrorKind, Result};
use crate::run::Run;
use crate::target::{Boot, Image, Target};

/// How long Ferrite may take to reach what a scenario waits for, once started.
const WAIT: Duration = Duration::from_secs(45);
/// The whole of one scenario's run, after which the target is killed.
const RUN: Duration = Duration::from_secs(75);

/// One scenario: a name for the table and `--only`, what it checks, and the check.
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    check: fn(&dyn Target) -> Result<()>,
}

impl Scenario {
    /// Runs it on `target`: `Ok` when every check passed.
    pub fn run(&self, target: &dyn Target) -> Result<()> {
        (self.check)(target)
    }
}

/// Every scenario, in the order `hil` runs them.
pub const ALL: [Scenario; 5] = [
    Scenario {
        name: "boot",
        about: "Ferrite boots to its ready line: every CPU online, the GIC, memory, no panic",
        check: boot,
    },
    Scenario {
        name: "dom0",
        about: "dom0 starts at EL1, talks to Ferrite, brings up its vCPUs and timer, is ready",
        check: dom0,
    },
    Scenario {
        name: "domu-hello",
        about: "a PV domU starts with its start-of-day information, says hello and shuts down",
        check: domu_hello,
    },
    Scenario {
        name: "domu-refused",
        about: "bad domu= settings are refused with the reason; the good domU still starts",
        check: domu_refused,
    },
    Scenario {
        name: "domu-adversarial",
        about: "every illegal attempt of a hostile domU is refused; a crashing domU hurts nobody",
        check: domu_adversarial,
    },
];

/// How QEMU runs the scenarios: guest time follows the instruction count (`-icount
/// shift=5,sleep=off`, 32 ns per instruction), not the host's clock, so that what dom0 checks
/// against its timer holds however busy the host is. (At shift=0 the same boot takes forty
/// times longer; without `-icount` a loaded host makes timer ticks late.)
pub const QEMU_ICOUNT: &str = "shift=5,sleep=off";

/// The QEMU target the scenarios run on: `board`, its console on `serial`, [`QEMU_ICOUNT`].
pub fn qemu(board: crate::Board, serial: crate::Serial) -> crate::Qemu {
    crate::Qemu::new(board)
        .serial(serial)
        .args(["-icount", QEMU_ICOUNT])
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// One scenario's result.
pub struct Report {
    pub name: &'static str,
    pub result: Result<()>,
    pub elapsed: Duration,
}

/// Runs `scenarios` on `target` one after the other.
pub fn run_all(target: &dyn Target, scenarios: &[&Scenario]) -> Vec<Report> {
    scenarios
        .iter()
        .map(|s| {
            let started = Instant::now();
            let result = s.run(target);
            Report {
                name: s.name,
                result,
                elapsed: started.elapsed(),
            }
        })
        .collect()
}

/// The pass/fail table, then each failure in full (with its console).
pub fn table(reports: &[Report]) -> String {
    let mut t = format!(
        "{:<18} {:<6} {:>8}  first line of the error\n",
        "scenario", "result", "time"
    );
    for r in reports {
        let (result, note) = match &r.result {
            Ok(()) => ("pass", String::new()),
            Err(e) => ("FAIL", e.message().lines().next().unwrap_or("").to_string()),
        };
        t.push_str(&format!(
            "{:<18} {:<6} {:>6.1} s  {note}\n",
            r.name,
            result,
            r.elapsed.as_secs_f64()
        ));
    }
    let passed = reports.iter().filter(|r| r.result.is_ok()).count();
    t.push_str(&format!("{passed} of {} scenarios passed\n", reports.len()));
    for r in reports {
        if let Err(e) = &r.result {
            t.push_str(&format!("\n=== {} failed ===\n{e}\n", r.name));
        }
    }
    t
}

/// Waits until every one of `needles` has appeared in a line (in any order, each line checked
/// once, after the lines earlier waits matched); fails naming those still missing.
fn wait_all(run: &mut Run, needles: &[&str], timeout: Duration) -> Result<Transcript> {
    let mut missing: Vec<&str> = needles.to_vec();
    let what = format!("{needles:?}");
    let waited = run.expect_line(&what, timeout, |line| {
        missing.retain(|n| !line.contains(n));
        missing.is_empty()
    });
    match waited {
        Ok(_) => Ok(run.transcript()),
        Err(e) => {
            let seen = run.transcript();
            let missing: Vec<&&str> = needles.iter().filter(|n| !seen.contains(n)).collect();
            let mut err = Error::new(e.kind(), format!("{} (missing: {missing:?})", e.message()));
            if let Some(c) = e.context() {
                err = err.with_context(c.clone());
            }
            Err(err)
        }
    }
}

/// `Ok` if `condition`, else a check failure carrying the console.
fn ensure(run: &Run, condition: bool, message: impl Into<String>) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(run.error(
            ErrorKind::Check,
            format!("{}: {}", run.label(), message.into()),
        ))
    }
}

fn boot_with_domains(target: &dyn Target, name: &str, bootargs: &str) -> Result<Run> {
    target.boot(&Boot::new(name, Image::WithDomains, bootargs).timeout(RUN))
}

fn boot(target: &dyn Target) -> Result<()> {
    let mut run = boot_with_domains(target, "boot", "loglevel=debug")?;
    run.expect(READY, WAIT)?;
    let c = run.transcript();
    let ready = c.ready();
    ensure(&run, ready.is_some(), "the ready line does not parse")?;
    let ready = ready.unwrap_or(crate::console::Ready {
        cpus: 0,
        free_mib: 0,
    });
    let all: BTreeSet<u32> = (0..ready.cpus).collect();
    ensure(
        &run,
        ready.cpus > 0 && c.online_cpus() == all,
        format!(
            "the ready line says {} cpus; `cpuN online` lines for {:?}",
            ready.cpus,
            c.online_cpus()
        ),
    )?;
    ensure(&run, c.gic_version().is_some(), "no `gic: vN` line")?;
    let banks = c.memory_banks();
    let ram_mib: u64 = banks.iter().map(|b| b.range.size() >> 20).sum();
    ensure(&run, !banks.is_empty(), "no `memory:` line")?;
    ensure(
        &run,
        ready.free_mib > 0 && ready.free_mib <= ram_mib,
        format!("{} MiB free of {ram_mib} MiB of RAM", ready.free_mib),
    )?;
    ensure(
        &run,
        !c.contains(crate::console::UNEXPECTED_EXCEPTION),
        "Ferrite took an unexpected exception",
    )?;
    run.stop();
    Ok(())
}

/// `dom0: <what>: N/M ...` has N == M.
fn all_of(run: &Run, c: &Transcript, prefix: &str) -> Result<()> {
    let line = c.find(prefix).unwrap_or("").to_string();
    let counts = line
        .split(prefix)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|f| f.split_once('/'));
    ensure(
        run,
        counts.is_some_and(|(n, m)| n == m && n != "0"),
        format!("expected `{prefix}N/N`, got `{line}`"),
    )
}

fn dom0(target: &dyn Target) -> Result<()> {
    let mut run = boot_with_domains(target, "dom0", "loglevel=info")?;
    run.expect(READY, WAIT)?;
    for needle in [
        "dom0: Ferrite dom0 ",
        "dom0: hypervisor: ferrite ABI 1.0",
        "dom0: hypervisor: VERSION call answers 1.0",
        "dom0: hypervisor: CONSOLE_IO works",
        "dom0: smp: ",
        "dom0: timer: ticks on ",
        "dom0: ready",
    ] {
        run.expect(needle, WAIT)?;
    }
    let c = run.transcript();
    all_of(&run, &c, "dom0: smp: ")?;
    all_of(&run, &c, "dom0: timer: ticks on ")?;
    ensure(&run, !c.contains("dom0: PANIC"), "dom0 panicked")?;
    ensure(&run, !c.contains("crashed on vcpu"), "Ferrite crashed dom0")?;
    run.stop();
    Ok(())
}

fn domu_hello(target: &dyn Target) -> Result<()> {
    let mut run = boot_with_domains(
        target,
        "domu-hello",
        "loglevel=info dom0_vcpus=1 domu=name=hello,mem=8M,cmd=hello+from+the+rig",
    )?;
    run.expect(READY, WAIT)?;
    wait_all(
        &mut run,
        &[
            "hello: domain 1, PV, 1 vcpus, 8 MiB",
            "domU1: hello: ABI 1.0, features ",
            "2048 pages, 1 vcpus, cmdline 'hello from the rig'",
            "ferrite: domain 1 (hello) shut down from vcpu0: power off",
            "dom0: ready",
        ],
        WAIT,
    )?;
    run.stop();
    Ok(())
}

fn domu_refused(target: &dyn Target) -> Result<()> {
    let mut run = boot_with_domains(
        target,
        "domu-refused",
        "loglevel=info dom0_vcpus=1 domu=vcpus=99 domu=name=big,mem=64G,cmd=hello \
         domu=name=noimg,image=linux domu=name=ok,mem=8M,cmd=hello",
    )?;
    wait_all(
        &mut run,
        &[
            "ignoring \"domu=vcpus=99 (vcpus=99: 1 to 32)\": bad domu settings",
            "domU: cannot start it: big: no 65536 MiB of free memory for it",
            "domU noimg: no image 'linux' in this build",
            READY,
            "domU1: hello: ABI 1.0",
            "ferrite: domain 1 (ok) shut down from vcpu0: power off",
            "dom0: ready",
        ],
        WAIT,
    )?;
    run.stop();
    Ok(())
}

fn domu_adversarial(target: &dyn Target) -> Result<()> {
    let mut run = boot_with_domains(
        target,
        "domu-adversarial",
        "loglevel=info dom0_vcpus=1 domu=name=evil,mem=16M,cmd=evil \
         domu=name=crasher,mem=4M,cmd=evil-crash",
    )?;
    run.expect(READY, WAIT)?;
    let c = wait_all(
        &mut run,
        &[
            "domU1: evil: done",
            "domU2: crashing on purpose",
            "ferrite: domain 2 (crasher) shut down from vcpu0: crash",
            "dom0: ready",
        ],
        WAIT,
    )?;
    let evil = |l: &&String| l.contains("domU1: evil: ");
    ensure(
        &run,
        !c.lines().iter().filter(evil).any(|l| l.contains("ALLOWED")),
        "an illegal attempt was allowed",
    )?;
    let refused = c
        .lines()
        .iter()
        .filter(evil)
        .filter(|l| l.contains(": refused "))
        .count();
    ensure(
        &run,
        refused >= 15,
        format!("only {refused} refusals reported"),
    )?;
    for (what, how) in [
        ("foreign frame", "EPERM"),
        ("own page table writable", "EBUSY"),
        ("msr ttbr0", "undef"),
        ("write page table directly", "fault"),
        ("unknown call", "ENOSYS"),
    ] {
        ensure(
            &run,
            c.lines()
                .iter()
                .filter(evil)
                .any(|l| l.contains(what) && l.contains(how)),
            format!("no `{what}` attempt refused with {how}"),
        )?;
    }
    run.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let names: BTreeSet<&str> = ALL.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), ALL.len());
        assert!(find("dom0").is_some());
        assert!(find("nope").is_none());
    }

    #[test]
    fn the_table_counts_and_explains_failures() {
        let reports = [
            Report {
                name: "boot",
                result: Ok(()),
                elapsed: Duration::from_millis(1500),
            },
            Report {
                name: "dom0",
                result: Err(Error::new(ErrorKind::Timeout, "timed out\nmore")),
                elapsed: Duration::from_secs(45),
            },
        ];
        let t = table(&reports);
        assert!(t.contains("boot               pass      1.5 s"), "{t}");
        assert!(
            t.contains("dom0               FAIL     45.0 s  timed out\n"),
            "{t}"
        );
        assert!(t.contains("1 of 2 scenarios passed"), "{t}");
        assert!(t.contains("=== dom0 failed ===\ntimed out\nmore"), "{t}");
    }
}
